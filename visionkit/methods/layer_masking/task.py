"""``LayerMaskingTask``: a classifier trained normally and evaluated under masking protocols."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Callback
from torch import Tensor, nn

from visionkit.core.task import prediction_dict
from visionkit.methods.layer_masking.callbacks import MaskingProtocolEvaluator
from visionkit.methods.layer_masking.layers import FILLS
from visionkit.methods.layer_masking.model import (
    first_layer_view,
    head_only,
    layer_masked_classifier,
    masked_network,
)
from visionkit.methods.layer_masking.protocols import check_fills, paint, patch_orders, removal_keep
from visionkit.tasks.classification import ClassifierBase
from visionkit.utils.viz import annotate

DEFAULT_FILLS = ("layer", "grey", "black", "mean", "blur")
DEFAULT_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


class LayerMaskingTask(ClassifierBase):
    """Train (or load) a CNN classifier normally; evaluate it under masking during validate/test.

    The backbone is converted with :func:`~visionkit.methods.layer_masking.convert`, so
    ``forward(images, keep_mask=None)`` is the plain classifier without a mask and the
    layer-masked one with it. Training is ordinary cross-entropy on unmasked images.

    During ``validate`` and ``test`` (and during fit when ``eval_during_fit``), every batch is
    also run through the masking protocols, each fill seeing the same keep masks:

    * removal curves: accuracy and class entropy against the fraction of random
      ``patch_size`` cells removed, per fill;
    * the mask-shape leakage test (batches with object masks): accuracy on clean-correct
      images with the object hidden by its exact-shape hole vs its bounding box.

    At the end of the loop the curves are logged (``<stage>_acc_<fill>_<pct>``,
    ``<stage>_entropy_<fill>_<pct>``, ``<stage>_leak_<fill>``) and written to
    ``<log_dir>/layer_masking/<stage>_epochNNN_{removal,leakage}.{csv,png}``.

    Args:
        fill: how masked convolutions fill hidden inputs: ``neighbor`` (paper default), ``zero``, ``partial``.
        avgpool_renorm: renormalise AvgPool2d windows by their visible share (deviation from the paper).
        eval_fills: fills compared by the protocols: ``layer`` (layer masking with ``fill``),
            ``layer_zero``, ``layer_partial``, ``grey`` (ImageNet mean), ``black``, ``mean``
            (image mean colour), ``blur``.
        removal_fractions: removed fractions of the eligible cells, in [0, 1].
        patch_size: removal cell side in pixels.
        removal_region: ``auto`` (cells not touching the object when masks exist, else any cell), ``any``, ``background``.
        blur_sigma: Gaussian sigma in pixels of the ``blur`` fill.
        leakage_test: run the mask-shape leakage test.
        protocol_seed: seed of the random removal orders.
        eval_during_fit: also run the protocols in fit's validation loops (slower).
        finetune: ``full`` or ``linear`` (LoRA layers have no mask rule).
        **kwargs: backbone and optimisation arguments of :class:`~visionkit.tasks.ClassifierBase`.
    """

    def __init__(
        self,
        finetune: Literal["full", "linear"] = "full",
        fill: Literal["neighbor", "zero", "partial"] = "neighbor",
        avgpool_renorm: bool = False,
        eval_fills: list[str] | None = None,
        removal_fractions: list[float] | None = None,
        patch_size: int = 4,
        removal_region: Literal["auto", "any", "background"] = "auto",
        blur_sigma: float = 2.0,
        leakage_test: bool = True,
        protocol_seed: int = 0,
        eval_during_fit: bool = False,
        **kwargs: Any,
    ) -> None:
        if finetune not in ("full", "linear"):
            raise ValueError(f"LayerMaskingTask: finetune must be 'full' or 'linear' (LoRA layers have no mask rule), got '{finetune}'")
        if fill not in FILLS:
            raise ValueError(f"LayerMaskingTask: fill must be one of {FILLS}, got '{fill}'")
        check_fills(eval_fills if eval_fills is not None else DEFAULT_FILLS)
        super().__init__(**kwargs)
        self.evaluator = MaskingProtocolEvaluator(
            eval_fills if eval_fills is not None else DEFAULT_FILLS,
            removal_fractions if removal_fractions is not None else DEFAULT_FRACTIONS,
            self.hparams.num_classes, patch_size, removal_region, protocol_seed, blur_sigma, leakage_test,
            during_fit=eval_during_fit,
        )

    def build_network(self) -> nn.Module:
        """The backbone (asset, local weights or timm), converted to layer masking in place."""
        hp = self.hparams
        return layer_masked_classifier(super().build_network(), fill=hp.fill, avgpool_renorm=hp.avgpool_renorm)

    def adapt(self, net: nn.Module) -> nn.Module:
        """The converted network, frozen but for its classifier when ``finetune="linear"``."""
        return head_only(net) if self.hparams.finetune == "linear" else net

    @property
    def network(self) -> nn.Module:
        """The converted backbone (inside its tuner for ``finetune="linear"``)."""
        return masked_network(self.model)

    def forward(self, images: Tensor, keep_mask: Tensor | None = None) -> Tensor:
        """Class logits ``(B, K)``; layer-masked when ``keep_mask`` ``(B, 1, H, W)`` (1 = visible) is given."""
        if keep_mask is None:
            return self.model(self.normalize(images))
        return self.model(self.normalize(images), keep_mask=keep_mask)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """``{"probs", "index", "path"}`` as :meth:`VisionTask.predict_step`; layer-masked when the batch
        carries a ``keep_mask``."""
        return prediction_dict(batch, self(batch["image"], batch.get("keep_mask")).float().softmax(-1))

    # ---- protocols (run by the evaluator callback) ----------------------------------------
    def masked_model(self) -> nn.Module:
        """``(normalised images, keep_mask) -> logits``: the converted network (a tuner only freezes it)."""
        return self.network

    def configure_callbacks(self) -> list[Callback]:
        """The masking-protocol evaluator (one instance per task, so its results outlive each run)."""
        return [self.evaluator]

    @property
    def protocol_results(self) -> dict[str, Any]:
        """``{stage: results}`` of the evaluator's last validation / test loop."""
        return self.evaluator.results

    @property
    def protocol_files(self) -> list[Path]:
        """CSV/PNG files written by the evaluator's last loop."""
        return self.evaluator.files

    # ---- panels ---------------------------------------------------------------------------
    def visualize(self, batch: dict[str, Any], outputs: dict[str, Tensor] | None) -> dict[str, Tensor]:
        """Prediction panel, plus one random 40 %-removal mask shown grey-filled and as the first
        masked convolution sees it (neighbour padding; out-of-reach pixels as a checkerboard),
        with the layer-masked prediction."""
        panels = super().visualize(batch, outputs)
        images = batch["image"][:, :3]
        b, _, h, w = images.shape
        gen = torch.Generator().manual_seed(self.hparams.protocol_seed)
        rank, eligible = patch_orders(b, h, w, self.hparams.patch_size, gen)
        keep = removal_keep(rank.to(images.device), eligible.to(images.device), 0.4, h, w, self.hparams.patch_size)
        seen = first_layer_view(self.network, images, keep)
        pred = self(batch["image"], keep).argmax(-1)
        ok = pred == batch["label"] if "label" in batch else torch.ones_like(pred, dtype=torch.bool)
        names = self._class_names()
        captions = [f"LM: {names[int(p)] if names else int(p)}" for p in pred]
        panels["removal40_grey"] = annotate(paint(images, keep, "grey"), ["grey fill"] * b)
        panels["removal40_layer_view"] = annotate(seen, captions, ok)
        return panels
