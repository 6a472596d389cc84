"""Test setup: offline hub, headless plots, two threads, each test in its own working folder; tiny-model fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach the hub, whatever a test builds
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
#: torch threads per test: 2, or 1 per worker under pytest-xdist (``-n 2`` runs two tests at once on 2 cores).
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in ``tmp_path`` with the hub offline and torch.hub pointed inside it."""
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    torch.hub.set_dir(str(tmp_path / "hub"))
    torch.set_num_threads(THREADS)


@pytest.fixture
def repo() -> Path:
    """The repository root."""
    return REPO


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the import-hygiene probe last (its module starts a fresh interpreter at collection time)."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_zz_"))


@pytest.fixture
def seeded_single_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Offline hub, fixed seed, one intra-op thread (``pytestmark = pytest.mark.usefixtures(...)`` in a module).

    For the tiny-model backbone, tuner and memory tests: a second thread mostly adds synchronisation,
    and on a busy 2-core machine it made them 4x slower (109 s vs 26 s measured). Requested after the
    autouse ``_isolated`` (pytest sets up autouse fixtures first), so it overrides its thread count.
    """
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def vit() -> torch.nn.Module:
    """``test_vit`` (img 32, patch 4, depth 6, width 64) in eval mode."""
    from tests.helpers import make_vit

    return make_vit().eval()


@pytest.fixture
def resnet() -> torch.nn.Module:
    """``test_resnet`` in eval mode."""
    from tests.helpers import make_resnet

    return make_resnet().eval()


@pytest.fixture
def images() -> torch.Tensor:
    """(2, 3, 32, 32) random images."""
    import torch

    return torch.randn(2, 3, 32, 32)
