"""Semantic segmentation: dataset-level IoU from one confusion matrix accumulated over the whole split.

Two conventions for the mean IoU, which differ only in which classes enter the mean:

* ``"official"`` (PASCAL VOC / the ToCo reference code): the mean over the classes that have ground-truth
  pixels. A class predicted somewhere but absent from the ground truth is left out (its IoU is NaN).
* ``"torchmetrics"``: torchmetrics' ``MulticlassJaccardIndex(average="macro")``: the mean over the classes
  whose union (ground truth or prediction) is non-empty, so a class predicted but absent from the ground
  truth counts with IoU 0.

Both agree whenever every class occurs in the ground truth. On ground truth ``[0, 0, 1, 1]`` and prediction
``[0, 2, 1, 1]`` (3 classes) the official mIoU is 0.75 and torchmetrics' 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor
from torchmetrics import Metric

from visionkit.errors import check_choice

__all__ = ["CONVENTIONS", "SegmentationIoU", "iou_from_confusion"]

#: Accepted values of ``convention`` (see the module docstring).
CONVENTIONS = ("official", "torchmetrics")


def _float_dtype(device: torch.device) -> torch.dtype:
    """float64 for the ratios, float32 on MPS (which has no float64)."""
    return torch.float32 if device.type == "mps" else torch.float64


def iou_from_confusion(
    confusion: Tensor,
    convention: Literal["official", "torchmetrics"] = "official",
    ignore_index: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-class IoU and mean IoU of a ``(C, C)`` confusion matrix (rows: ground truth, columns: prediction).

    ``IoU_c = diag_c / (row_c + col_c - diag_c)``. The classes left out of the mean (see the module
    docstring) get NaN in the per-class vector, as does ``ignore_index`` when it is a class index. The mean
    is NaN when no class qualifies (an empty matrix).

    Returns:
        ``(iou, miou)``: ``(C,)`` and a 0-d tensor, float64 (float32 on MPS).
    """
    check_choice("convention", convention, CONVENTIONS)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square (C, C) matrix, got shape {tuple(confusion.shape)}")
    counts = confusion.to(_float_dtype(confusion.device))
    hits = counts.diagonal()
    gt, predicted = counts.sum(1), counts.sum(0)
    union = gt + predicted - hits
    kept = gt > 0 if convention == "official" else union > 0
    if ignore_index is not None and 0 <= ignore_index < len(kept):
        kept[ignore_index] = False
    iou = torch.where(kept, hits / union.clamp_min(1), torch.full_like(hits, torch.nan))
    return iou, iou[kept].mean() if bool(kept.any()) else iou.new_tensor(torch.nan)


