"""Hidden-state readers: ``vit_hidden_states`` (the embedding, then every block with its prefix tokens),
``open_clip_text_owner`` and ``open_clip_hidden_states``, and the one-line error for a CNN."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import make_tiny_clip
from visionkit.backbones import (
    HiddenStatesError,
    open_clip_hidden_states,
    open_clip_text_owner,
    vit_hidden_states,
)
from visionkit.backbones.intermediates import get_intermediates
from visionkit.backbones.vit_stepper import ViTStepper
from visionkit.errors import VisionkitError

pytestmark = pytest.mark.usefixtures("seeded_single_thread")

DEPTH = 6


# ---- hidden states: h_0 = embedding, h_l = block l, prefix tokens in front ----------------------------------
def test_vit_hidden_states_are_the_embedding_and_every_block(vit, images):
    with torch.no_grad():
        hidden = vit_hidden_states(vit, images)
        tokens = ViTStepper(vit).embed(images)
        out = get_intermediates(vit, images)
    assert len(hidden.states) == DEPTH + 1 and torch.equal(hidden.states[0], tokens)
    for state, feats, prefix in zip(hidden.states[1:], out.features, out.prefix, strict=True):
        assert torch.equal(state, torch.cat([prefix, feats], dim=1))
    assert torch.equal(hidden.pooled, vit.forward_head(out.final, pre_logits=True))
    assert hidden.position.tolist() == [0, 0] and hidden.mask is None and hidden.pool_mask is None


def test_hidden_states_of_a_cnn_are_a_one_line_user_error(resnet, images):
    with pytest.raises(HiddenStatesError, match="'test_resnet' has no token layers") as err:
        vit_hidden_states(resnet, images)
    assert isinstance(err.value, VisionkitError) and "\n" not in str(err.value)
    assert str(err.value) == f"the hidden-state reader {err.value.reason}"


def test_open_clip_text_owner_is_the_text_tower_or_the_model():
    pytest.importorskip("open_clip")
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg, CustomTextCLIP

    clip = make_tiny_clip()
    assert open_clip_text_owner(clip) is clip
    vision = CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=8, image_size=32)
    custom = CustomTextCLIP(embed_dim=16, vision_cfg=vision, text_cfg=CLIPTextCfg(context_length=12, vocab_size=64,
                                                                                   width=32, heads=2, layers=1))
    assert open_clip_text_owner(custom) is custom.text
    tokens = torch.tensor([[62, 5, 63, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        hidden = open_clip_hidden_states(custom, tokens, "text")
        torch.testing.assert_close(hidden.pooled, custom.encode_text(tokens))
    assert len(hidden.states) == 2 and hidden.position.tolist() == [2] and hidden.mask.sum().item() == 3

