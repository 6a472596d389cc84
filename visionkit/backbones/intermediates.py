"""Intermediate activations of any backbone in one pass, as one :class:`Intermediates` structure.

Three strategies, picked automatically (``strategy="auto"``):

* ``"timm"``: the model's own ``forward_intermediates`` (timm >= 1.0 ViTs, CNNs, hierarchical
  models). visionkit hides its traps: an ``int`` index means "the last n levels" in timm as
  here, but every index is validated first with a one-line ``ValueError``; features come back
  in the order they were asked for; NLC output is produced for CNNs by flattening.
* ``"open_clip"``: open_clip image towers (``VisionTransformer``, ``ModifiedResNet``,
  ``TimmModel``), text towers (``TextTransformer`` or the text part of a ``CLIP`` model) and
  whole ``CLIP``/``CustomTextCLIP``/``CoCa`` models (``tower="image"|"text"``); the different
  argument names (``normalize_intermediates``, ``output_extra_tokens``) and dict return types
  are normalised.
* ``"hooks"``: forward hooks on the modules named in ``modules=`` (or, for timm models, the
  modules of ``model.feature_info``); used automatically for models without
  ``forward_intermediates``.

Levels are what the strategy counts: ViT blocks, CNN stages (timm ResNet: 0 = stem, 1-4 =
``layer1``-``layer4``), or the given hook modules.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from visionkit.backbones.hooks import ActivationRecorder, resolve_modules

__all__ = ["Intermediates", "get_intermediates", "num_levels", "open_clip_text_owner", "take_indices"]

log = logging.getLogger(__name__)

OutputFormat = Literal["auto", "NLC", "NCHW"]
Strategy = Literal["auto", "timm", "open_clip", "hooks"]
Indices = int | Sequence[int] | None

#: model classes whose ``forward_intermediates`` only produces NCHW (found on first use).
_NCHW_ONLY: set[type] = set()
_FALLBACK_LOGGED: set[type] = set()


@dataclass
class Intermediates:
    """Intermediate activations of one forward pass.

    Attributes:
        features: one tensor per requested level, ``(B, N, C)`` tokens (``fmt="NLC"``; prefix
            tokens removed) or ``(B, C, H, W)`` maps (``fmt="NCHW"``).
        prefix: per level, the ``(B, P, C)`` prefix tokens (class / register / distillation;
            for an open_clip CoCa text tower, the appended class token) or ``None`` when the model
            has none or they were not requested.
        final: the final output of the same pass: timm ViT ``norm(x)`` with prefix tokens
            ``(B, P+N, C)`` (feed it to ``model.forward_head``), timm CNN last feature map
            ``(B, C, H, W)`` (= ``forward_features``), open_clip pooled and projected embedding
            ``(B, E)`` (= ``encode_image`` / ``encode_text`` without L2 normalisation), hooks:
            ``forward_features(x)`` (or ``model(x)``). ``None`` when ``stop_early`` cut the pass short.
        grid: ``(H, W)`` of the patch grid for token models, or the common spatial size of all
            NCHW levels; ``None`` for text or when levels differ (see ``grids``).
        grids: spatial size of each level (``None`` for text).
        indices: absolute level index of each entry of ``features`` (same order).
        num_levels: how many levels the model has (valid indices are ``-num_levels..num_levels-1``).
        source: ``"timm"``, ``"open_clip"`` or ``"hooks"``.
        fmt: ``"NLC"`` or ``"NCHW"``.
        modules: module names of the levels (hook strategy; ``None`` otherwise).
        embedding: ViTs only, when ``include_embedding=True``: the token embedding after position
            embedding and pre-norm (the "hidden state 0" of UniPT), formatted like ``features``.
        embedding_prefix: prefix part of ``embedding``.
    """

    features: list[Tensor]
    prefix: list[Tensor] | None
    final: Tensor | None
    grid: tuple[int, int] | None
    indices: list[int]
    num_levels: int
    source: Literal["timm", "open_clip", "hooks"]
    fmt: Literal["NLC", "NCHW"]
    grids: list[tuple[int, int]] | None = None
    modules: list[str] | None = None
    embedding: Tensor | None = None
    embedding_prefix: Tensor | None = None

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, k: int) -> Tensor:
        return self.features[k]


# ---- index handling ---------------------------------------------------------------------------
def take_indices(num: int, indices: Indices, what: str = "model") -> list[int]:
    """Absolute level indices for ``indices`` (timm semantics), in the order asked for.

    Args:
        num: number of levels.
        indices: ``None`` = all; ``int n`` = the last ``n`` levels; a sequence = those levels,
            negatives counted from the end.
        what: model description used in error messages.

    Raises:
        ValueError: an index outside ``-num..num-1``, ``n`` outside ``1..num``, an empty or
            repeated selection.
    """
    if indices is None:
        return list(range(num))
    if isinstance(indices, bool):
        raise ValueError(f"indices must be None, an int or a list of ints, got {indices!r}")
    if isinstance(indices, int):
        if not 1 <= indices <= num:
            raise ValueError(
                f"indices={indices} asks for the last {indices} layers of {what}, which has {num} "
                f"(an int means 'last n'; valid: 1..{num}; a list such as [{num - 1}] selects one layer)"
            )
        return list(range(num - indices, num))
    chosen = []
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, int):
            raise ValueError(f"layer index {i!r} is not an int (indices={list(indices)})")
        if not -num <= i < num:
            raise ValueError(f"layer index {i} is out of range for {what} with {num} layers (valid: {-num}..{num - 1})")
        chosen.append(i % num)
    if not chosen:
        raise ValueError(f"indices is an empty list; pass None for all {num} layers of {what}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"indices {list(indices)} name the same layer twice (absolute: {chosen}) in {what}")
    return chosen


def _describe(model: nn.Module) -> str:
    return type(model).__name__


def _unwrap(model: nn.Module) -> nn.Module:
    """Look through visionkit tuners (``base_model``) to the backbone that owns the layers."""
    while "base_model" in model._modules and not hasattr(type(model), "forward_intermediates"):
        model = model._modules["base_model"]
    return model


def _is_open_clip(model: nn.Module) -> bool:
    return type(model).__module__.startswith("open_clip")


def _timm_num_levels(model: nn.Module) -> int | None:
    info = getattr(model, "feature_info", None)
    if info is None:
        return len(model.blocks) if hasattr(model, "blocks") and hasattr(model, "num_prefix_tokens") else None
    return len(info)


def _feature_info_modules(model: nn.Module) -> list[str] | None:
    info = getattr(model, "feature_info", None)
    if info is None:
        return None
    if hasattr(info, "module_name"):  # timm FeatureInfo
        return list(info.module_name())
    names = [entry.get("module") for entry in info if isinstance(entry, dict)]
    return names if names and all(names) else None


def open_clip_text_owner(model: nn.Module) -> nn.Module:
    """The module holding an open_clip model's text layers: its ``.text`` tower (``CustomTextCLIP``,
    ``CoCa``), else the model itself (a ``CLIP``, or a bare ``TextTransformer``)."""
    text = getattr(model, "text", None)
    return text if isinstance(text, nn.Module) else model


def _open_clip_levels(model: nn.Module, tower: str) -> int:
    if tower == "text":
        return len(open_clip_text_owner(model).transformer.resblocks)
    visual = getattr(model, "visual", model)
    if hasattr(visual, "transformer"):
        return len(visual.transformer.resblocks)
    if hasattr(visual, "trunk"):
        return _timm_num_levels(visual.trunk) or 0
    return 5  # ModifiedResNet: stem + 4 stages


def _is_text_tower(model: nn.Module) -> bool:
    """An open_clip ``TextTransformer`` on its own (no image tower)."""
    return _is_open_clip(model) and not hasattr(model, "visual") and hasattr(model, "token_embedding")


def _resolve_tower(model: nn.Module, tower: str | None) -> str:
    if tower is None:
        return "text" if _is_text_tower(model) else "image"
    if tower not in ("image", "text"):
        raise ValueError(f"tower must be 'image' or 'text', got {tower!r}")
    if tower == "image" and _is_text_tower(model):
        raise ValueError(f"{_describe(model)} is an open_clip text tower; use tower='text' (or leave it None)")
    return tower


def num_levels(
    model: nn.Module, tower: Literal["image", "text"] | None = None, modules: Sequence[str] | None = None
) -> int:
    """How many levels :func:`get_intermediates` can return for ``model``."""
    model = _unwrap(model)
    if modules is not None:
        return len(modules)
    if _is_open_clip(model):
        return _open_clip_levels(model, _resolve_tower(model, tower))
    n = _timm_num_levels(model) if hasattr(model, "forward_intermediates") else None
    if n is None:
        names = _feature_info_modules(model)
        if names is None:
            raise ValueError(f"cannot tell the layers of {_describe(model)}; pass modules=[...]")
        n = len(names)
    return n


# ---- formatting helpers ---------------------------------------------------------------------------
def _token_grid(model: nn.Module, x: Tensor) -> tuple[int, int] | None:
    embed = getattr(model, "patch_embed", None)
    height, width = x.shape[-2:]
    if embed is not None and hasattr(embed, "dynamic_feat_size"):
        return tuple(int(v) for v in embed.dynamic_feat_size((height, width)))
    patch = getattr(embed, "patch_size", None) or getattr(model, "patch_size", None)
    if patch is None:
        return None
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    return height // ph, width // pw


def _nchw_to_nlc(t: Tensor) -> Tensor:
    return t.flatten(2).transpose(1, 2)


def _nlc_to_nchw(t: Tensor, grid: tuple[int, int]) -> Tensor:
    b, n, c = t.shape
    if grid[0] * grid[1] != n:
        raise ValueError(f"cannot reshape {n} tokens to the grid {grid}; use output_fmt='NLC'")
    return t.reshape(b, grid[0], grid[1], c).permute(0, 3, 1, 2).contiguous()


def _grids(features: list[Tensor]) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in f.shape[-2:]) for f in features]


def _common(grids: list[tuple[int, int]]) -> tuple[int, int] | None:
    return grids[0] if grids and all(g == grids[0] for g in grids) else None


def _is_fmt_assertion(err: AssertionError) -> bool:
    msg = str(err).lower()
    return "output" in msg and ("format" in msg or "shape" in msg)


def _call_fmt(fn: Callable[..., Any], x: Tensor, cls: type, fmt: str, **kwargs: Any) -> tuple[Any, str]:
    """Call ``fn(x, output_fmt=...)``, falling back to NCHW for models that only produce maps."""
    if fmt == "NLC" and cls not in _NCHW_ONLY:
        try:
            return fn(x, output_fmt="NLC", **kwargs), "NLC"
        except AssertionError as err:
            if not _is_fmt_assertion(err):
                raise
            _NCHW_ONLY.add(cls)
    return fn(x, output_fmt="NCHW", **kwargs), "NCHW"


def _reraise_range(err: AssertionError, indices: Indices, what: str, num: int) -> None:
    if "out of range" in str(err):
        raise ValueError(f"indices={indices!r} out of range for {what} with {num} layers ({err})") from err


# ---- strategies -------------------------------------------------------------------------------------
def _finish(
    features: list[Tensor],
    prefix: list[Tensor] | None,
    native_fmt: str,
    want_fmt: str,
    token_grid: tuple[int, int] | None,
) -> tuple[list[Tensor], str, list[tuple[int, int]] | None, tuple[int, int] | None]:
    """Convert ``features`` from ``native_fmt`` to ``want_fmt``; return features, fmt, grids, grid."""
    if native_fmt == "NCHW":
        grids = _grids(features)
        if want_fmt == "NLC":
            features = [_nchw_to_nlc(f) for f in features]
        return features, want_fmt if want_fmt != "auto" else "NCHW", grids, _common(grids)
    # native NLC tokens
    if want_fmt == "NCHW":
        if token_grid is None:
            raise ValueError("output_fmt='NCHW' needs a patch grid, which this model does not define; use 'NLC'")
        features = [_nlc_to_nchw(f, token_grid) for f in features]
        return features, "NCHW", [token_grid] * len(features), token_grid
    return features, "NLC", None if token_grid is None else [token_grid] * len(features), token_grid


def _split_prefix(t: Tensor, num_prefix: int) -> tuple[Tensor, Tensor | None]:
    if num_prefix <= 0:
        return t, None
    return t[:, num_prefix:], t[:, :num_prefix]


def _order(chosen: list[int], sorted_idx: list[int], items: list[Any]) -> list[Any]:
    pos = {idx: k for k, idx in enumerate(sorted_idx)}
    return [items[pos[i]] for i in chosen]


def _timm(
    model: nn.Module,
    x: Tensor,
    chosen: list[int],
    num: int,
    norm: bool,
    output_fmt: str,
    prefix_tokens: bool,
    stop_early: bool,
) -> Intermediates:
    ordered = sorted(chosen)
    params = inspect.signature(model.forward_intermediates).parameters
    kwargs: dict[str, Any] = {"indices": ordered, "norm": norm, "stop_early": stop_early}
    has_prefix = prefix_tokens and "return_prefix_tokens" in params and getattr(model, "num_prefix_tokens", 0) > 0
    if has_prefix:
        kwargs["return_prefix_tokens"] = True
    native = "NCHW" if output_fmt == "NCHW" else "NLC"
    try:
        (final, feats), native = _call_fmt(model.forward_intermediates, x, type(model), native, **kwargs)
    except AssertionError as err:
        _reraise_range(err, ordered, _describe(model), num)
        raise
    prefix = None
    if has_prefix:
        feats, prefix = [f for f, _ in feats], [p for _, p in feats]
    if output_fmt == "auto" and native == "NLC" and feats and feats[0].ndim == 4:
        native = "NCHW"  # a model that ignores output_fmt
    grid = _token_grid(model, x) if native == "NLC" else None
    feats, fmt, grids, grid = _finish(list(feats), prefix, native, output_fmt, grid)
    if stop_early and max(chosen) < num - 1:
        final = None
    return Intermediates(
        features=_order(chosen, ordered, feats),
        prefix=None if prefix is None else _order(chosen, ordered, prefix),
        final=final,
        grid=grid,
        grids=grids,
        indices=list(chosen),
        num_levels=num,
        source="timm",
        fmt=fmt,
    )


def _open_clip(
    model: nn.Module,
    x: Tensor,
    chosen: list[int],
    num: int,
    norm: bool,
    output_fmt: str,
    prefix_tokens: bool,
    stop_early: bool,
    tower: str,
) -> Intermediates:
    ordered = sorted(chosen)
    common = {"indices": ordered, "stop_early": stop_early, "normalize_intermediates": norm}
    if tower == "text":
        if output_fmt == "NCHW":
            raise ValueError("a text tower has no spatial grid: use output_fmt='NLC' (or 'auto')")
        if hasattr(model, "visual") and not isinstance(getattr(model, "text", None), nn.Module):
            # plain CLIP: the text layers live on the CLIP module itself; open_clip ignores stop_early there
            out = model.forward_intermediates(text=x, text_indices=ordered, normalize=False, normalize_intermediates=norm)
            stop_early = False
        else:  # TextTransformer, or the .text tower of CustomTextCLIP / CoCa
            owner = open_clip_text_owner(model)
            out = owner.forward_intermediates(x, output_fmt="NLC", output_extra_tokens=prefix_tokens, **common)
        feats = list(out["text_intermediates"])
        prefix = out.get("text_intermediates_suffix") if prefix_tokens else None
        final = out.get("text_features")
        fmt, grids, grid = "NLC", None, None
    else:
        visual = getattr(model, "visual", model)
        native = "NCHW" if output_fmt == "NCHW" else "NLC"
        try:
            out, native = _call_fmt(
                visual.forward_intermediates, x, type(visual), native, output_extra_tokens=prefix_tokens, **common
            )
        except AssertionError as err:
            _reraise_range(err, ordered, _describe(visual), num)
            raise
        feats = list(out["image_intermediates"])
        prefix = out.get("image_intermediates_prefix") if prefix_tokens else None
        final = out.get("image_features")
        if output_fmt == "auto" and feats and feats[0].ndim == 4:
            native = "NCHW"
        grid = _token_grid(visual, x) if native == "NLC" else None
        feats, fmt, grids, grid = _finish(feats, prefix, native, output_fmt, grid)
    if stop_early and max(chosen) < num - 1:
        final = None
    return Intermediates(
        features=_order(chosen, ordered, feats),
        prefix=None if prefix is None else _order(chosen, ordered, list(prefix)),
        final=final,
        grid=grid,
        grids=grids,
        indices=list(chosen),
        num_levels=num,
        source="open_clip",
        fmt=fmt,
    )


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the last requested level is recorded."""


