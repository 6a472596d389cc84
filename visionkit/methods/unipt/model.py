"""UniPT (Diao et al., CVPR 2024) in pure torch: the side network and the backbone adapters.

Notation (see ``README.md``): hidden states ``h_0..h_L`` of a frozen backbone, each ``(B, N, D_l)``
(``h_0`` = the token embedding, ``h_l`` = the output of block ``l``); ``M = E / r`` is the
interaction width, ``E`` the output width.

* :class:`UniPT` is the side network (parallel interaction + confidence aggregation), in the two
  published forms: ``variant="token"`` (VSE∞: the last layer's tokens are the queries) and
  ``variant="global"`` (CLIP4Clip: the backbone's pooled output embedding is the one query).
* The hidden states come from :func:`visionkit.backbones.vit_hidden_states` (timm ViT) and
  :func:`visionkit.backbones.open_clip_hidden_states` (open_clip tower).
* :class:`UniPTClassifier` is UniPT on a timm ViT with a linear head, built on
  :class:`visionkit.tuners.SideTuner` (backbone frozen, in eval mode, run under ``no_grad``).
* :class:`UniPTTower` is UniPT on one open_clip tower (image or text) for retrieval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
from torch import Tensor, nn

from visionkit.backbones import (
    HiddenStates,
    HiddenStatesError,
    open_clip_hidden_states,
    vit_hidden_states,
)
from visionkit.errors import VisionkitError
from visionkit.tuners import SideTuner

__all__ = [
    "UniPT",
    "UniPTClassifier",
    "UniPTError",
    "UniPTOutput",
    "UniPTTower",
    "interaction_weights",
    "masked_mean",
]

Variant = Literal["token", "global"]
#: Floor of the L1 row sum of the interaction weights, ``rows / max(sum, EPS)`` (the spec and the
#: CLIP4Clip fork's ``l1norm``; the VSE∞ fork adds 1e-8 to the sum instead). A row that is all zero
#: after the ReLU gives zero weights either way; the two differ only for sums below 1e-6.
EPS = 1e-6


class UniPTError(VisionkitError, ValueError):
    """A backbone or input UniPT cannot work with (one line, naming it)."""


_T = TypeVar("_T")


def _read(reader: Callable[..., _T], *args: object) -> _T:
    """``reader(*args)``, a :class:`HiddenStatesError` re-raised as a one-line :class:`UniPTError`."""
    try:
        return reader(*args)
    except HiddenStatesError as err:
        raise UniPTError(f"UniPT {err.reason}") from err


# ---- the side network ----------------------------------------------------------------------------
def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over tokens of ``x`` ``(B, N, C)``, counting only ``mask`` ``(B, N)`` = 1 tokens -> ``(B, C)``."""
    if mask is None:
        return x.mean(1)
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def interaction_weights(query: Tensor, keys: Tensor, mask: Tensor | None = None) -> Tensor:
    """UniPT's parameter-free attention ``(B, Q, N)``: ReLU scores, L1-normalised per row.

    ``S = query @ keys^T``; masked key columns are multiplied by 0 (before the ReLU, as in the
    paper's code); each row is divided by ``max(sum(row), EPS)`` (``EPS = 1e-6``), so it sums to 1,
    to ``sum / 1e-6`` when the positive scores sum to less than 1e-6, and to 0 when every score is
    <= 0. The identity term is *not* included (it is added by :class:`UniPT`).
    """
    scores = query @ keys.transpose(1, 2)
    if mask is not None:
        scores = scores * mask.to(scores.dtype).unsqueeze(1)
    scores = torch.relu(scores)
    return scores / scores.sum(-1, keepdim=True).clamp_min(EPS)


def _attend(query: Tensor, keys: Tensor, mask: Tensor | None) -> Tensor:
    """``interaction_weights(query, keys, mask) @ keys`` without materialising the normalised matrix.

    The row scale commutes with the product, so ``(relu(S) @ K) / rowsum`` is exact; the ReLU
    output is the only ``(B, Q, N)`` tensor autograd keeps.
    """
    scores = query @ keys.transpose(1, 2)
    if mask is not None:
        scores = scores * mask.to(scores.dtype).unsqueeze(1)
    scores = torch.relu(scores)
    return (scores @ keys) / scores.sum(-1, keepdim=True).clamp_min(EPS)


