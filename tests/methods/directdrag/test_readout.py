"""Readout head and RG appearance loss: spec §5 oracle 11 (exactly 0 for φ(z) = φ_ref, bounds, invariance
to per-pixel positive rescaling, gradient to the latent and none to the head) and the head's shapes."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import error_of
from tests.methods.directdrag import null_context, tiny_unet
from visionkit.methods.directdrag import DirectDragError, capture_features, readout_stack
from visionkit.methods.directdrag.readout import ReadoutHead, rg_loss

pytestmark = pytest.mark.usefixtures("seeded_single_thread")

CHANNELS = [64, 64, 32, 32]  # the tiny UNet's up ResNets (spec §7.2)


def head(**kwargs) -> ReadoutHead:
    torch.manual_seed(0)
    h = ReadoutHead(CHANNELS, projection_dim=32, bottleneck=8, emb_channels=128, groups=8, **kwargs).eval()
    return h.requires_grad_(False)


def test_head_shapes_and_time_switch() -> None:
    phi = torch.randn(2, 192, 16, 16)
    temb = torch.randn(2, 128)
    out = head()(phi, temb)
    assert out.shape == (2, 32, 16, 16)
    assert torch.allclose(head()(list(torch.split(phi, CHANNELS, dim=1)), temb), out)
    assert (head()(phi, temb) - head()(phi, None)).abs().max() > 1e-4  # the time term is used
    assert torch.equal(head(use_time=False)(phi, temb), head(use_time=False)(phi, None))
    with pytest.raises(DirectDragError) as info:
        head()(torch.randn(1, 100, 16, 16))
    assert "expects 192 channels, got 100" in error_of(info)


def test_rg_loss_zero_bounds_and_invariance() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 32, 8, 8, generator=g), torch.randn(1, 32, 8, 8, generator=g)
    assert float(rg_loss(a, a.clone(), 7.0)) == 0.0
    value = float(rg_loss(a, b, 7.0))
    assert 0.0 < value <= 2 * 350 * 49
    assert float(rg_loss(a, -a, 7.0)) == pytest.approx(2 * 350 * 49, rel=1e-6)  # the upper bound is reached
    explicit = 350 * 49 * (1 - torch.nn.functional.cosine_similarity(a, b, dim=1)).mean()
    assert value == pytest.approx(float(explicit), rel=1e-5)
    scale = torch.rand(1, 1, 8, 8, generator=g) * 10 + 0.1  # per-pixel positive rescaling
    assert float(rg_loss(a * scale, b, 7.0)) == pytest.approx(value, rel=1e-5)
    assert float(rg_loss(a, b, 3.5, weight=100.0)) == pytest.approx(value * 100 / 350 / 4, rel=1e-6)


def test_rg_gradient_reaches_the_latent_not_the_head() -> None:
    unet = tiny_unet()
    rg = head()
    z_ref = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    z = (z_ref + 0.1 * torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(2))).requires_grad_(
        True
    )
    temb = torch.randn(1, 128)
    with capture_features(unet, readout=True) as store:
        with torch.no_grad():
            unet(z_ref, 741, encoder_hidden_states=null_context())
            a_ref = rg(readout_stack(store.readout, 16), temb)
        unet(z, 741, encoder_hidden_states=null_context())
        loss = rg_loss(
            rg(readout_stack(store.readout, 16), temb), a_ref, float(z.detach().amax() - z.detach().amin())
        )
    loss.backward()
    assert float(loss.detach()) > 0
    assert z.grad is not None and float(z.grad.abs().sum()) > 0
    assert all(p.grad is None for p in rg.parameters()) and all(p.grad is None for p in unet.parameters())
