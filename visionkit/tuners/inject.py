"""Swap sub-modules of a model in place (layer masking, delta activation, reversible rewiring)."""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import nn

__all__ = ["Target", "matching_modules", "replace_modules", "set_submodule"]

#: What to replace: a module class (or tuple of classes), a regular expression that must match the
#: whole module name, or a predicate ``(name, module) -> bool``.
Target = type | tuple[type, ...] | str | re.Pattern | Callable[[str, nn.Module], bool]


def _predicate(target: Target) -> Callable[[str, nn.Module], bool]:
    if isinstance(target, type) or (isinstance(target, tuple) and all(isinstance(t, type) for t in target)):
        return lambda _name, module: isinstance(module, target)
    if isinstance(target, (str, re.Pattern)):
        pattern = re.compile(target)
        return lambda name, _module: pattern.fullmatch(name) is not None
    if callable(target):
        return target
    raise TypeError(f"target must be a module class, a regex or a (name, module) -> bool function, got {target!r}")


def matching_modules(model: nn.Module, target: Target) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` pairs matching ``target``, outermost first; a match's descendants are skipped."""
    match = _predicate(target)
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if any(name.startswith(outer + ".") for outer, _ in found if outer):
            continue
        if match(name, module):
            found.append((name, module))
    return found


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the sub-module at dotted ``name`` (``"blocks.3.mlp.act"``) by ``module``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if child not in parent._modules:
        raise ValueError(f"no module named '{name}' in {type(model).__name__}")
    parent._modules[child] = module


def replace_modules(
    model: nn.Module,
    predicate: Target,
    factory: Callable[[str, nn.Module], nn.Module],
    strict: bool = False,
) -> list[str]:
    """Replace every sub-module matching ``predicate`` by ``factory(name, module)``, in place.

    Matches are collected before anything is replaced, so the factory may wrap the old module
    (its descendants are not visited again), and a matched module's descendants are left alone.
    The new module takes the old one's train/eval mode. A module object registered under
    several names (shared) gets one replacement under all of them; its first name is returned.

    Args:
        model: the model to modify.
        predicate: a module class or tuple of classes, a regex matching the full module name, or
            a ``(name, module) -> bool`` function.
        factory: ``(name, old_module) -> new_module``.
        strict: raise when nothing matches.

    Returns:
        The replaced module names, in ``named_modules()`` order.

    Raises:
        ValueError: the root module itself matches (wrap it instead), the factory returned a
            non-module, or ``strict`` and nothing matched.
    """
    found = matching_modules(model, predicate)
    if found and found[0][0] == "":
        raise ValueError(f"the root module ({type(model).__name__}) matches; replace_modules only swaps sub-modules")
    shared = _aliases(model)
    replaced = []
    for name, old in found:
        new = factory(name, old)
        if not isinstance(new, nn.Module):
            raise ValueError(f"factory returned {type(new).__name__} for '{name}', not an nn.Module")
        new.train(old.training)
        for alias in shared.get(id(old), [name]):
            set_submodule(model, alias, new)
        replaced.append(name)
    if strict and not replaced:
        raise ValueError(f"no sub-module of {type(model).__name__} matches {predicate!r}")
    return replaced


def _aliases(model: nn.Module) -> dict[int, list[str]]:
    """Every name under which each module object is registered (``named_modules`` lists only the first)."""
    names: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if name:
            names.setdefault(id(module), []).append(name)
    return names
