"""Policy-gradient noise-mask effect (slow): a real run of ``scripts/pg_noise_mask_demo.py`` with a fixed seed.

Under the faithful loss the policy's Beta concentrations go to 1 (uniform cells), so the PG-heated and
the random-mask arms draw the same masks: mean and spatial std within 0.02. Run with ``pytest -m slow -s -n 0``.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_faithful_policy_masks_match_the_random_control(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("pg_noise_mask_demo", REPO / "scripts" / "pg_noise_mask_demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    argv = ["--out", str(tmp_path), "--no-progress", "--epochs", "15", "--finetune-epochs", "1", "--train-per-class", "50",
            "--val-per-class", "10", "--test-per-class", "10", "--batch-size", "16"]  # about 560 policy steps
    assert demo.main(argv) == 0
    (run,) = tmp_path.glob("run_*")
    rows = {r["arm"]: r for r in json.loads((run / "pg_demo.json").read_text())["rows"]}
    print(json.dumps(list(rows.values()), indent=1))
    faithful, random_arm = rows["faithful"], rows["random"]
    assert abs(faithful["alpha"] - 1) <= 0.1 and abs(faithful["beta"] - 1) <= 0.1  # e - 1 = 1.72 on average under the U[0, 1) prior
    assert abs(faithful["mask_mean"] - random_arm["mask_mean"]) <= 0.02
    assert abs(faithful["mask_std"] - random_arm["mask_std"]) <= 0.02
    assert 0.07 <= random_arm["mask_std"] <= 0.11  # Beta(1, 1) cells at G=16, S=32, k=7, sigma=3: about 0.09
    assert all(0 <= r["unseen_acc"] <= 1 for r in rows.values())
    assert (run / "pg_demo_masks.png").is_file() and (run / "pg_demo_policy.png").is_file()