def _hooks(
    model: nn.Module,
    x: Tensor,
    names: list[str],
    chosen: list[int],
    norm: bool,
    output_fmt: str,
    prefix_tokens: bool,
    stop_early: bool,
) -> Intermediates:
    wanted = [names[i] for i in chosen]
    last = names[max(chosen)]
    stopped = False
    final = None

    def stop(module: nn.Module, args: Any, output: Any) -> None:
        raise _StopForward

    run = model.forward_features if hasattr(model, "forward_features") else model
    with ActivationRecorder(model, wanted, detach=False) as rec:
        handle = resolve_modules(model, [last])[last].register_forward_hook(stop) if stop_early else None
        try:
            final = run(x)
        except _StopForward:
            stopped = True
        finally:
            if handle is not None:
                handle.remove()
    if stopped and max(chosen) < len(names) - 1:
        final = None
    elif not isinstance(final, Tensor):
        final = None
    feats = []
    for name in wanted:
        value = rec[name]
        if isinstance(value, (tuple, list)):
            value = value[0]
        if not isinstance(value, Tensor) or value.ndim not in (3, 4):
            raise ValueError(f"module '{name}' returned {type(value).__name__}, not a (B, N, C) or (B, C, H, W) tensor")
        feats.append(value)
    native = "NCHW" if feats[0].ndim == 4 else "NLC"
    prefix = None
    if native == "NLC":
        if norm and isinstance(getattr(model, "norm", None), nn.Module):
            feats = [model.norm(f) for f in feats]
        num_prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
        split = [_split_prefix(f, num_prefix) for f in feats]
        feats = [s for s, _ in split]
        prefix = [p for _, p in split] if prefix_tokens and num_prefix else None
    grid = _token_grid(model, x) if native == "NLC" else None
    feats, fmt, grids, grid = _finish(feats, prefix, native, output_fmt, grid)
    return Intermediates(
        features=feats,
        prefix=prefix,
        final=final,
        grid=grid,
        grids=grids,
        indices=list(chosen),
        num_levels=len(names),
        source="hooks",
        fmt=fmt,
        modules=wanted,
    )


