"""Feature hooks (spec §2.0, §2.7, §6.3-6.4 and the gradient properties): F is the chosen decoder
block's output, φ the up ResNets' residual branches (conv2, before the skip), both from one pass with
gradients to the latent, the store holds one pass only, and the hooks go away with the context."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import error_of
from tests.methods.directdrag import null_context, tiny_unet
from visionkit.methods.directdrag import DirectDragError
from visionkit.methods.directdrag.features import (
    capture_features,
    default_feature_idx,
    motion_features,
    readout_stack,
)

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def z0() -> torch.Tensor:
    return torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))


def test_feature_index_and_shapes(unet) -> None:
    """Tiny UNet: [mid 64@8, up0 64@16, up1 32@16]; default index len(up_blocks) - 1 = 1; φ dims 64, 64, 32, 32."""
    assert default_feature_idx(unet) == 1
    shapes = []
    with torch.no_grad():
        for idx in range(3):
            with capture_features(unet, idx) as store:
                unet(z0(), 601, encoder_hidden_states=null_context())
                shapes.append(tuple(store.feature.shape))
        with capture_features(unet, readout=True) as store:
            unet(z0(), 601, encoder_hidden_states=null_context())
            assert [m.shape[1] for m in store.readout] == [64, 64, 32, 32]
            phi = readout_stack(store.readout, 16)
            assert phi.shape == (1, 192, 16, 16)
            assert motion_features(store.feature, (32, 32)).shape == (1, 64, 32, 32)
    assert shapes == [(1, 64, 8, 8), (1, 64, 16, 16), (1, 32, 16, 16)]


def test_readout_maps_are_the_residual_branch(unet) -> None:
    """Each captured map is conv2's output: resnet output == (shortcut(input) + map) / output_scale_factor."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    resnet = unet.up_blocks[1].resnets[0]
    hook = resnet.register_forward_hook(lambda mod, args, out: seen.append((args[0], out)))
    try:
        with torch.no_grad(), capture_features(unet, readout=True) as store:
            unet(z0(), 601, encoder_hidden_states=null_context())
            branch = store.readout[2]
    finally:
        hook.remove()
    ((inp, out),) = seen
    shortcut = resnet.conv_shortcut(inp) if resnet.conv_shortcut is not None else inp
    assert torch.allclose(out, (shortcut + branch) / resnet.output_scale_factor, atol=1e-6)
    assert (out - branch).abs().max() > 1e-3  # not the block output


def test_one_pass_gradients_and_store_cleared(unet) -> None:
    z = z0().requires_grad_(True)
    with capture_features(unet, readout=True) as store:
        eps = unet(z, 601, encoder_hidden_states=null_context()).sample
        feat, maps = store.feature, list(store.readout)
        assert (
            eps.grad_fn is not None and feat.grad_fn is not None and all(m.grad_fn is not None for m in maps)
        )
        (g_feat,) = torch.autograd.grad(motion_features(feat, (32, 32)).sum(), z, retain_graph=True)
        (g_phi,) = torch.autograd.grad(readout_stack(maps, 16).square().mean(), z)
        assert float(g_feat.abs().sum()) > 0 and float(g_phi.abs().sum()) > 0
        with torch.no_grad():
            unet(z, 581, encoder_hidden_states=null_context())
        assert len(store.readout) == 4  # refilled, not appended to
        assert store.feature.grad_fn is None and all(m.grad_fn is None for m in store.readout)
    assert store.feature is None and store.readout == []
    assert not unet._forward_pre_hooks and not unet.up_blocks[0]._forward_hooks
    assert not unet.up_blocks[1].resnets[0].conv2._forward_hooks


def test_bad_feature_index_is_one_line_error(unet) -> None:
    with pytest.raises(DirectDragError) as info, capture_features(unet, 3):
        pass
    assert "feature_idx must be in [0, 2]" in error_of(info)
    with pytest.raises(DirectDragError):
        readout_stack([], 16)
