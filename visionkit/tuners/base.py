"""``BaseTuner``: a frozen base model plus whatever a method makes trainable."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from torch import nn

from visionkit.core.params import ParameterCount, parameter_report


class BaseTuner(nn.Module):
    """Wrap ``base_model``, freeze all of it, and keep its frozen parts in eval mode.

    A sub-module stays in train mode only while it (or a descendant) holds a trainable
    parameter, so BatchNorm statistics, dropout and drop-path of the frozen backbone never
    change, whatever ``.train()`` the Trainer calls.

    Args:
        base_model: the pretrained network, modified in place (its parameters are frozen).
        trainable: state-dict prefixes of base-model parts that stay trainable (e.g. the head).
    """

    def __init__(self, base_model: nn.Module, trainable: Iterable[str] = ()) -> None:
        super().__init__()
        self.base_model = base_model
        self.base_model.requires_grad_(False)
        self.unfreeze(trainable)
        self.train()

    def unfreeze(self, prefixes: Iterable[str]) -> list[str]:
        """Make base-model parameters whose names start with one of ``prefixes`` trainable.

        Returns:
            The names made trainable.

        Raises:
            ValueError: a prefix matches no parameter.
        """
        named = dict(self.base_model.named_parameters())
        chosen = []
        for prefix in prefixes:
            hits = [n for n in named if n == prefix or n.startswith(prefix.rstrip(".") + ".")]
            if not hits:
                raise ValueError(f"trainable prefix '{prefix}' matches no parameter of {type(self.base_model).__name__}")
            for n in hits:
                named[n].requires_grad_(True)
            chosen += hits
        return chosen

    def train(self, mode: bool = True) -> BaseTuner:
        """Set train mode on trainable parts only; frozen parts always stay in eval mode.

        A sub-module that holds parameters trains only if one of them is trainable, so frozen
        BatchNorm statistics never move. A parameter-free module (dropout, drop-path) trains only
        when every parameter of its nearest parameter-holding ancestor is trainable (an adapter's wrapped
        ``base_layer`` aside, as in peft's LoRA layers); so a frozen backbone's dropout and
        drop-path stay off, while a side network's or a LoRA adapter's dropout trains.
        """

        def fully_trainable(module: nn.Module) -> bool:
            params = [p for n, p in module.named_parameters() if not n.startswith("base_layer.")]
            return bool(params) and all(p.requires_grad for p in params)

        def visit(module: nn.Module, context: nn.Module) -> None:
            # context: the nearest ancestor that holds parameters
            if next(module.parameters(), None) is not None:
                module.training = mode and any(p.requires_grad for p in module.parameters())
                context = module
            else:
                module.training = mode and fully_trainable(context)
            for child in module.children():
                visit(child, context)

        self.training = mode
        for child in self.children():
            visit(child, self)
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """The parameters an optimizer should see."""
        return (p for p in self.parameters() if p.requires_grad)

    def parameter_report(self) -> ParameterCount:
        """``trainable || all || %``, where "all" counts the frozen base model and the added parts."""
        return parameter_report(self)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the base model unchanged."""
        return self.base_model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules", {})
            if "base_model" not in modules:
                raise
            return getattr(modules["base_model"], name)
