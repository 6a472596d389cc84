"""Test setup: offline hub, headless plots, two threads, each test in its own working folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in ``tmp_path`` with the hub offline and torch.hub pointed inside it."""
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    torch.hub.set_dir(str(tmp_path / "hub"))
    torch.set_num_threads(2)


@pytest.fixture
def repo() -> Path:
    """The repository root."""
    return REPO
