"""``RetrievalBase`` (open_clip model, loss and recall of every retrieval task) and ``RetrievalTask``
(the zero-shot / projection / full baseline)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from visionkit.backbones.assets import load_asset
from visionkit.backbones.factory import OPEN_CLIP_PREFIX, BackboneError, create_backbone, input_normalization
from visionkit.core.task import VisionTask
from visionkit.errors import check_choice
from visionkit.metrics import ImageTextRecall
from visionkit.tuners import BaseTuner
from visionkit.utils.viz import annotate

__all__ = ["RetrievalBase", "RetrievalTask", "clip_contrastive_loss", "hinge_triplet_loss", "open_clip_image_size", "projection_parameters"]


def _positives(image_ids: Tensor) -> Tensor:
    """``(B, B)`` True where two pairs show the same image (the diagonal included)."""
    return image_ids.unsqueeze(0) == image_ids.unsqueeze(1)


def clip_contrastive_loss(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor | float, image_ids: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE of CLIP over a batch of pairs (L2-normalised ``(B, E)`` embeddings).

    With ``image_ids``, other pairs of the same image are removed from the negatives (a COCO
    image has five captions and may appear twice in a batch).
    """
    logits = logit_scale * image_emb @ text_emb.T
    if image_ids is not None:
        same = _positives(image_ids) & ~torch.eye(len(logits), dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def hinge_triplet_loss(image_emb: Tensor, text_emb: Tensor, margin: float = 0.2, max_violation: bool = True,
                       image_ids: Tensor | None = None) -> Tensor:
    """VSE's bidirectional hinge ranking loss on cosine similarities, summed over the batch.

    ``max_violation=True`` keeps only the hardest negative per query (VSE++), ``False`` sums all
    violations (VSE∞ uses that in its first epoch).
    """
    scores = image_emb @ text_emb.T
    pos = scores.diag()
    cost_text = (margin + scores - pos.unsqueeze(1)).clamp_min(0)  # image query, caption negatives
    cost_image = (margin + scores - pos.unsqueeze(0)).clamp_min(0)  # caption query, image negatives
    same = _positives(image_ids) if image_ids is not None else torch.eye(len(scores), dtype=torch.bool, device=scores.device)
    cost_text, cost_image = cost_text.masked_fill(same, 0), cost_image.masked_fill(same, 0)
    if max_violation:
        return cost_text.max(1).values.sum() + cost_image.max(0).values.sum()
    return cost_text.sum() + cost_image.sum()


def open_clip_image_size(model: nn.Module) -> int | None:
    """Input side in pixels of an open_clip model's image tower (``None`` when it does not say)."""
    size = getattr(getattr(model, "visual", None), "image_size", None)
    return int(size[0] if isinstance(size, (tuple, list)) else size) if size is not None else None


def projection_parameters(model: nn.Module) -> list[str]:
    """Names of an open_clip model's output projections (image ``visual.proj``, text ``text_projection``)."""
    names = []
    for name, _ in model.named_parameters():
        if name in ("visual.proj", "text_projection", "text.text_projection") or name.startswith(
            ("visual.proj.", "visual.head.proj.", "text_projection.", "text.text_projection.", "text.proj.")
        ):
            names.append(name)
    return names


class RetrievalBase(VisionTask):
    """Image-text retrieval with an open_clip model: the model arguments, the loss and the recall metrics.

    Batches are ``{"image": (B, 3, H, W) in [0, 1], "caption": list[str], "image_id": (B,)}``
    (see :mod:`visionkit.data.datamodules.captions`). Captions are tokenised with the model's own
    open_clip tokenizer. Metrics: recall@1/5/10 in both directions (percent) and their sum
    ``rsum``, which picks the best checkpoint. A subclass implements :meth:`adapt` (what trains)
    and declares only its own arguments.

    Args:
        backbone: ``"open_clip:<arch>[/<tag>]"`` or ``"open_clip:<config.json>"``.
        pretrained: fetch the tag's weights (needs network); prefer ``checkpoint_path`` offline.
        checkpoint_path: local open_clip weights (``.safetensors`` / ``.pt``).
        asset: a shipped pretrained model (``"clip_shapes_tiny"``); replaces ``backbone`` and
            ``checkpoint_path`` with the asset's recipe and weights.
        image_size: input side in pixels (linked from the datamodule); must equal the model's.
        normalize_input: apply the model's image mean/std to the [0, 1] images (on for hub CLIPs).
        loss: ``"contrastive"`` (CLIP's InfoNCE with the model's temperature) or ``"triplet"``
            (VSE's hinge ranking loss).
        margin: triplet margin.
        mean_violation_epochs: triplet: epochs summing all violations before switching to the
            hardest negative (VSE∞ uses 1).
        **kwargs: optimisation arguments of :class:`VisionTask` (``lr``, ``weight_decay``, ...).
    """

    monitor = "val_rsum"
    mode = "max"

    def __init__(
        self,
        backbone: str = "open_clip:vk_clip_tiny",
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        asset: str | None = None,
        image_size: int | None = None,
        normalize_input: bool = False,
        loss: Literal["contrastive", "triplet"] = "contrastive",
        margin: float = 0.2,
        mean_violation_epochs: int = 1,
        **kwargs: Any,
    ) -> None:
        check_choice("loss", loss, ("contrastive", "triplet"))
        if asset and (checkpoint_path or pretrained):
            raise ValueError(f"{type(self).__name__}: give asset, checkpoint_path or pretrained=True, not several")
        if not asset and not backbone.startswith(OPEN_CLIP_PREFIX):
            raise BackboneError(f"backbone '{backbone}': retrieval needs an open_clip model, '{OPEN_CLIP_PREFIX}<arch>[/<tag>]'")
        super().__init__(**kwargs)

    # ---- model ----------------------------------------------------------------------------------
    def build_network(self) -> nn.Module:
        """The open_clip model from ``asset`` or ``backbone`` (+ weights)."""
        hp = self.hparams
        if hp.asset:
            return load_asset(hp.asset)
        return create_backbone(hp.backbone, pretrained=hp.pretrained, checkpoint_path=hp.checkpoint_path)

    @abstractmethod
    def adapt(self, clip: nn.Module) -> nn.Module:
        """Wrap the open_clip model for training (a tuner); the result is ``self.model``."""

    def configure_models(self) -> None:
        hp = self.hparams
        clip = self.build_network()
        size = open_clip_image_size(clip)
        if hp.image_size is not None and size is not None and size != hp.image_size:
            raise ValueError(f"image_size {hp.image_size} does not match the open_clip model's input size {size}; set the data's image_size to {size}")
        self.tokenizer = _tokenizer(clip, hp.asset or hp.backbone)
        self.normalize = input_normalization(clip) if hp.normalize_input else nn.Identity()
        self.model = self.adapt(clip)

    @property
    def clip(self) -> nn.Module:
        """The open_clip model (inside its tuner when frozen)."""
        return self.model.base_model if isinstance(self.model, BaseTuner) else self.model

    def tokenize(self, captions: list[str]) -> Tensor:
        """Token ids ``(B, L)`` on the task's device."""
        return self.tokenizer(list(captions)).to(self.device)

    def encode_image(self, images: Tensor) -> Tensor:
        """Unnormalised image embeddings ``(B, E)`` of [0, 1] images ``(B, 3, H, W)``."""
        return self.clip.encode_image(self.normalize(images))

    def encode_text(self, tokens: Tensor) -> Tensor:
        """Unnormalised caption embeddings ``(B, E)`` of token ids ``(B, L)``."""
        return self.clip.encode_text(tokens)

    def forward(self, images: Tensor, captions: list[str]) -> tuple[Tensor, Tensor]:
        """L2-normalised image and caption embeddings, each ``(B, E)``."""
        return F.normalize(self.encode_image(images), dim=-1), F.normalize(self.encode_text(self.tokenize(captions)), dim=-1)

    # ---- loss and metrics -----------------------------------------------------------------------------
    def configure_metrics(self) -> None:
        recalls = {f"{d}_r{k}": ImageTextRecall(k, d) for d in ("i2t", "t2i") for k in (1, 5, 10)}
        self.metrics = MetricCollection({"rsum": ImageTextRecall((1, 5, 10), "both"), **recalls})

    def compute_loss(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        hp = self.hparams
        image_emb, text_emb = self(batch["image"], batch["caption"])
        ids = batch["image_id"]
        if hp.loss == "triplet":
            hard = self.current_epoch >= hp.mean_violation_epochs
            loss = hinge_triplet_loss(image_emb, text_emb, hp.margin, hard, ids)
        else:
            scale = self.clip.logit_scale.exp().clamp(max=100.0)
            loss = clip_contrastive_loss(image_emb, text_emb, scale, ids)
        return {"loss": loss, "preds": torch.stack([image_emb, text_emb], dim=1), "target": ids}

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        image_emb, text_emb = self(batch["image"], batch["caption"])
        return {"image_emb": image_emb, "text_emb": text_emb, "image_id": batch["image_id"]}

    def visualize(self, batch: dict[str, Any], outputs: dict[str, Tensor] | None) -> dict[str, Tensor]:
        """Each image with the caption it retrieves from the batch (green: one of its own)."""
        if outputs and "preds" in outputs:
            image_emb, text_emb = outputs["preds"][:, 0], outputs["preds"][:, 1]
        else:
            with torch.no_grad():
                image_emb, text_emb = self(batch["image"], batch["caption"])
        best = (image_emb @ text_emb.T).argmax(1)
        ids = batch["image_id"]
        ok = ids[best] == ids
        captions = [batch["caption"][int(j)] for j in best]
        return {"image_to_text": annotate(batch["image"], captions, ok, min_size=224)}


class RetrievalTask(RetrievalBase):
    """Image-text retrieval baseline: the open_clip model zero-shot, projection-only or fully fine-tuned.

    Args:
        tune: ``"frozen"`` (zero-shot; evaluate with ``validate``/``test``), ``"projection"``
            (only the image and text output projections train) or ``"full"``.
        **kwargs: model, loss and optimisation arguments of :class:`RetrievalBase`.
    """

    def __init__(self, tune: Literal["frozen", "projection", "full"] = "projection", **kwargs: Any) -> None:
        check_choice("tune", tune, ("frozen", "projection", "full"))
        super().__init__(**kwargs)

    def adapt(self, clip: nn.Module) -> nn.Module:
        tune = self.hparams.tune
        if tune == "full":
            return clip
        trainable = projection_parameters(clip) if tune == "projection" else ()
        if tune == "projection" and not trainable:
            raise BackboneError(f"{type(clip).__name__} has no output projection to tune (tune='projection')")
        return BaseTuner(clip, trainable=trainable)


def _tokenizer(clip: nn.Module, name: str) -> Any:
    """The open_clip tokenizer of ``name`` with the model's context length."""
    import open_clip

    from visionkit.backbones.assets import asset_metadata
    from visionkit.backbones.factory import open_clip_arch

    spec = asset_metadata(name)["backbone"] if not name.startswith(OPEN_CLIP_PREFIX) else name
    arch = open_clip_arch(spec[len(OPEN_CLIP_PREFIX):])
    context = getattr(clip, "context_length", None) or getattr(getattr(clip, "text", None), "context_length", None)
    return open_clip.get_tokenizer(arch, context_length=context)
