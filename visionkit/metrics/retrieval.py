"""Image-text retrieval recall@K in both directions, with several captions per image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

Direction = Literal["i2t", "t2i", "both"]


def image_text_recall(image_emb: Tensor, text_emb: Tensor, image_ids: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@K of caption-image pairs, in percent.

    Args:
        image_emb: ``(P, E)`` image embedding of each pair (pairs of one image repeat it).
        text_emb: ``(P, E)`` caption embedding of each pair.
        image_ids: ``(P,)`` image of each pair; pairs with equal ids share an image.
        ks: the cut-offs K.

    Returns:
        ``{"i2t_r1": ..., "t2i_r1": ..., ...}``: image->text: share of distinct images with at
        least one of their captions among the K most similar captions; text->image: share of
        captions whose image is among the K most similar distinct images. Similarity is the dot
        product (pass L2-normalised embeddings for cosine).
    """
    if not (len(image_emb) == len(text_emb) == len(image_ids)):
        raise ValueError(f"need as many image embeddings ({len(image_emb)}), text embeddings ({len(text_emb)}) and ids ({len(image_ids)})")
    ids, first = _first_occurrence(image_ids)
    images = image_emb[first]  # (I, E) one row per distinct image
    sim = images.float() @ text_emb.float().T  # (I, P)
    owner = image_ids.unsqueeze(0) == ids.unsqueeze(1)  # (I, P) caption p belongs to image i
    out: dict[str, float] = {}
    for k in ks:
        kk = min(k, sim.shape[1])
        top = sim.topk(kk, dim=1).indices
        out[f"i2t_r{k}"] = 100.0 * owner.gather(1, top).any(1).float().mean().item()
        kk = min(k, sim.shape[0])
        top = sim.T.topk(kk, dim=1).indices  # (P, k) images per caption
        target = owner.T.float().argmax(1, keepdim=True)  # (P, 1) row of the caption's image
        out[f"t2i_r{k}"] = 100.0 * (top == target).any(1).float().mean().item()
    return out


def _first_occurrence(ids: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct ids (sorted) and the index of each one's first occurrence."""
    uniq, inverse = torch.unique(ids, sorted=True, return_inverse=True)
    order = torch.arange(len(ids), device=ids.device)
    first = torch.full((len(uniq),), len(ids), dtype=torch.long, device=ids.device)
    first = first.scatter_reduce(0, inverse, order, reduce="amin")
    return uniq, first


class ImageTextRecall(Metric):
    """Recall@K (percent) for image-text retrieval, accumulated over an epoch.

    ``update(preds, target)`` takes ``preds`` ``(B, 2, E)`` = (image, caption) embeddings of each
    pair and ``target`` ``(B,)`` image ids (captions of one image share its id). ``compute``
    returns one number: the recall for ``k`` in ``direction``, or with several ``k``/``both``
    directions their **sum** (``k=(1, 5, 10), direction="both"`` is the usual "rsum", max 600).

    Args:
        k: cut-off, or several.
        direction: ``"i2t"`` (image query), ``"t2i"`` (caption query) or ``"both"``.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, k: int | Sequence[int] = 1, direction: Direction = "i2t", **kwargs) -> None:
        super().__init__(**kwargs)
        if direction not in ("i2t", "t2i", "both"):
            raise ValueError(f"direction must be 'i2t', 't2i' or 'both', got '{direction}'")
        self.ks = (k,) if isinstance(k, int) else tuple(k)
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"k must be positive, got {k}")
        self.direction = direction
        self.add_state("image_emb", default=[], dist_reduce_fx="cat")
        self.add_state("text_emb", default=[], dist_reduce_fx="cat")
        self.add_state("image_ids", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor) -> None:
        if preds.ndim != 3 or preds.shape[1] != 2 or len(preds) != len(target):
            raise ValueError(f"preds must be (B, 2, E) image/caption embeddings with B = len(target); got {tuple(preds.shape)}")
        self.image_emb.append(preds[:, 0])
        self.text_emb.append(preds[:, 1])
        self.image_ids.append(target.long())

    def compute(self) -> Tensor:
        scores = image_text_recall(
            dim_zero_cat(self.image_emb), dim_zero_cat(self.text_emb), dim_zero_cat(self.image_ids), self.ks
        )
        dirs = ("i2t", "t2i") if self.direction == "both" else (self.direction,)
        return torch.tensor(sum(scores[f"{d}_r{k}"] for d in dirs for k in self.ks))
