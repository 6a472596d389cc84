"""Helpers shared by tests (importable as ``tests.helpers`` from subprocesses run at the repo root)."""

from __future__ import annotations

import importlib.util
import os
import signal
from pathlib import Path
from types import ModuleType

import lightning.pytorch as pl
import pytest
import torch
from torch import Tensor, nn

from visionkit.backbones.intermediates import Intermediates
from visionkit.utils.runs import epoch_values, read_metrics

__all__ = [
    "FailAt", "KillAt", "PooledSide", "cli_error_line", "epoch_values", "error_of", "last_value", "make_resnet",
    "load_script", "make_tiny_clip", "make_vit", "mlp", "read_metrics", "run_dirs",
]

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def last_value(rows: list[dict[str, str]], key: str) -> float:
    """The last non-empty value of a ``metrics.csv`` column."""
    values = [r[key] for r in rows if r.get(key)]
    if not values:
        raise KeyError(f"no '{key}' in metrics")
    return float(values[-1])


def run_dirs(root: str | Path = "logs") -> list[Path]:
    """Run folders (``<root>/<name>/version_N``), oldest first."""
    return sorted(Path(root).glob("*/version_*"), key=lambda p: (p.parent.name, int(p.name.split("_")[1])))


def error_of(exc: pytest.ExceptionInfo) -> str:
    """The exception's message, checked to be one line."""
    message = str(exc.value)
    assert "\n" not in message, message
    return message


def cli_error_line(capsys: pytest.CaptureFixture, args: list[str]) -> str:
    """Run ``visionkit <args>`` in-process; assert exit code 2 and exactly one error line, and return it."""
    from visionkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("visionkit: error:")]
    assert len(lines) == 1
    return lines[0]


class KillAt(pl.Callback):
    """SIGKILL the process at a training batch, as a crash or a pre-empted job would."""

    def __init__(self, epoch: int = 1, batch: int = 1) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


class FailAt(pl.Callback):
    """Raise ``RuntimeError`` at a training batch, as a bug in a training step would."""

    def __init__(self, epoch: int = 0, batch: int = 0) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise RuntimeError(f"FailAt: epoch {self.epoch} batch {self.batch}")


# ---- tiny models and side networks (backbone, tuner and memory tests) ----------------------------------
def make_vit(name: str = "test_vit", **kwargs) -> nn.Module:
    """timm ``test_vit`` at 32 px with 4 px patches: an 8x8 token grid, depth 6, width 64."""
    import timm

    return timm.create_model(name, **{"img_size": 32, "patch_size": 4, "num_classes": 5, **kwargs})


def make_resnet(**kwargs) -> nn.Module:
    """timm ``test_resnet`` (BatchNorm, 5 feature levels: stem + 4 stages)."""
    import timm

    return timm.create_model("test_resnet", **{"num_classes": 5, **kwargs})


def make_tiny_clip():
    """A random-init open_clip ``CLIP`` small enough for unit tests (2 image, 3 text blocks)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    vision = CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8, image_size=32)
    text = CLIPTextCfg(context_length=12, vocab_size=64, width=32, heads=2, layers=3)
    return CLIP(embed_dim=16, vision_cfg=vision, text_cfg=text).eval()


class PooledSide(nn.Module):
    """Side network: mean-pool every level (tokens or maps), concatenate, classify.

    Input: an :class:`Intermediates` with NLC ``(B, N, C_l)`` or NCHW ``(B, C_l, H, W)`` features.
    Output: logits ``(B, num_classes)``.
    """

    def __init__(self, widths: list[int], num_classes: int = 5, dropout: float = 0.0) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(w, 16) for w in widths)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(16 * len(widths), num_classes)

    def forward(self, feats: Intermediates) -> Tensor:
        pooled = [f.mean(1) if f.ndim == 3 else f.mean((2, 3)) for f in feats.features]
        z = torch.cat([torch.relu(p(v)) for p, v in zip(self.proj, pooled, strict=True)], dim=1)
        return self.head(self.drop(z))


def mlp() -> nn.Sequential:
    """Linear(4, 8), ReLU, Linear(8, 8), ReLU, Linear(8, 2): inputs ``(B, 4)``, outputs ``(B, 2)``."""
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