@dataclass
class UniPTOutput:
    """Result of :class:`UniPT`.

    Attributes:
        features: ``(B, N, E)`` per token (token variant), ``(B, E)`` at ``query_index`` (token
            variant with ``query_index``) or ``(B, E)`` (global variant).
        layer_weights: ``(B, T)`` confidence ``pi`` over the ``T`` target layers (softmax per sample).
    """

    features: Tensor
    layer_weights: Tensor


class UniPT(nn.Module):
    """Parallel interaction + confidence aggregation over a backbone's hidden states.

    ``variant="token"`` (VSE∞ ``adapter_for_transformer.py``), with ``T_l = LN(W_l h_l + b_l)``
    for every state, anchor ``A = T_L`` (the last state; it is not a target) and
    ``a = masked_mean(A)``::

        Z_l = (relu-L1(A T_l^T) + I) T_l          for l = 0..L-1
        pi  = softmax_l(w_g . (a * masked_mean(T_l)) + b_g)      (one gate shared by all layers)
        O   = A + LN(W_p sum_l pi_l Z_l + b_p)
        Y   = W_u relu(O) + b_u                    (B, N, E)

    ``variant="global"`` (CLIP4Clip ``module_adapter.py``): the query is the backbone's pooled
    output ``g`` ``(B, E)`` (``q = W_a relu(g) + b_a``), every state is a target with
    ``T_l = W_l relu(h_l) + b_l`` (no LayerNorm), the identity term becomes the target's token at
    ``position`` (class token / end-of-text token), or, for backbones that pool by averaging
    (no pooled token), the target's mean over the tokens that pooling averages (``pool_mask``),
    and ``Y = g + W_u relu(sum_l pi_l Z_l) + b_u`` ``(B, E)``.

    Args:
        hidden_dims: width ``D_l`` of each hidden state, in order (token variant: the last one
            is the anchor).
        embed_dim: output width ``E`` (global variant: must equal the pooled output's width).
        reduction: ``r``; the interaction width is ``M = embed_dim // r``.
        variant: ``"token"`` or ``"global"``.

    Raises:
        UniPTError: fewer than two states (token) / one state (global), or ``embed_dim`` not
            divisible by ``reduction``.
    """

    def __init__(self, hidden_dims: Sequence[int], embed_dim: int, reduction: int = 2, variant: Variant = "token") -> None:
        super().__init__()
        if variant not in ("token", "global"):
            raise UniPTError(f"variant must be 'token' or 'global', got '{variant}'")
        dims = [int(d) for d in hidden_dims]
        if len(dims) < (2 if variant == "token" else 1):
            raise UniPTError(f"UniPT ({variant}) needs at least {2 if variant == 'token' else 1} hidden states, got {len(dims)}")
        if reduction < 1 or embed_dim % reduction:
            raise UniPTError(f"reduction must be a positive divisor of embed_dim={embed_dim}, got {reduction}")
        self.variant, self.embed_dim, self.reduction = variant, embed_dim, reduction
        self.hidden_dims = dims
        m = self.inner_dim = embed_dim // reduction
        if variant == "token":
            self.down = nn.ModuleList(nn.Sequential(nn.Linear(d, m), nn.LayerNorm(m)) for d in dims)
            self.projection = nn.Sequential(nn.Linear(m, m), nn.LayerNorm(m))
        else:
            self.down = nn.ModuleList(nn.Sequential(nn.ReLU(), nn.Linear(d, m)) for d in dims)
            self.anchor_down = nn.Sequential(nn.ReLU(), nn.Linear(embed_dim, m))
        self.up = nn.Sequential(nn.ReLU(), nn.Linear(m, embed_dim))
        self.gate = nn.Linear(m, 1)

    @property
    def num_targets(self) -> int:
        """Number of target layers the softmax runs over (``L`` token, ``L + 1`` global)."""
        return len(self.hidden_dims) - (1 if self.variant == "token" else 0)

    def _check(self, states: Sequence[Tensor], mask: Tensor | None) -> None:
        if len(states) != len(self.hidden_dims):
            raise UniPTError(f"UniPT was built for {len(self.hidden_dims)} hidden states, got {len(states)}")
        for k, (h, d) in enumerate(zip(states, self.hidden_dims, strict=True)):
            if h.ndim != 3 or h.shape[-1] != d:
                raise UniPTError(f"hidden state {k} has shape {tuple(h.shape)}; expected (B, N, {d})")
        if mask is not None and mask.shape != states[0].shape[:2]:
            raise UniPTError(f"mask has shape {tuple(mask.shape)}; expected (B, N) = {tuple(states[0].shape[:2])}")

    def _aggregate(self, anchor_pooled: Tensor, query: Tensor, targets: list[Tensor], identity: list[Tensor],
                   mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """``sum_l pi_l Z_l`` ``(B, Q, M)`` and ``pi`` ``(B, T)``."""
        logits = torch.cat([self.gate(anchor_pooled * masked_mean(t, mask)) for t in targets], dim=1)
        pi = logits.softmax(dim=1)
        merged = torch.stack([_attend(query, t, mask) + i for t, i in zip(targets, identity, strict=True)], dim=1)
        return torch.einsum("bt,btqm->bqm", pi, merged), pi

    def forward(
        self,
        hidden_states: Sequence[Tensor],
        mask: Tensor | None = None,
        anchor: Tensor | None = None,
        position: Tensor | None = None,
        query_index: Tensor | None = None,
        pool_mask: Tensor | None = None,
    ) -> UniPTOutput:
        """Run UniPT.

        Args:
            hidden_states: ``h_0..h_L``, each ``(B, N, D_l)`` (same ``B`` and ``N``).
            mask: ``(B, N)``, 1 for real tokens and 0 for padding (``None``: all real).
            anchor: global variant only: the backbone's pooled output ``(B, E)``.
            position: global variant only: ``(B,)`` index of the pooled token (class token,
                end-of-text token), used as the identity term. ``None`` (a backbone that pools
                by averaging, e.g. a timm ViT with ``global_pool="avg"``): the identity term is
                the target's mean over the ``pool_mask`` tokens instead.
            pool_mask: global variant only, with ``position=None``: ``(B, N)``, 1 for the tokens
                the backbone's pooling averages (e.g. the patch tokens, not the prefix tokens);
                ``None``: every real token (``mask``).
            query_index: token variant only: ``(B,)`` token whose output is wanted (e.g. the
                class token). Only those query rows are computed; the result equals
                ``features[arange(B), query_index]`` of the full call, at a fraction of the memory.
        """
        self._check(hidden_states, mask)
        if self.variant == "global":
            return self._forward_global(hidden_states, mask, anchor, position, pool_mask)
        if anchor is not None or position is not None or pool_mask is not None:
            raise UniPTError("anchor, position and pool_mask are for variant='global'; "
                             "the token variant's anchor is the last state")
        targets = [down(h) for down, h in zip(self.down, hidden_states, strict=True)]
        anchor_tokens = targets.pop()
        anchor_pooled = masked_mean(anchor_tokens, mask)
        if query_index is None:
            query, identity = anchor_tokens, targets
        else:
            rows = torch.arange(len(anchor_tokens), device=anchor_tokens.device)
            query = anchor_tokens[rows, query_index].unsqueeze(1)
            identity = [t[rows, query_index].unsqueeze(1) for t in targets]
        z, pi = self._aggregate(anchor_pooled, query, targets, identity, mask)
        out = self.up(query + self.projection(z))
        return UniPTOutput(out if query_index is None else out.squeeze(1), pi)

    @torch.no_grad()
    def read_weights(
        self,
        hidden_states: Sequence[Tensor],
        mask: Tensor | None = None,
        anchor: Tensor | None = None,
        query_index: Tensor | None = None,
    ) -> Tensor:
        """Interaction weights ``(B, T, N)`` of one query per sample over every target layer's tokens.

        The query is the token at ``query_index`` (token variant; default token 0) or the pooled
        anchor (global variant). For pictures: where UniPT reads each layer.
        """
        self._check(hidden_states, mask)
        targets = [down(h) for down, h in zip(self.down, hidden_states, strict=True)]
        rows = torch.arange(len(targets[0]), device=targets[0].device)
        if self.variant == "global":
            if anchor is None:
                raise UniPTError("variant='global' needs the pooled anchor (B, E)")
            query = self.anchor_down(anchor).unsqueeze(1)
        else:
            last = targets.pop()
            index = torch.zeros_like(rows) if query_index is None else query_index
            query = last[rows, index].unsqueeze(1)
        return torch.cat([interaction_weights(query, t, mask) for t in targets], dim=1)

    def _forward_global(self, states: Sequence[Tensor], mask: Tensor | None, anchor: Tensor | None,
                        position: Tensor | None, pool_mask: Tensor | None) -> UniPTOutput:
        if anchor is None or anchor.ndim != 2 or anchor.shape[-1] != self.embed_dim:
            got = None if anchor is None else tuple(anchor.shape)
            raise UniPTError(f"variant='global' needs anchor of shape (B, {self.embed_dim}), got {got}")
        if pool_mask is not None and pool_mask.shape != states[0].shape[:2]:
            raise UniPTError(f"pool_mask has shape {tuple(pool_mask.shape)}; expected (B, N) = {tuple(states[0].shape[:2])}")
        targets = [down(h) for down, h in zip(self.down, states, strict=True)]
        query = self.anchor_down(anchor).unsqueeze(1)
        identity = [self._identity(t, position, mask, pool_mask) for t in targets]
        z, pi = self._aggregate(query.squeeze(1), query, targets, identity, mask)
        return UniPTOutput(anchor + self.up(z).squeeze(1), pi)


    @staticmethod
    def _identity(target: Tensor, position: Tensor | None, mask: Tensor | None, pool_mask: Tensor | None) -> Tensor:
        """Global variant's identity term ``(B, 1, M)``: the target at the pooled token, or its mean
        over the pooled tokens (``pool_mask`` and ``mask``) for backbones that pool by averaging."""
        if position is not None:
            rows = torch.arange(len(target), device=target.device)
            return target[rows, position].unsqueeze(1)
        keep = pool_mask if mask is None else (mask if pool_mask is None else pool_mask * mask)
        return masked_mean(target, keep).unsqueeze(1)


# ---- UniPT on a timm ViT (classification) ---------------------------------------------------------------
class _ClassifierSide(nn.Module):
    """UniPT + read-out + linear head, called by :class:`SideTuner` with a :class:`HiddenStates`."""

    def __init__(self, unipt: UniPT, num_classes: int, readout: str) -> None:
        super().__init__()
        self.unipt, self.readout = unipt, readout
        self.head = nn.Linear(unipt.embed_dim, num_classes)
        self.last_layer_weights: Tensor | None = None

    def forward(self, hidden: HiddenStates) -> Tensor:
        if self.unipt.variant == "global":
            out = self.unipt(hidden.states, hidden.mask, anchor=hidden.pooled, position=hidden.position,
                             pool_mask=hidden.pool_mask)
            feats = out.features
        elif self.readout == "cls":
            out = self.unipt(hidden.states, hidden.mask, query_index=hidden.position)
            feats = out.features
        else:
            out = self.unipt(hidden.states, hidden.mask)
            feats = masked_mean(out.features, hidden.mask)
        self.last_layer_weights = out.layer_weights.detach()
        return self.head(feats)


class UniPTClassifier(SideTuner):
    """UniPT on a frozen timm ViT with a linear classifier: ``(B, C, H, W) -> (B, num_classes)``.

    The backbone runs under ``torch.no_grad()`` and stays in eval mode; only UniPT and the head
    train. Hidden states: the token embedding (after position embedding and ``norm_pre``) and every
    block output (before the final norm), prefix tokens included.

    Args:
        backbone: a timm ViT/DeiT (its own classifier is removed).
        num_classes: classes of the new head.
        reduction: ``r`` (``M = embed_dim // r``).
        variant: ``"token"`` (anchor = last block's tokens) or ``"global"`` (anchor = pre-logits).
        readout: token variant: ``"cls"`` (class-token row of ``Y``; only that row is computed) or
            ``"mean"`` (mean of ``Y`` over all tokens). Backbones without a class token use ``"mean"``.
        embed_dim: UniPT output width ``E`` (token variant; default: the backbone width). The
            global variant always uses the pooled output's width.
        image_size: side of the probe image used to read the hidden-state widths
            (default: the backbone's own input size).

    Raises:
        UniPTError: a backbone whose intermediate layers cannot be read, or bad arguments.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        reduction: int = 2,
        variant: Variant = "token",
        readout: Literal["cls", "mean"] = "cls",
        embed_dim: int | None = None,
        image_size: int | None = None,
    ) -> None:
        if readout not in ("cls", "mean"):
            raise UniPTError(f"readout must be 'cls' or 'mean', got '{readout}'")
        if hasattr(backbone, "reset_classifier"):
            backbone.reset_classifier(0)
        probe = _probe(backbone, image_size)
        if readout == "cls" and probe.position is None:
            readout = "mean"
        width = probe.pooled.shape[-1] if variant == "global" else (embed_dim or probe.states[-1].shape[-1])
        unipt = UniPT([h.shape[-1] for h in probe.states], width, reduction, variant)
        super().__init__(backbone, _ClassifierSide(unipt, num_classes, readout), extractor=vit_hidden_states)
        self.readout = readout

    @property
    def unipt(self) -> UniPT:
        """The UniPT side network."""
        return self.side_network.unipt

    @property
    def last_layer_weights(self) -> Tensor | None:
        """``pi`` ``(B, T)`` of the last forward (detached), for plots."""
        return self.side_network.last_layer_weights


def _probe(backbone: nn.Module, image_size: int | None) -> HiddenStates:
    """Hidden states of one zero image (reads the widths and validates the backbone)."""
    size = image_size
    if size is None:
        cfg = getattr(backbone, "pretrained_cfg", None) or {}
        size = int(cfg.get("input_size", (3, 224, 224))[-1])
        patch = getattr(backbone, "patch_embed", None)
        if patch is not None and getattr(patch, "img_size", None):
            size = int(patch.img_size[0])
    chans = 3
    patch = getattr(backbone, "patch_embed", None)
    proj = getattr(patch, "proj", None)
    if isinstance(proj, nn.Conv2d):
        chans = proj.in_channels
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            return _read(vit_hidden_states, backbone, torch.zeros(1, chans, size, size))
    finally:
        backbone.train(was_training)


# ---- UniPT on an open_clip tower (retrieval) -----------------------------------------------------------
class UniPTTower(nn.Module):
    """UniPT on one tower of a frozen open_clip model: images or token ids -> ``(B, E)`` embedding.

    Holds only the side network; the open_clip model is passed to :meth:`forward` (it lives in
    the task, frozen, shared by both towers) and is run under ``torch.no_grad()``.

    Args:
        model: the open_clip model (used once to read the widths).
        tower: ``"image"`` or ``"text"``.
        example: an input for the probe (an image batch or token ids).
        reduction: ``r``.
        variant: ``"global"`` (CLIP4Clip: output = frozen embedding + UniPT correction) or
            ``"token"`` (the last layer's tokens are the queries; output at the pooled token).
    """

    def __init__(self, model: nn.Module, tower: Literal["image", "text"], example: Tensor, reduction: int = 1,
                 variant: Variant = "global") -> None:
        super().__init__()
        if tower not in ("image", "text"):
            raise UniPTError(f"tower must be 'image' or 'text', got '{tower}'")
        with torch.no_grad():
            probe = _read(open_clip_hidden_states, model, example, tower)
        if variant == "token" and probe.position is None:
            raise UniPTError(f"variant='token' needs a class or end-of-text token in the {tower} tower")
        self.tower = tower
        self.unipt = UniPT([h.shape[-1] for h in probe.states], probe.pooled.shape[-1], reduction, variant)
        self.last_layer_weights: Tensor | None = None

    def forward(self, model: nn.Module, x: Tensor) -> Tensor:
        """Unnormalised embedding ``(B, E)`` of images ``(B, 3, H, W)`` or token ids ``(B, L)``."""
        with torch.no_grad():
            hidden = open_clip_hidden_states(model, x, self.tower)
        if self.unipt.variant == "global":
            out = self.unipt(hidden.states, hidden.mask, anchor=hidden.pooled, position=hidden.position,
                             pool_mask=hidden.pool_mask)
        else:
            out = self.unipt(hidden.states, hidden.mask, query_index=hidden.position)
        self.last_layer_weights = out.layer_weights.detach()
        return out.features