def _embedding_module(model: nn.Module, tower: str) -> tuple[nn.Module, str, int]:
    """(module owning the embedding, name of the module whose output it is, prefix count)."""
    if tower == "text":
        raise ValueError("include_embedding=True is supported for ViT image towers only")
    visual = getattr(model, "visual", model) if _is_open_clip(model) else model
    if _is_open_clip(model) and hasattr(visual, "ln_pre"):
        return visual, "ln_pre", 1
    if hasattr(visual, "norm_pre") and hasattr(visual, "num_prefix_tokens"):
        return visual, "norm_pre", int(visual.num_prefix_tokens)
    raise ValueError(f"include_embedding=True needs a timm or open_clip ViT, not {_describe(visual)}")


def get_intermediates(
    model: nn.Module,
    x: Tensor,
    indices: Indices = None,
    norm: bool = False,
    output_fmt: OutputFormat = "auto",
    prefix_tokens: bool = True,
    stop_early: bool = False,
    *,
    tower: Literal["image", "text"] | None = None,
    strategy: Strategy = "auto",
    modules: Sequence[str] | None = None,
    include_embedding: bool = False,
) -> Intermediates:
    """Run ``model`` once on ``x`` and return its intermediate activations.

    Args:
        model: a timm model, an open_clip model or tower, any ``nn.Module`` with ``modules=``, or a
            visionkit tuner wrapping one of these.
        x: images ``(B, C, H, W)`` (or token ids ``(B, L)`` for ``tower="text"``).
        indices: ``None`` = every level; ``int n`` = **the last n levels** (timm semantics);
            a list = those levels (negatives count from the end). Features follow this order.
        norm: apply the model's final norm to each intermediate (timm ``norm``, open_clip
            ``normalize_intermediates``; ignored by models without one, such as CNNs).
        output_fmt: ``"NLC"`` tokens ``(B, N, C)``, ``"NCHW"`` maps, or ``"auto"`` (the model's
            own layout: tokens for transformers, maps for CNNs).
        prefix_tokens: return the class/register tokens in ``Intermediates.prefix``. They are
            never part of ``features``.
        stop_early: stop after the deepest requested level (saves compute; ``final`` is then
            ``None`` unless the deepest level is the last one).
        tower: ``"image"`` or ``"text"`` for open_clip models; ``None`` = text for a bare
            open_clip ``TextTransformer``, image otherwise.
        strategy: ``"auto"`` (timm/open_clip method, else hooks), or force one.
        modules: module names to hook (levels, in forward order); implies ``strategy="hooks"``.
        include_embedding: also return the ViT token embedding (after position embedding and
            pre-norm) in ``Intermediates.embedding``; recorded with a hook in the same pass.

    Raises:
        ValueError: a level index out of range (the message names it and the valid range), an
            unknown format, a model whose layers cannot be found.
        visionkit.backbones.hooks.ModuleNameError: a name in ``modules`` that is not in the model.
    """
    if output_fmt not in ("auto", "NLC", "NCHW"):
        raise ValueError(f"output_fmt must be 'auto', 'NLC' or 'NCHW', got {output_fmt!r}")
    model = _unwrap(model)
    tower = _resolve_tower(model, tower)
    if modules is not None:
        strategy = "hooks"
    if strategy == "auto":
        if _is_open_clip(model):
            strategy = "open_clip"
        elif hasattr(model, "forward_intermediates"):
            strategy = "timm"
        else:
            strategy = "hooks"
            if type(model) not in _FALLBACK_LOGGED:
                _FALLBACK_LOGGED.add(type(model))
                log.info("%s has no forward_intermediates; using forward hooks", _describe(model))
    if tower == "text" and strategy != "open_clip":
        raise ValueError(f"tower='text' is for open_clip models, not {_describe(model)}")

    recorder = None
    if include_embedding:
        owner, emb_name, emb_prefix = _embedding_module(model, tower)
        recorder = ActivationRecorder(owner, emb_name, detach=False)

    def run() -> Intermediates:
        if strategy == "hooks":
            names = list(modules) if modules is not None else _feature_info_modules(model)
            if not names:
                raise ValueError(
                    f"{_describe(model)} has no forward_intermediates and no feature_info; pass modules=[...] to hook"
                )
            resolve_modules(model, names)
            chosen = take_indices(len(names), indices, _describe(model))
            return _hooks(model, x, names, chosen, norm, output_fmt, prefix_tokens, stop_early)
        if strategy == "open_clip":
            num = _open_clip_levels(model, tower)
            chosen = take_indices(num, indices, f"{_describe(model)} ({tower} tower)")
            return _open_clip(model, x, chosen, num, norm, output_fmt, prefix_tokens, stop_early, tower)
        if strategy != "timm":
            raise ValueError(f"strategy must be 'auto', 'timm', 'open_clip' or 'hooks', got {strategy!r}")
        if not hasattr(model, "forward_intermediates"):
            raise ValueError(f"{_describe(model)} has no forward_intermediates; use strategy='hooks'")
        num = _timm_num_levels(model)
        if num is None:
            raise ValueError(f"{_describe(model)} has no feature_info to count its layers; use strategy='hooks' with modules=[...]")
        chosen = take_indices(num, indices, _describe(model))
        return _timm(model, x, chosen, num, norm, output_fmt, prefix_tokens, stop_early)

    if recorder is None:
        return run()
    with recorder:
        result = run()
        emb = recorder[emb_name]
    emb, emb_pre = _split_prefix(emb, emb_prefix)
    if result.fmt == "NCHW":
        emb = _nlc_to_nchw(emb, result.grid or _token_grid(getattr(model, "visual", model), x))
    result.embedding, result.embedding_prefix = emb, emb_pre if prefix_tokens else None
    return result

