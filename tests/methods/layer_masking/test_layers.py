"""Layer masking, unit level: neighbour padding, masked layers, the 1x1-network identity, errors
(visionkit/methods/layer_masking/README.md, "The algorithm")."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionkit.methods.layer_masking import (
    LayerMaskingError,
    MaskedMap,
    UnsupportedLayerError,
    convert,
    is_layer_masked,
    neighbor_pad,
    set_fill,
    unsupported_modules,
)
from visionkit.methods.layer_masking.layers import NP_EPS, MaskedConv2d, as_keep_mask, conv_mask, fill_rings


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Tiny tensors: one thread avoids OpenMP barrier stalls when the cores are shared."""
    torch.set_num_threads(1)


def chebyshev_distance(keep: torch.Tensor) -> torch.Tensor:
    """Chebyshev distance of every pixel to the visible set (0 on it), by repeated 3x3 dilation."""
    dist = torch.full_like(keep, float("inf"))
    reach = keep.clone()
    dist[reach > 0] = 0
    for d in range(1, max(keep.shape[-2:]) + 1):
        grown = F.max_pool2d(reach, 3, 1, 1)
        dist[(grown > 0) & (reach == 0)] = d
        reach = grown
    return dist


@pytest.fixture
def blob_mask() -> torch.Tensor:
    """A 1x1x16x16 keep mask: a visible 4x5 block and a visible single pixel."""
    keep = torch.zeros(1, 1, 16, 16)
    keep[..., 3:7, 2:7] = 1
    keep[..., 12, 12] = 1
    return keep


# ---- neighbour padding ---------------------------------------------------------------------
def test_np_leaves_visible_pixels_unchanged_and_k0_is_masking(blob_mask):
    x = torch.randn(2, 3, 16, 16)
    keep = blob_mask.expand(2, 1, 16, 16)
    filled = neighbor_pad(x, keep, 4)
    assert torch.equal(filled[keep.expand_as(x) > 0], x[keep.expand_as(x) > 0])
    assert torch.equal(neighbor_pad(x, keep, 0), x * keep)


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_np_reaches_exactly_k_rings(blob_mask, k):
    x = torch.rand(1, 2, 16, 16) + 0.5  # strictly positive signal
    filled = neighbor_pad(x, blob_mask, k)
    dist = chebyshev_distance(blob_mask).expand_as(x)
    assert bool((filled[dist <= k] > 0).all())
    assert bool((filled[dist > k] == 0).all())
    assert bool((dist > k).any()), "the mask must leave pixels out of reach, or the test proves nothing"


def test_np_constant_signal_and_first_ring_mean(blob_mask):
    c = 2.5
    x = torch.full((1, 1, 16, 16), c)
    k = 5
    filled = neighbor_pad(x, blob_mask, k)
    dist = chebyshev_distance(blob_mask)
    inside = (dist <= k) & (dist > 0)
    rel = ((filled - c).abs() / c)[inside]
    assert float(rel.max()) <= k * NP_EPS * 1.01
    # a distance-1 pixel is the mean of its visible 3x3 neighbours
    x = torch.randn(1, 1, 16, 16)
    one = neighbor_pad(x, blob_mask, 1)
    for i, j in [(2, 2), (7, 6), (5, 7), (11, 13), (13, 11)]:
        window = (slice(max(i - 1, 0), i + 2), slice(max(j - 1, 0), j + 2))
        vis = blob_mask[0, 0][window] > 0
        expected = x[0, 0][window][vis].sum() / (vis.sum() + NP_EPS)
        assert torch.allclose(one[0, 0, i, j], expected, rtol=1e-5, atol=1e-7)


def test_np_is_linear_and_channel_independent(blob_mask):
    a, b = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16)
    np_ = lambda t: neighbor_pad(t, blob_mask, 4)  # noqa: E731
    assert torch.allclose(np_(2 * a - 3 * b), 2 * np_(a) - 3 * np_(b), atol=1e-5)
    changed = a.clone()
    changed[:, 1] = torch.randn(16, 16)
    assert torch.equal(np_(a)[:, [0, 2]], np_(changed)[:, [0, 2]])


def test_np_fill_is_detached_gradient_only_through_visible(blob_mask):
    x = torch.randn(1, 2, 16, 16, requires_grad=True)
    neighbor_pad(x, blob_mask, 3).sum().backward()
    assert torch.equal(x.grad, blob_mask.expand_as(x))


