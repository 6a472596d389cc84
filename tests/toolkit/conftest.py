"""Fixtures for the shared activation toolkit tests: tiny timm models, offline, seeded."""

from __future__ import annotations

import os
from collections.abc import Iterator

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach the hub, whatever a test builds

import pytest
import torch

from ._helpers import make_resnet, make_vit


@pytest.fixture(autouse=True)
def _offline_seeded_single_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Offline hub, fixed seed, one intra-op thread.

    These models are tiny: a second thread mostly adds synchronisation, and on a busy 2-core
    machine it made this folder 4x slower (109 s vs 26 s measured). Runs after the parent
    conftest's autouse fixtures (pytest orders them top-down), so it overrides their setting.
    """
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def vit() -> torch.nn.Module:
    """``test_vit`` (img 32, patch 4, depth 6, width 64) in eval mode."""
    return make_vit().eval()


@pytest.fixture
def resnet() -> torch.nn.Module:
    """``test_resnet`` in eval mode."""
    return make_resnet().eval()


@pytest.fixture
def images() -> torch.Tensor:
    """(2, 3, 32, 32) random images."""
    return torch.randn(2, 3, 32, 32)
