"""VAE encode/decode around a tiny random ``AutoencoderKL`` (spec §2.0, §6.6): the posterior mean
(not a sample) times ``scaling_factor``, decode to [0, 1] at the input size, and DXD's long-side shrink."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import error_of
from visionkit.methods.directdrag import DirectDragError
from visionkit.methods.directdrag.latents import decode_latents, encode_image, fit_max_side

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def tiny_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
    )
    return vae.eval().requires_grad_(False)


def test_encode_is_scaled_posterior_mean_and_decode_restores_size() -> None:
    vae = tiny_vae()
    image = torch.randint(
        0, 256, (1, 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    z = encode_image(vae, image)
    assert z.shape == (1, 4, 16, 16)
    with torch.no_grad():
        dist = vae.encode(image.float() / 127.5 - 1).latent_dist
    assert torch.allclose(z, vae.config.scaling_factor * dist.mean, atol=1e-6)
    assert vae.config.scaling_factor == pytest.approx(0.18215)
    assert torch.equal(encode_image(vae, image), z)  # deterministic: no posterior sample
    assert (z - vae.config.scaling_factor * dist.sample(torch.Generator().manual_seed(1))).abs().max() > 1e-3
    out = decode_latents(vae, z)
    assert out.shape == (1, 3, 32, 32) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert decode_latents(vae, z, (30, 34)).shape == (1, 3, 30, 34)
    with pytest.raises(DirectDragError) as info:
        encode_image(vae, image[:, :1])
    assert "(B, 3, H, W)" in error_of(info)


def test_fit_max_side() -> None:
    assert fit_max_side(913, 512) == ((512, 287), 512 / 913)
    assert fit_max_side(300, 200) == ((300, 200), 1.0)
    assert fit_max_side(512, 1024)[0] == (256, 512)
    with pytest.raises(DirectDragError):
        fit_max_side(0, 10)