def test_fewer_rings_give_the_official_output_at_kept_positions():
    """``dilation*(K-1)`` rings equal the official ``K`` rings wherever the conv output is kept."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 20, 20)
    keep = (torch.rand(2, 1, 5, 5) > 0.6).float().repeat_interleave(4, 2).repeat_interleave(4, 3)
    for k, s, p in [(3, 1, 1), (3, 2, 1), (7, 2, 3), (5, 1, 2)]:
        conv = nn.Conv2d(4, 6, k, s, p)
        official = conv(neighbor_pad(x, keep, k))
        ours = conv(neighbor_pad(x, keep, k - 1))
        kept = conv_mask(keep, (k, k), (s, s), (p, p, p, p), (1, 1)).expand_as(official) > 0
        assert torch.equal(official[kept], ours[kept])


def test_dilated_conv_reads_only_visible_or_filled_pixels():
    """The official code ignores dilation; ours fills ``dilation*(K-1)`` rings so no kept output reads a hole."""
    keep = torch.zeros(1, 1, 24, 24)
    keep[..., 10:12, 10:12] = 1
    conv = nn.Conv2d(1, 1, 3, padding=3, dilation=3, bias=False)
    filled = neighbor_pad(torch.ones(1, 1, 24, 24), keep, fill_rings(conv))
    unfilled = (filled == 0).float()
    reads_hole = F.conv2d(unfilled, torch.ones(1, 1, 3, 3), padding=3, dilation=3) > 0
    kept = conv_mask(keep, (3, 3), (1, 1), (3, 3, 3, 3), (3, 3)) > 0
    assert kept.sum() > 4 and not bool((reads_hole & kept).any())
    official = neighbor_pad(torch.ones(1, 1, 24, 24), keep, 3)  # K rings, dilation ignored
    assert bool((F.conv2d((official == 0).float(), torch.ones(1, 1, 3, 3), padding=3, dilation=3) > 0)[kept].any())


# ---- masked layers -----------------------------------------------------------------------
def _conv_net(fill: str = "neighbor") -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 8, 3, 2, 1, groups=2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 3))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2)
    return convert(net.eval(), fill=fill)


@pytest.mark.parametrize("fill", ["neighbor", "zero", "partial"])
def test_every_fill_is_plain_with_all_ones_and_blind_to_hidden_content(fill):
    net = _conv_net(fill)
    x = torch.rand(4, 3, 32, 32)
    keep = (torch.rand(4, 1, 8, 8) > 0.5).float().repeat_interleave(4, 2).repeat_interleave(4, 3)
    with torch.no_grad():
        assert torch.allclose(net(x, keep_mask=torch.ones(4, 1, 32, 32)), net(x), atol=1e-6)
        noisy = torch.where(keep > 0, x, 100 * torch.randn_like(x))
        assert torch.equal(net(x, keep_mask=keep), net(noisy, keep_mask=keep))


@pytest.mark.parametrize("fill", ["neighbor", "zero", "partial"])
def test_masked_conv_applies_its_fill_rule_and_never_reads_hidden_values(fill):
    torch.manual_seed(0)
    conv = convert(nn.Sequential(nn.Conv2d(4, 6, 3, 2, 1, groups=2)), fill=fill)[0]
    x = torch.randn(2, 4, 16, 16)
    keep = (torch.rand(2, 1, 4, 4) > 0.5).float().repeat_interleave(4, 2).repeat_interleave(4, 3)
    out = conv(MaskedMap(x, keep))
    kept = out.keep.expand_as(out.values) > 0
    if fill == "neighbor":
        expected = F.conv2d(neighbor_pad(x, keep, 2), conv.weight, conv.bias, 2, 1, 1, 2)
    elif fill == "zero":
        expected = F.conv2d(x * keep, conv.weight, conv.bias, 2, 1, 1, 2)
    else:
        share = F.conv2d(F.pad(keep, (1, 1, 1, 1), value=1.0), torch.ones(1, 1, 3, 3) / 9, None, 2)
        expected = F.conv2d(x * keep, conv.weight, None, 2, 1, 1, 2) / share + conv.bias.view(1, -1, 1, 1)
    assert torch.allclose(out.values[kept], expected[kept], atol=1e-5)
    garbage = conv(MaskedMap(x + 1e3 * torch.randn_like(x) * (1 - keep), keep))
    assert torch.equal(garbage.values[kept], out.values[kept]) and torch.equal(garbage.keep, out.keep)


def test_pools_and_means_never_read_hidden_values():
    x = torch.randn(2, 3, 8, 8)
    keep = (torch.rand(2, 1, 8, 8) > 0.5).float()
    noisy = x + 1e3 * torch.randn_like(x) * (1 - keep)
    layers = convert(nn.Sequential(nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(2),
                                   nn.AdaptiveMaxPool2d(1), nn.ReLU()))
    for layer in list(layers)[:4]:
        a, b = layer(MaskedMap(x, keep)), layer(MaskedMap(noisy, keep))
        if isinstance(a, MaskedMap):
            kept = a.keep.expand_as(a.values) > 0
            assert torch.equal(a.values[kept], b.values[kept]), layer
        else:
            assert torch.equal(a, b), layer
    assert torch.equal(MaskedMap(x, keep).mean((2, 3)), MaskedMap(noisy, keep).mean((2, 3)))
    assert torch.equal(MaskedMap(x, keep).amax((-1, -2), keepdim=True), MaskedMap(noisy, keep).amax((2, 3), keepdim=True))


def test_masked_global_pool_of_all_hidden_is_zero_in_low_precision():
    pool = convert(nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d(1)))
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = pool(torch.rand(2, 3, 8, 8), keep_mask=torch.zeros(2, 1, 8, 8))
    assert torch.isfinite(out).all() and bool((out == 0).all())


def test_max_pool_ignores_hidden_values_even_without_a_relu():
    pool = convert(nn.Sequential(nn.MaxPool2d(2), nn.AdaptiveMaxPool2d(1)))
    x = -torch.rand(1, 1, 4, 4) - 1  # negative: a hidden zero would win a plain max
    keep = torch.ones(1, 1, 4, 4)
    keep[..., 0, 0] = 0
    out = pool(x, keep_mask=keep)
    assert float(out) == float(x[..., keep[0, 0] > 0].max())


def test_avgpool_renorm_is_a_masked_mean():
    x = torch.rand(1, 1, 4, 4)
    keep = torch.ones(1, 1, 4, 4)
    keep[..., :2, :1] = 0
    plain = convert(nn.Sequential(nn.AvgPool2d(2)))
    renorm = convert(nn.Sequential(nn.AvgPool2d(2)), avgpool_renorm=True)
    official = plain(x, keep_mask=keep)
    masked_mean = renorm(x, keep_mask=keep)
    assert torch.allclose(official[0, 0, 0, 0], (x[0, 0, :2, 1]).sum() / 4)
    assert torch.allclose(masked_mean[0, 0, 0, 0], (x[0, 0, :2, 1]).mean(), atol=1e-6)


def test_partial_fill_rescales_by_the_visible_share():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=True)
    net = convert(nn.Sequential(conv), fill="partial")
    x = torch.rand(1, 1, 6, 6)
    keep = torch.ones(1, 1, 6, 6)
    keep[..., 2, 2] = 0
    out = net(x, keep_mask=keep)
    window = (x * keep)[0, 0, 1:4, 1:4]
    expected = (window * conv.weight[0, 0]).sum() * 9 / 8 + conv.bias[0]
    assert torch.allclose(out[0, 0, 2, 2], expected, atol=1e-5)


# ---- the exact 1x1-network identity ---------------------------------------------------------
def test_1x1_network_sees_only_the_visible_pixels():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()
    for m in plain.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2)
    net = convert(copy.deepcopy(plain))
    x = torch.randn(1, 3, 12, 12)
    keep = (torch.rand(1, 1, 12, 12) > 0.7).float()
    vis = keep[0, 0].flatten() > 0
    gathered = x.flatten(2)[:, :, vis].unsqueeze(2)  # (1, C, 1, N)
    with torch.no_grad():
        masked = net(x, keep_mask=keep)
        assert torch.allclose(masked, plain(gathered), rtol=1e-4, atol=1e-6)
        # the same pixels elsewhere, in another order and shape of mask: same output
        perm = torch.randperm(int(vis.sum()))
        keep2 = torch.zeros(1, 1, 12, 12)
        keep2.view(-1)[: int(vis.sum())] = 1
        x2 = torch.zeros(1, 3, 12, 12)
        x2.view(1, 3, -1)[:, :, : int(vis.sum())] = gathered[0, :, 0, perm]
        assert torch.allclose(net(x2, keep_mask=keep2), masked, rtol=1e-4, atol=1e-6)


# ---- inputs and errors -------------------------------------------------------------------
def test_keep_mask_shapes_are_accepted_and_broadcast():
    x = torch.rand(3, 3, 8, 8)
    for m in (torch.ones(8, 8, dtype=torch.bool), torch.ones(3, 8, 8), torch.ones(1, 1, 8, 8), torch.ones(3, 1, 8, 8)):
        assert as_keep_mask(m, x).shape == (3, 1, 8, 8)


@pytest.mark.parametrize(
    ("mask", "words"),
    [(torch.ones(3, 1, 8, 9), ["(3, 1, 8, 9)", "(3, 3, 8, 8)"]), (torch.ones(2, 1, 8, 8), ["B = 3"]),
     (torch.full((3, 1, 8, 8), 0.5), ["binary", "0.5"]), (torch.tensor(float("nan")).expand(8, 8), ["binary"])],
)
def test_bad_keep_masks_give_one_line_errors(mask, words):
    net = _conv_net()
    with pytest.raises(LayerMaskingError) as info:
        net(torch.rand(3, 3, 8, 8), keep_mask=mask)
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


class WithGroupNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.GroupNorm(2, 4))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))


def test_unsupported_module_is_named_and_nothing_is_converted():
    model = WithGroupNorm()
    with pytest.raises(UnsupportedLayerError) as info:
        convert(model)
    message = str(info.value)
    assert "the root module (tests.methods.layer_masking.test_layers.WithGroupNorm)" in message  # unknown forward
    assert "'body.1' (GroupNorm)" in message and "\n" not in message
    with pytest.raises(UnsupportedLayerError) as info:  # declaring the root transparent leaves the GroupNorm
        convert(model, transparent=[WithGroupNorm])
    assert "'body.1' (torch.nn.modules.normalization.GroupNorm)" in str(info.value)
    assert not is_layer_masked(model)
    assert not any(type(m).__name__.startswith("Masked") for m in model.modules())


def test_unsupported_options_are_rejected():
    with pytest.raises(UnsupportedLayerError, match=r"'0' .*padding_mode='reflect'"):
        convert(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect")))
    with pytest.raises(UnsupportedLayerError, match="root"):
        convert(nn.Conv2d(3, 3, 3))
    assert unsupported_modules(nn.Sequential(nn.Conv2d(3, 3, 3), nn.ReLU())) == []


def test_conversion_keeps_keys_and_plain_forward_and_is_idempotent():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2)).eval()
    net = convert(copy.deepcopy(plain))
    assert list(net.state_dict()) == list(plain.state_dict())
    net.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 10, 10)
    assert torch.equal(net(x), plain(x))
    convert(net, fill="zero")
    assert isinstance(net[0], MaskedConv2d) and net[0].lm_fill == "zero"
    set_fill(net, "partial")
    assert net[0].lm_fill == "partial"
    with pytest.raises(ValueError, match="fill"):
        convert(net, fill="smear")


def test_masked_forward_in_train_mode_is_an_error():
    net = _conv_net().train()
    with pytest.raises(LayerMaskingError, match=r"'1' \(BatchNorm2d\).*eval"):
        net(torch.rand(2, 3, 8, 8), keep_mask=torch.ones(2, 1, 8, 8))


def test_masked_map_rejects_unknown_torch_functions_and_intersects_on_add():
    a = MaskedMap(torch.ones(1, 2, 3, 3), torch.tensor([[1.0, 1, 0], [1, 0, 0], [1, 1, 1]]).view(1, 1, 3, 3))
    b = MaskedMap(torch.ones(1, 2, 3, 3), torch.tensor([[1.0, 0, 0], [1, 1, 1], [1, 1, 1]]).view(1, 1, 3, 3))
    s = a + b
    assert torch.equal(s.keep, a.keep * b.keep) and torch.equal(s.values, torch.full((1, 2, 3, 3), 2.0))
    scaled = torch.full((1, 2, 1, 1), 3.0) * a
    assert isinstance(scaled, MaskedMap) and torch.equal(scaled.values, torch.full((1, 2, 3, 3), 3.0))
    with pytest.raises(LayerMaskingError, match="'cat'"):
        torch.cat([a, b])
    with pytest.raises(LayerMaskingError, match="spatial dims"):
        a.mean(1)
