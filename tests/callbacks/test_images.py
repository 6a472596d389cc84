"""Chart and image callbacks under DDP: the run folder is asked for on every rank, the files written on rank 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.helpers import run_dirs

DDP_RUNS = {
    "pg_noise_mask": ["--config", "configs/pg_noise_mask/heat_synthrad.yaml", "--data.init_args.train_per_class", "8",
                      "--data.init_args.val_per_class", "4", "--data.init_args.test_per_class", "4",
                      "--data.init_args.batch_size", "8", "--trainer.max_epochs", "2"],
    "delta_activation": ["--config", "configs/delta_activation/moving_digits.yaml", "--data.init_args.num_train", "32",
                         "--data.init_args.num_val", "16", "--data.init_args.num_test", "16",
                         "--data.init_args.batch_size", "8", "--trainer.max_epochs", "2"],
}


@pytest.mark.slow  # two processes each: about 40 s on 2 CPU cores
@pytest.mark.xdist_group("ddp")  # 2-process runs one at a time (.ci/run: --dist loadgroup)
@pytest.mark.parametrize("case", list(DDP_RUNS))
def test_chart_callbacks_finish_a_two_process_ddp_run(case, tmp_path) -> None:
    """``trainer.log_dir`` is a collective under DDP: a chart callback that asked for it on rank 0 only hung."""
    args = [a if not a.startswith("configs/") else str(REPO / a) for a in DDP_RUNS[case]]
    out = subprocess.run(
        [sys.executable, "-m", "visionkit", "fit", *args, "--trainer.strategy", "ddp", "--trainer.devices", "2",
         "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = run_dirs(tmp_path / "logs")
    charts = sorted(p.name for p in (run / "images" / "val").glob("epoch001_*.png"))
    assert any(name.endswith(("_policy.png", "_density.png")) for name in charts), charts
