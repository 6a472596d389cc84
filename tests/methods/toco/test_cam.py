"""Multi-scale CAMs and their thresholds: spec §5 oracles 3 (normalisation, resolution, flip
equivariance, no grad, the official fusion order) and 4 (``cam_to_label`` in training and eval
mode, absent classes, the image box), plus bf16 autocast and the one-line errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from tests.helpers import error_of
from tests.methods.toco import tiny_toco
from visionkit.methods.toco import ToCoError, box_mask, cam_to_label, multi_scale_cam, normalise_cam

pytestmark = pytest.mark.usefixtures("seeded_single_thread")


def literal_multi_scale(model, x: Tensor, scales) -> tuple[Tensor, Tensor]:
    """The official fusion written out: per scale and CAM, upsample, max with the un-flipped CAM of
    the flipped input, ReLU; sum over scales; min-max per (image, class) with +1e-5."""
    b, _, h, w = x.shape
    totals = [torch.zeros(()), torch.zeros(())]
    for s in scales:
        xs = F.interpolate(x, size=(int(s * h), int(s * w)), mode="bilinear", align_corners=False)
        for k, (plain, flipped) in enumerate(zip(model.cams(xs), model.cams(xs.flip(-1)), strict=True)):
            up = F.interpolate(plain, size=(h, w), mode="bilinear", align_corners=False)
            up_flip = F.interpolate(flipped, size=(h, w), mode="bilinear", align_corners=False).flip(-1)
            totals[k] = totals[k] + torch.relu(torch.max(up, up_flip))
    out = []
    for t in totals:
        t = t - t.flatten(2).min(-1).values[..., None, None]
        out.append(t / (t.flatten(2).max(-1).values[..., None, None] + 1e-5))
    return out[0], out[1]


@pytest.fixture
def model():
    return tiny_toco().double().eval()


def test_multi_scale_cam_matches_the_official_fusion_and_has_no_grad(model):
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.enable_grad():
        cam, cam_aux = model.multi_scale_cams(x, (1.0, 0.5, 1.5))
    assert cam.shape == cam_aux.shape == (2, 3, 32, 32)
    assert not cam.requires_grad and cam.grad_fn is None
    with torch.no_grad():
        ref, ref_aux = literal_multi_scale(model, x, (1.0, 0.5, 1.5))
    torch.testing.assert_close(cam, ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(cam_aux, ref_aux, rtol=1e-9, atol=1e-9)
    assert (cam.amin(dim=(2, 3)) == 0).all()
    assert (cam.amax(dim=(2, 3)) < 1).all() and (cam.amax(dim=(2, 3)) > 0.99).all()


def test_flip_equivariance(model):
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    cam, cam_aux = model.multi_scale_cams(x)
    cam_f, cam_aux_f = model.multi_scale_cams(x.flip(-1))
    torch.testing.assert_close(cam_f, cam.flip(-1), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(cam_aux_f, cam_aux.flip(-1), rtol=1e-9, atol=1e-9)
    assert (cam_f - cam).abs().max() > 1e-2  # the CAM itself is not symmetric


def test_normalisation_maximum_and_an_all_zero_map():
    a = torch.rand(2, 3, 5, 7, dtype=torch.float64) * 4 - 1
    a[1, 2] = 0.0
    out = normalise_cam(a)
    spread = a.amax(dim=(2, 3)) - a.amin(dim=(2, 3))
    torch.testing.assert_close(out.amax(dim=(2, 3)), spread / (spread + 1e-5), rtol=1e-12, atol=1e-12)
    assert (out.amin(dim=(2, 3)) == 0).all() and (out[1, 2] == 0).all()
    zero = multi_scale_cam(lambda x: torch.zeros(x.shape[0], 2, 4, 4), torch.randn(1, 3, 16, 16), (1.0, 0.5))
    assert zero[0].shape == (1, 2, 16, 16) and (zero[0] == 0).all()


def test_bf16_autocast_gives_float32_cams_close_to_float32():
    model = tiny_toco().eval()
    x = torch.randn(2, 3, 32, 32)
    cam32, aux32 = model.multi_scale_cams(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cam16, aux16 = model.multi_scale_cams(x)
    assert cam16.dtype == aux16.dtype == torch.float32
    assert (cam16 >= 0).all() and (cam16 < 1).all()
    assert (cam16 - cam32).abs().mean() < 0.05 and (aux16 - aux32).abs().mean() < 0.05


def one_class_cam(values: list[float], num_classes: int = 3, cls: int = 1) -> tuple[Tensor, Tensor]:
    """A (1, C, 1, n) CAM whose class ``cls`` takes ``values``; the absent classes are higher."""
    cam = torch.full((1, num_classes, 1, len(values)), 0.99, dtype=torch.float64)
    cam[0, cls, 0] = torch.tensor(values, dtype=torch.float64)
    labels = torch.zeros(1, num_classes, dtype=torch.long)
    labels[0, cls] = 1
    return cam, labels


def test_training_mode_thresholds_and_background_has_no_effect():
    cam, labels = one_class_cam([0.25, 0.2501, 0.5, 0.7, 0.7001])
    for background in (0.0, 0.5, 0.9):
        out = cam_to_label(cam, labels, background=background, low=0.25, high=0.7)
        assert out.flatten().tolist() == [0, 255, 255, 255, 2]


def test_eval_mode_threshold():
    cam, labels = one_class_cam([0.5, 0.5001, 0.1, 0.99])
    assert cam_to_label(cam, labels, background=0.5).flatten().tolist() == [0, 2, 0, 2]
    assert cam_to_label(cam, labels, background=0.45, ignore_index=7).flatten().tolist() == [2, 2, 0, 2]


def test_absent_classes_never_appear_and_outside_the_box_is_ignored():
    gen = torch.Generator().manual_seed(1)
    cam = torch.rand(4, 5, 12, 12, generator=gen)
    labels = (torch.rand(4, 5, generator=gen) < 0.4).long()
    labels[:, 0] = 1
    box = torch.tensor([[0, 12, 0, 12], [2, 9, 3, 12], [5, 12, 0, 4], [0, 1, 0, 1]])
    valid = box_mask(box, (12, 12))
    for out in (
        cam_to_label(cam, labels, background=0.3),
        cam_to_label(cam, labels, low=0.2, high=0.6, valid=valid),
    ):
        for i in range(4):
            allowed = {0, 255} | {c + 1 for c in labels[i].nonzero().flatten().tolist()}
            assert set(out[i].unique().tolist()) <= allowed
    assert (out[~valid] == 255).all()
    for i, (h0, h1, w0, w1) in enumerate(box.tolist()):  # stride 1: the official slice
        ref = torch.zeros(12, 12, dtype=torch.bool)
        ref[h0:h1, w0:w1] = True
        assert torch.equal(valid[i], ref)


def test_raising_high_only_turns_foreground_into_ignore():
    gen = torch.Generator().manual_seed(2)
    cam, labels = torch.rand(2, 3, 16, 16, generator=gen), torch.tensor([[1, 0, 1], [0, 1, 0]])
    base = cam_to_label(cam, labels, low=0.25, high=0.6)
    raised = cam_to_label(cam, labels, low=0.25, high=0.8)
    changed = base != raised
    assert changed.any()
    assert (raised[changed] == 255).all() and (base[changed] > 0).all() and (base[changed] != 255).all()


def test_box_mask_on_a_coarser_grid_uses_cell_centres():
    valid = box_mask(torch.tensor([[8, 32, 6, 30]]), (8, 8), stride=4)
    assert valid[0, :, 3].tolist() == [False, False, True, True, True, True, True, True]
    assert valid[0, 3].tolist() == [False, True, True, True, True, True, True, False]


def test_errors_name_the_bad_input():
    cam = torch.rand(2, 3, 4, 4)
    with pytest.raises(ToCoError) as err:
        cam_to_label(cam, torch.tensor([[1, 0, 0], [0, 0, 0]]))
    assert "image 1" in error_of(err) and "no image label" in error_of(err)
    assert (cam_to_label(cam, torch.tensor([[1, 0, 0], [0, 0, 0]]), allow_unlabelled=True)[1] == 0).all()
    with pytest.raises(ToCoError) as err:
        cam_to_label(cam, torch.ones(2, 4))
    assert "(2, 3)" in error_of(err)
    with pytest.raises(ToCoError):
        cam_to_label(cam, torch.full((2, 3), 2))
    with pytest.raises(ToCoError):
        cam_to_label(cam, torch.ones(2, 3), low=0.3)
    with pytest.raises(ToCoError):
        cam_to_label(cam, torch.ones(2, 3), low=0.8, high=0.3)
    with pytest.raises(ToCoError) as err:
        multi_scale_cam(lambda x: x, torch.rand(1, 3, 8, 8), ())
    assert "scales" in error_of(err)
    with pytest.raises(ToCoError):
        multi_scale_cam(lambda x: x, torch.rand(1, 3, 8, 8), (0.01,))
    with pytest.raises(ToCoError):
        box_mask(torch.zeros(2, 3), (4, 4))


def counting_cams(model, monkeypatch) -> list[int]:
    """Patch ``model.cams`` to record the batch size of every call."""
    sizes, cams = [], model.cams
    monkeypatch.setattr(model, "cams", lambda x: sizes.append(x.shape[0]) or cams(x))
    return sizes


def test_cams_reuse_the_forward_tokens_at_scale_1_when_the_encoder_is_deterministic(monkeypatch):
    model = tiny_toco().double().train()  # timm's default drop rates are 0: deterministic in train mode too
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    assert model.deterministic_encoder()
    out = model(x)  # with grad, as the training forward
    with torch.no_grad():
        ref = model.multi_scale_cams(x, (1.0, 0.5))
    sizes = counting_cams(model, monkeypatch)
    reused = model.multi_scale_cams(x, (1.0, 0.5), out)
    assert sizes == [2, 4]  # scale 1.0: only the flipped images; scale 0.5: both halves
    for a, b in zip(reused, ref, strict=True):
        assert not a.requires_grad
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kwargs", [{"drop_path_rate": 0.1}, {"drop_rate": 0.1}, {"attn_drop_rate": 0.1}])
def test_a_stochastic_encoder_in_train_mode_gets_its_own_cam_pass(monkeypatch, kwargs):
    from tests.methods.toco import tiny_vit
    from visionkit.methods.toco import ToCo

    model = ToCo(tiny_vit(**kwargs), 3, decoder_dim=8, ctc_dim=8, ctc_hidden_dim=8, ctc_bottleneck_dim=8).train()
    assert not model.deterministic_encoder()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    sizes = counting_cams(model, monkeypatch)
    model.multi_scale_cams(x, (1.0,), out)
    assert sizes == [4]  # the forward's tokens are not reused: dropout draws differ between passes
    assert model.eval().deterministic_encoder()  # eval mode: dropout is off
    sizes.clear()
    model.multi_scale_cams(x, (1.0,), model(x))
    assert sizes == [2]


def test_a_train_mode_batch_norm_is_not_deterministic():
    model = tiny_toco().train()
    assert model.deterministic_encoder()
    model.backbone.norm_pre = torch.nn.BatchNorm1d(65)  # batch statistics: an image's tokens depend on the batch
    assert not model.deterministic_encoder()


def test_the_training_step_with_reused_tokens_gives_the_same_loss_and_gradients(monkeypatch):
    import copy

    from tests.methods.toco import TINY_TASK
    from visionkit.methods.toco import ToCoTask

    task = ToCoTask(**{**TINY_TASK, "cam_scales": (1.0,), "contrast_after": -1}).train()
    gen = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(4, 3, 32, 32, generator=gen),
             "label": torch.tensor([[1.0, 0, 0], [0, 1, 1], [1, 0, 1], [0, 0, 1]])}
    state = copy.deepcopy(task.state_dict())

    def step() -> tuple[dict, dict]:
        task.load_state_dict(state)
        task.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same crops and second view
        out = task.compute_loss(batch, "train")
        out["loss"].backward()
        return out, {n: p.grad.clone() for n, p in task.named_parameters() if p.grad is not None}

    sizes = counting_cams(task.model, monkeypatch)
    reused, grads = step()
    assert sizes == [4] and set(reused) >= {"ptc", "ctc", "seg"}  # the flipped half only
    monkeypatch.setattr(task.model, "deterministic_encoder", lambda: False)
    separate, ref_grads = step()
    assert sizes == [4, 8]
    for key in ("loss", "cls", "aux_cls", "ptc", "ctc", "seg"):
        torch.testing.assert_close(reused[key], separate[key], rtol=1e-5, atol=1e-6)
    assert grads.keys() == ref_grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-4, atol=1e-6, msg=name)
