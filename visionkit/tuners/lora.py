"""LoRA through peft, as a :class:`BaseTuner` (used as the parameter-efficient baseline)."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from visionkit.tuners.base import BaseTuner

_LORA_TYPES = (nn.Linear, nn.Conv2d)


def default_lora_targets(model: nn.Module, exclude: Iterable[str] = ()) -> list[str]:
    """Modules LoRA adapts by default: attention ``qkv`` projections of a ViT, else every Linear/Conv2d.

    Args:
        model: the base model.
        exclude: name prefixes left alone (the classifier, which is trained in full instead).
    """
    exclude = tuple(e.rstrip(".") for e in exclude)
    names = [n for n, m in model.named_modules() if isinstance(m, _LORA_TYPES) and not n.startswith(exclude)]
    qkv = [n for n in names if n.endswith(".qkv") or n == "qkv"]
    return qkv or names


class LoRATuner(BaseTuner):
    """Inject LoRA adapters (peft) into ``base_model``; only the adapters and ``trainable`` parts train.

    Args:
        base_model: the model to adapt (modified in place).
        r: LoRA rank.
        alpha: LoRA scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the adapter input.
        targets: exact module names to adapt; ``None`` uses :func:`default_lora_targets`.
        trainable: state-dict prefixes trained in full as well (e.g. the classifier).
    """

    def __init__(
        self,
        base_model: nn.Module,
        r: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        targets: list[str] | None = None,
        trainable: Iterable[str] = (),
    ) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        trainable = tuple(trainable)
        if r < 1:
            raise ValueError(f"lora_r must be a positive integer, got {r}")
        targets = targets or default_lora_targets(base_model, exclude=trainable)
        known = {n for n, _ in base_model.named_modules()}
        unknown = [t for t in targets if t not in known]
        if unknown:
            raise ValueError(f"lora_targets {unknown} are not module names of {type(base_model).__name__}")
        config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
        base_model = inject_adapter_in_model(config, base_model)
        super().__init__(base_model, trainable=trainable)
        for name, param in self.base_model.named_parameters():
            if "lora_" in name:
                param.requires_grad_(True)
        self.targets = list(targets)
        self.train()
