"""``create_backbone``: any timm model by name, any open_clip model as ``open_clip:<name>``.

Nothing is downloaded unless ``pretrained=True``; local weights come in through
``checkpoint_path`` (safetensors or ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
from pathlib import Path
from typing import Any

from torch import nn

from visionkit.backbones.asset_files import register_open_clip_configs
from visionkit.core.weights import load_weights
from visionkit.errors import VisionkitError

OPEN_CLIP_PREFIX = "open_clip:"


class BackboneError(VisionkitError, ValueError):
    """A backbone name, option or weight source that cannot be used."""


def _offline_error(name: str, err: Exception) -> BackboneError:
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return BackboneError(
        f"backbone '{name}': pretrained=True could not fetch weights ({first[:160]}). "
        "Without network, download the weights elsewhere and pass checkpoint_path=<file>"
    )


def _takes_img_size(model: nn.Module) -> bool:
    import inspect

    return "img_size" in inspect.signature(type(model).__init__).parameters


@functools.lru_cache(maxsize=1)
def _timm_names() -> tuple[str, ...]:
    """Every timm architecture name (listed once per process, about 1,400 names)."""
    import timm

    return tuple(timm.list_models())


def _close_timm_names(name: str, n: int = 5) -> list[str]:
    """Up to ``n`` timm architecture names closest to ``name`` (tag dropped, any case), best first."""
    arch = name.split(".")[0].lower()
    return difflib.get_close_matches(arch, _timm_names(), n=n, cutoff=0.6)


def check_timm_name(name: str) -> None:
    """Refuse a name timm does not know, suggesting the closest known names.

    Raises:
        BackboneError: ``name`` is not a timm architecture (one line, with close matches).
    """
    import timm

    if not timm.is_model(name):
        close = _close_timm_names(name)
        hint = f"; closest names: {close}" if close else ""
        raise BackboneError(f"backbone '{name}' is not a timm model name (see timm.list_models()){hint}")


def _create_timm(name: str, pretrained: bool, image_size: int | None = None, **kwargs: Any) -> nn.Module:
    import timm

    check_timm_name(name)
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
        size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size", (0, 0, 0))[-1]
        if image_size and "img_size" not in kwargs and size != image_size and _takes_img_size(model):
            model = timm.create_model(name, pretrained=pretrained, img_size=image_size, **kwargs)
        return model
    except (OSError, ConnectionError, TimeoutError) as err:
        if pretrained:
            raise _offline_error(name, err) from err
        raise
    except TypeError as err:
        raise BackboneError(f"backbone '{name}': invalid backbone_kwargs {sorted(kwargs)} ({err})") from err


def open_clip_arch(spec: str) -> str:
    """The open_clip architecture name of ``spec`` (``"<arch>[/<tag>]"`` or a config ``.json`` path).

    Registers visionkit's own configs (``assets/open_clip/*.json``) and, for a ``.json`` path, that
    file with open_clip, so ``open_clip.create_model`` / ``get_tokenizer`` know the name.
    """
    import open_clip

    register_open_clip_configs()
    if spec.endswith(".json"):
        path = Path(spec)
        if not path.is_file():
            raise BackboneError(f"backbone '{OPEN_CLIP_PREFIX}{spec}': config file not found")
        open_clip.add_model_config(path)
        return path.stem
    return spec.partition("/")[0]


class _DropRandomInitWarning(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded" warning: random init is what was asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init():
    root, drop = logging.getLogger(), _DropRandomInitWarning()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _create_open_clip(spec: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    import open_clip

    arch = open_clip_arch(spec)
    tag = "" if spec.endswith(".json") else spec.partition("/")[2]
    if arch not in open_clip.list_models():
        raise BackboneError(
            f"backbone '{OPEN_CLIP_PREFIX}{spec}': '{arch}' is not an open_clip model name (see open_clip.list_models())"
        )
    if pretrained and not tag:
        tags = [t for a, t in open_clip.list_pretrained() if a == arch]
        raise BackboneError(
            f"backbone '{OPEN_CLIP_PREFIX}{spec}': pretrained=True needs a tag, e.g. '{OPEN_CLIP_PREFIX}{arch}/<tag>' with one of {tags}"
        )
    try:
        with _quiet_random_init():
            return open_clip.create_model(arch, pretrained=tag if pretrained else None, **kwargs)
    except RuntimeError as err:
        if pretrained and "download" in str(err).lower():
            raise _offline_error(OPEN_CLIP_PREFIX + spec, err) from err
        raise


def create_backbone(
    name: str,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    skip_mismatched: tuple[str, ...] | None = None,
    image_size: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a backbone by name.

    Args:
        name: a timm model name (``"resnet18"``, ``"vit_small_patch16_224"``, ``"test_vit"``) or
            ``"open_clip:<arch>[/<pretrained tag>]"``.
        pretrained: fetch the published weights from the hub (needs network). Default ``False``.
        checkpoint_path: a local ``.safetensors``/``.pth`` file loaded after construction.
        skip_mismatched: state-dict key prefixes that may be absent from the file or differ in
            shape; default: the timm classifier, so a head for another number of classes is
            freshly initialised.
        image_size: input side in pixels; passed as ``img_size`` to timm models that take one
            (ViTs and relatives) unless ``kwargs`` already set it. CNNs ignore it.
        **kwargs: architecture arguments for ``timm.create_model`` / ``open_clip.create_model``
            (``num_classes``, ``in_chans``, ``img_size``, ``patch_size``, ...).

    Raises:
        BackboneError: unknown name, bad kwargs, or pretrained weights that cannot be fetched.
        visionkit.core.weights.WeightsError: the checkpoint is unreadable or does not fit.
    """
    if pretrained and checkpoint_path:
        raise BackboneError(f"backbone '{name}': give either pretrained=True or checkpoint_path, not both")
    if name.startswith(OPEN_CLIP_PREFIX):
        model = _create_open_clip(name[len(OPEN_CLIP_PREFIX):], pretrained, **kwargs)
    else:
        model = _create_timm(name, pretrained, image_size, **kwargs)
    if checkpoint_path:
        if skip_mismatched is None:
            skip_mismatched = classifier_prefixes(model)
        load_weights(model, checkpoint_path, skip_mismatched=skip_mismatched)
    return model


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of a timm model's classifier (``("fc.",)``, ``("head.fc.",)``, ...)."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    names = cfg.get("classifier", ())
    if isinstance(names, str):
        names = (names,)
    return tuple(f"{n}." for n in names)


class InputNormalize(nn.Module):
    """``(x - mean) / std`` per channel, for images in [0, 1] (``(B, C, H, W)``).

    Args:
        mean, std: per-channel statistics, e.g. a timm model's ``pretrained_cfg`` values.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        import torch

        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        if x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"input has {x.shape[1]} channels; the normalisation expects {self.mean.shape[1]}")
        return (x - self.mean) / self.std


def input_normalization(model: nn.Module, in_channels: int = 3) -> InputNormalize:
    """The mean/std normalisation a timm or open_clip model's weights expect (ImageNet's when unknown)."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    visual = getattr(model, "visual", None)
    if getattr(visual, "image_mean", None) is not None:  # open_clip
        cfg = {"mean": visual.image_mean, "std": visual.image_std}
    mean, std = tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    if len(mean) != in_channels:
        mean, std = (sum(mean) / len(mean),) * in_channels, (sum(std) / len(std),) * in_channels
    return InputNormalize(mean, std)
