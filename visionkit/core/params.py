"""Parameter bookkeeping: trainable/total counts and optimizer parameter groups."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

#: Substrings of parameter names that never get weight decay (learned tokens and embeddings).
NO_DECAY_NAMES = ("cls_token", "reg_token", "pos_embed", "dist_token", "mask_token", "prompt", "meta_token")
_NORM_TYPES = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.modules.instancenorm._InstanceNorm,
)


@dataclass(frozen=True)
class ParameterCount:
    """Parameter counts of a model: ``trainable`` of ``total`` elements."""

    trainable: int
    total: int

    @property
    def percent(self) -> float:
        """Trainable share of all parameters, in percent."""
        return 100.0 * self.trainable / max(self.total, 1)

    def __str__(self) -> str:
        return f"trainable params: {self.trainable:,d} || all params: {self.total:,d} || trainable%: {self.percent:.4f}"


def parameter_report(model: nn.Module) -> ParameterCount:
    """Count parameter elements; "all" includes frozen ones (peft's convention). Shared tensors count once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return ParameterCount(trainable, total)


def _is_no_decay(module: nn.Module, param_name: str, param: nn.Parameter) -> bool:
    if isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower():
        return True
    if param.ndim <= 1:  # biases, norm scales, layer-scale gammas
        return True
    return any(key in param_name for key in NO_DECAY_NAMES)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split the *trainable* parameters of ``model`` into a decay and a no-decay group.

    Norm layers, biases, 1-d parameters and learned tokens (``NO_DECAY_NAMES``) get no weight
    decay. Frozen parameters (``requires_grad=False``) are left out entirely, so the optimizer
    never holds state for them. Empty groups are dropped.
    """
    decay, no_decay, seen = [], [], set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            full = f"{module_name}.{name}" if module_name else name
            (no_decay if _is_no_decay(module, full, param) else decay).append(param)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
