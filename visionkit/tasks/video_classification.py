"""``VideoClassificationTask``: a timm 2-D backbone applied to every frame, clip probabilities = mean of
the per-frame softmax (the TSN-style baseline of the video methods)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from visionkit.core.task import prediction_dict
from visionkit.tasks.classification import ClassificationTask
from visionkit.utils.viz import annotate

#: Frames per clip shown side by side in the prediction panel.
PANEL_FRAMES = 4


def frame_strips(video: Tensor, frames: int = PANEL_FRAMES) -> Tensor:
    """``(B, T, C, H, W)`` clips -> ``(B, C, H, frames * W)``: up to ``frames`` evenly spaced frames side by side."""
    picks = torch.linspace(0, video.shape[1] - 1, min(frames, video.shape[1]), device=video.device).round().long()
    return torch.cat(list(video[:, picks].unbind(1)), dim=-1)


def clip_log_probs(frame_logits: Tensor, frames: int) -> Tensor:
    """Per-frame logits ``(B*T, K)`` (clips' frames consecutive) -> clip log-probabilities ``(B, K)`` float32:
    the log of the mean over ``T`` frames of the per-frame softmax."""
    probs = frame_logits.float().softmax(-1).view(-1, frames, frame_logits.shape[-1]).mean(1)
    return probs.clamp_min(torch.finfo(torch.float32).tiny).log()


def check_clips(video: Tensor) -> None:
    """Raise ``ValueError`` unless ``video`` is a batch of clips ``(B, T, C, H, W)``."""
    if video.ndim != 5:
        raise ValueError(f"video must be (B, T, C, H, W), got shape {tuple(video.shape)}")


class VideoClassificationTask(ClassificationTask):
    """Clip classification: every frame through the same timm image backbone, then
    ``p(class | clip) = mean_t softmax(logits_t)``; the loss is the cross-entropy of that mean.

    Batches carry ``video`` ``(B, T, C, H, W)`` in [0, 1] and ``label`` ``(B,)``. ``forward`` returns the
    log of the clip probabilities, so ``softmax(forward(video))`` is the clip probability.

    Args:
        **kwargs: fine-tuning (``finetune``, ``lora_*``), backbone and optimisation arguments of
            :class:`~visionkit.tasks.ClassificationTask`.
    """

    def forward(self, video: Tensor) -> Tensor:
        """Clip log-probabilities ``(B, num_classes)`` (float32) for clips ``(B, T, C, H, W)`` in [0, 1]."""
        check_clips(video)
        return clip_log_probs(self.model(self.normalize(video.flatten(0, 1))), video.shape[1])

    def compute_loss(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        log_probs = self(batch["video"])
        loss = F.cross_entropy(log_probs, batch["label"], label_smoothing=self.hparams.label_smoothing)
        return {"loss": loss, "preds": log_probs, "target": batch["label"]}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """``{"probs": (B, K) clip probabilities, "index": (B,), "path": ...}`` (``path`` for file datasets)."""
        return prediction_dict(batch, self(batch["video"]).exp())

    def visualize(self, batch: dict[str, Any], outputs: dict[str, Tensor] | None) -> dict[str, Tensor]:
        strips = frame_strips(batch["video"])
        log_probs = outputs["preds"] if outputs and "preds" in outputs else self(batch["video"])
        pred = log_probs.argmax(-1)
        correct = pred == batch["label"] if "label" in batch else torch.ones_like(pred, dtype=torch.bool)
        names = self._class_names()
        captions = [names[int(p)] if names else f"class {int(p)}" for p in pred]
        return {"predictions": annotate(strips, captions, correct)}
