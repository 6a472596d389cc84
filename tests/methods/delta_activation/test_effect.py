"""Delta-activation effect demo (slow): a real run of ``scripts/delta_activation_demo.py`` with fixed seeds.

The arm fine-tuned with the delta penalty must have at most half the temporal density of the arm
fine-tuned from the same step initialisation with weight 0, lose at most 5 points of accuracy, and
grow its steps. Run with ``pytest -m slow -s -n 0`` to see the figures.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import load_script

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_sparsity_loss_halves_temporal_density_within_five_points(tmp_path) -> None:
    demo = load_script("delta_activation_demo")
    assert demo.main(["--out", str(tmp_path), "--no-progress"]) == 0
    (run,) = tmp_path.glob("run_*")
    base, w0, dal = json.loads((run / "delta_demo.json").read_text())
    print(json.dumps([base, w0, dal], indent=1))
    assert w0["density"] >= 2.0 * dal["density"], (w0["density"], dal["density"])
    assert dal["test_acc"] >= w0["test_acc"] - 0.05, (w0["test_acc"], dal["test_acc"])
    assert dal["mean_step"] > 1.5 * w0["mean_step"]  # the penalty grows the steps (both arms start at 0.25)
    assert 0 < dal["mac_density"] < w0["mac_density"]
    assert base["plain_density"] > w0["density"]  # deltas of quantised activations are sparser than activations
    assert (run / "delta_demo.png").is_file()
