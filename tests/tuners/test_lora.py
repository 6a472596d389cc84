"""``LoRATuner``: frozen parts stay in eval mode (drop-path, norms) while the adapters' dropout trains."""

from __future__ import annotations

import torch

from visionkit.backbones import create_backbone


def test_frozen_parts_stay_in_eval_and_adapter_dropout_trains() -> None:
    from visionkit.tuners import LoRATuner

    net = create_backbone("test_vit", num_classes=4, patch_size=4, image_size=32, drop_rate=0.1, drop_path_rate=0.5)
    tuner = LoRATuner(net, r=2, dropout=0.1, targets=["blocks.5.attn.qkv"], trainable=("head.",)).train()
    dropouts = [m for n, m in tuner.named_modules() if "lora_dropout" in n and isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.training for m in dropouts)
    frozen_block = tuner.base_model.blocks[4]
    assert not any(m.training for m in frozen_block.modules())  # drop-path, norms, dropout of a frozen block
    assert not tuner.base_model.pos_drop.training and not tuner.base_model.patch_embed.training
    assert tuner.base_model.blocks[5].attn.qkv.training and not tuner.base_model.blocks[5].norm1.training
    tuner.eval()
    assert not any(m.training for m in tuner.modules())
