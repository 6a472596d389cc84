"""Fixtures for the shared activation toolkit tests: tiny timm models, offline, seeded."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach the hub, whatever a test builds

import pytest
import torch

from ._helpers import make_resnet, make_vit


@pytest.fixture(autouse=True)
def _offline_and_seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)


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
