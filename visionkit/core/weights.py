"""Safe loading of local weight files (``.safetensors``, ``.pth``/``.pt``/``.bin``/``.ckpt``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from visionkit.errors import VisionkitError

#: Prefixes stripped from state-dict keys so Lightning and DDP checkpoints load into a bare model.
STRIP_PREFIXES = ("module.", "model.", "backbone.", "base_model.", "_orig_mod.")


class WeightsError(VisionkitError, ValueError):
    """A weight file could not be read or does not fit the model."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict without executing code: safetensors, or ``torch.load(weights_only=True)``.

    A Lightning checkpoint's ``state_dict`` entry is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint_path '{path}' does not exist; expected a .safetensors or .pth file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every reader failure is reported the same way
        raise WeightsError(
            f"checkpoint_path '{path}' could not be read as weights ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"checkpoint_path '{path}' holds no tensor state dict")
    return state


def _strip(state: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Keep the keys under a wrapper prefix, stripped, while that makes more keys match the model.

    A task checkpoint holding other networks besides ``model.`` (a policy, a teacher) gives its
    ``model.`` part; the keys under other prefixes are left out.
    """
    changed = True
    while changed:
        changed = False
        matches = len(model_keys & state.keys())
        for prefix in STRIP_PREFIXES:
            stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if len(model_keys & stripped.keys()) > matches:
                state, changed = stripped, True
                break
    return state


def load_weights(model: nn.Module, path: str | Path, skip_mismatched: tuple[str, ...] = ()) -> list[str]:
    """Load a local weight file into ``model``; every tensor must fit unless listed.

    Args:
        model: the module to fill (in place).
        path: ``.safetensors`` or a ``torch.save`` file.
        skip_mismatched: key prefixes (e.g. the classifier) that may be missing or have another
            shape; those keep their fresh initialisation.

    Returns:
        The keys that were skipped.

    Raises:
        WeightsError: the file is unreadable, or keys outside ``skip_mismatched`` are missing,
            unexpected or of the wrong shape.
    """
    own = model.state_dict()
    state = _strip(read_state_dict(path), set(own))
    skipped = []
    for key in list(state):
        if key in own and own[key].shape != state[key].shape and key.startswith(skip_mismatched):
            skipped.append(key)
            del state[key]
    missing = [k for k in own if k not in state]
    skipped += [k for k in missing if k.startswith(skip_mismatched)]
    missing = [k for k in missing if not k.startswith(skip_mismatched)]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            parts.append(f"shape mismatch {[(k, tuple(state[k].shape), tuple(own[k].shape)) for k in wrong[:3]]}")
        raise WeightsError(f"checkpoint_path '{path}' does not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)
    return skipped