class SegmentationIoU(Metric):
    """Mean IoU, per-class IoU and pixel accuracy from a confusion matrix summed over batches and DDP ranks.

    Args:
        num_classes: number of classes, background included (21 for PASCAL VOC).
        ignore_index: ground-truth value whose pixels are skipped (255 marks object boundaries in VOC);
            ``None``: every pixel counts. When it is a class index, that class is also left out of the mean.
        convention: ``"official"`` (default) or ``"torchmetrics"``, see :mod:`visionkit.metrics.segmentation`.
        class_names: one name per class for the per-class keys (default: the class indices).
        kwargs: ``torchmetrics.Metric`` options.

    ``update(preds, target)``:

    - ``preds``: ``(B, H, W)`` integer class labels, or ``(B, C, H, W)`` scores (logits or probabilities;
      the class is their argmax over dimension 1);
    - ``target``: ``(B, H, W)`` integer labels in ``[0, C)`` or ``ignore_index``.

    Any other target value, and predicted labels outside ``[0, C)``, raise ``ValueError`` naming the values.

    ``compute()`` returns a dict of 0-d float32 tensors:

    - ``miou``: the mean IoU of the chosen convention (NaN before any counted pixel);
    - ``pixel_acc``: correctly labelled pixels / counted pixels;
    - ``iou/<name>`` per class (``iou/<index>`` without ``class_names``): NaN for the classes that are left
      out of the mean.

    The state ``confusion`` is a ``(C, C)`` int64 matrix (rows: ground truth, columns: prediction) reduced
    with ``sum``, so the result is the same whether the pixels were seen by one process or spread over
    several (DDP), and in any batch order.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        num_classes: int,
        ignore_index: int | None = 255,
        convention: Literal["official", "torchmetrics"] = "official",
        class_names: Sequence[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int (background included), got {num_classes!r}")
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise ValueError(f"ignore_index must be an int or None, got {ignore_index!r}")
        check_choice("convention", convention, CONVENTIONS)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names must hold num_classes={num_classes} names, got {len(class_names)}")
        self.num_classes, self.ignore_index, self.convention = num_classes, ignore_index, convention
        self.class_names = [str(i) for i in range(num_classes)] if class_names is None else list(class_names)
        self.add_state(
            "confusion", torch.zeros(num_classes, num_classes, dtype=torch.int64), dist_reduce_fx="sum"
        )

    def _labels(self, preds: Tensor, target: Tensor) -> Tensor:
        """Integer ``(B, H, W)`` predicted labels from labels or scores, shapes checked against ``target``."""
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise ValueError(f"target must hold integer class labels, got dtype {target.dtype}")
        if preds.ndim == target.ndim + 1:
            if preds.shape[1] != self.num_classes or preds.shape[:1] + preds.shape[2:] != target.shape:
                raise ValueError(
                    f"score preds must have shape (B, num_classes={self.num_classes}, H, W) matching target "
                    f"{tuple(target.shape)}, got {tuple(preds.shape)}"
                )
            return preds.argmax(1)
        if preds.shape != target.shape:
            raise ValueError(
                f"preds must be labels shaped like target {tuple(target.shape)} or scores with an extra class "
                f"dimension, got {tuple(preds.shape)}"
            )
        if preds.is_floating_point() or preds.is_complex() or preds.dtype == torch.bool:
            raise ValueError(
                f"label preds must be integers, got dtype {preds.dtype}; pass scores as (B, C, H, W) to take their argmax"
            )
        return preds

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add the pixels of a batch (see the class docstring for the shapes)."""
        labels = self._labels(preds, target)
        device = self.confusion.device
        labels, target = labels.reshape(-1).to(device, torch.int64), target.reshape(-1).to(device, torch.int64)
        if self.ignore_index is None:
            counted = torch.ones_like(target, dtype=torch.bool)
        else:
            counted = target != self.ignore_index
        bad_target = counted & ((target < 0) | (target >= self.num_classes))
        bad_pred = (labels < 0) | (labels >= self.num_classes)
        if any(torch.stack([bad_target.any(), bad_pred.any()]).tolist()):  # one device sync for both checks
            self._raise_bad_labels(target[bad_target], labels[bad_pred])
        cells = target[counted] * self.num_classes + labels[counted]
        self.confusion += torch.bincount(cells, minlength=self.num_classes**2).reshape(self.num_classes, -1)

    def _raise_bad_labels(self, bad_target: Tensor, bad_pred: Tensor) -> None:
        expected = f"[0, {self.num_classes - 1}] (num_classes={self.num_classes})"
        if bad_target.numel():
            values = torch.unique(bad_target)[:10].tolist()
            ignore = "" if self.ignore_index is None else f" or the ignore_index {self.ignore_index}"
            raise ValueError(f"target holds labels {values} outside {expected}; expected class labels{ignore}")
        values = torch.unique(bad_pred)[:10].tolist()
        raise ValueError(f"preds hold labels {values} outside {expected}; map ignored or unknown predictions to a class first")

    def compute(self) -> dict[str, Tensor]:
        """The dict described in the class docstring."""
        iou, miou = iou_from_confusion(self.confusion, self.convention, self.ignore_index)
        total = self.confusion.sum()
        correct = self.confusion.diagonal().sum().to(iou.dtype)
        out = {
            "miou": miou,
            "pixel_acc": correct / total if int(total) else iou.new_tensor(torch.nan),
        }
        for name, value in zip(self.class_names, iou, strict=True):
            out[f"iou/{name}"] = value
        return {k: v.float() for k, v in out.items()}
