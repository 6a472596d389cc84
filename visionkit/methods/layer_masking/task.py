"""``LayerMaskingTask``: a classifier trained normally and evaluated under masking protocols."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn

from visionkit.backbones.factory import classifier_prefixes
from visionkit.methods.layer_masking.convert import convert
from visionkit.methods.layer_masking.layers import FILLS, neighbor_pad
from visionkit.methods.layer_masking.protocols import (
    MaskingProtocols,
    check_fills,
    paint,
    patch_orders,
    plot_leakage,
    plot_removal,
    removal_keep,
    write_csv,
)
from visionkit.tasks.classification import ClassifierBase
from visionkit.tuners import BaseTuner
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
        num_classes = self.hparams.num_classes
        self.protocols = MaskingProtocols(
            eval_fills if eval_fills is not None else DEFAULT_FILLS,
            removal_fractions if removal_fractions is not None else DEFAULT_FRACTIONS,
            num_classes, patch_size, removal_region, protocol_seed, blur_sigma, leakage_test,
        )
        self.protocol_results: dict[str, Any] = {}
        self.protocol_files: list[Path] = []
        self._protocols_on = False

    def build_network(self) -> nn.Module:
        """The backbone (asset, local weights or timm), converted to layer masking in place."""
        hp = self.hparams
        return convert(super().build_network(), fill=hp.fill, avgpool_renorm=hp.avgpool_renorm)

    def adapt(self, net: nn.Module) -> nn.Module:
        """The converted network, frozen but for its classifier when ``finetune="linear"``."""
        return BaseTuner(net, trainable=classifier_prefixes(net)) if self.hparams.finetune == "linear" else net

    @property
    def network(self) -> nn.Module:
        """The converted backbone (inside its tuner for ``finetune="linear"``)."""
        return self.model.base_model if isinstance(self.model, BaseTuner) else self.model

    def forward(self, images: Tensor, keep_mask: Tensor | None = None) -> Tensor:
        """Class logits ``(B, K)``; layer-masked when ``keep_mask`` ``(B, 1, H, W)`` (1 = visible) is given."""
        if keep_mask is None:
            return self.model(self.normalize(images))
        return self.model(self.normalize(images), keep_mask=keep_mask)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Class probabilities; layer-masked when the batch carries a ``keep_mask``."""
        return self(batch["image"], batch.get("keep_mask")).softmax(-1)

    # ---- protocols ------------------------------------------------------------------------
    def _masked_model(self) -> nn.Module:
        """``(normalised images, keep_mask) -> logits``: the converted network (a tuner only freezes it)."""
        return self.network

    def _start(self, stage: str) -> None:
        trainer = self.trainer
        fitting = trainer.state.fn == "fit"
        self._protocols_on = not trainer.sanity_checking and (stage == "test" or not fitting or self.hparams.eval_during_fit)
        if self._protocols_on:
            self.protocols.reset()

    def on_validation_epoch_start(self) -> None:
        """Reset the protocol counters when this validation loop runs them."""
        self._start("val")

    def on_test_epoch_start(self) -> None:
        """Reset the protocol counters."""
        self._start("test")

    def _run(self, batch: dict[str, Any], batch_idx: int) -> None:
        if self._protocols_on:
            self.protocols.update(self._masked_model(), batch["image"], batch["label"], batch.get("mask"), batch_idx,
                                  normalize=self.normalize)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Loss and accuracy as usual, then the masking protocols on the batch."""
        out = super().validation_step(batch, batch_idx)
        self._run(batch, batch_idx)
        return out

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Loss and accuracy as usual, then the masking protocols on the batch."""
        out = super().test_step(batch, batch_idx)
        self._run(batch, batch_idx)
        return out

    def _finish(self, stage: str) -> None:
        if not self._protocols_on:
            return
        self._protocols_on = False
        for buf in self.protocols.buffers():
            buf.copy_(self.trainer.strategy.reduce(buf, reduce_op="sum"))
        results = self.protocols.compute()
        self.protocol_results[stage] = results
        for row in results["removal"]:
            pct = round(100 * row["fraction"])
            self.log(f"{stage}_acc_{row['fill']}_{pct:02d}", row["accuracy"], sync_dist=False)
            self.log(f"{stage}_entropy_{row['fill']}_{pct:02d}", row["entropy"], sync_dist=False)
        for row in results["leakage"]:
            self.log(f"{stage}_leak_{row['fill']}", row["leak"], sync_dist=False)
        self._write(stage, results)

    @rank_zero_only
    def _write(self, stage: str, results: dict[str, Any]) -> None:
        trainer = self.trainer
        if not trainer.loggers or trainer.log_dir is None:
            return
        folder = Path(trainer.log_dir) / "layer_masking"
        stem = f"{stage}_epoch{trainer.current_epoch:03d}"
        region = results["region"]
        rows = [{"stage": stage, "epoch": trainer.current_epoch, "region": region, **r} for r in results["removal"]]
        self.protocol_files = [
            write_csv(rows, folder / f"{stem}_removal.csv"),
            plot_removal(results["removal"], folder / f"{stem}_removal.png",
                         f"{stage}: random {self.hparams.patch_size}px cells removed ({region} region)"),
        ]
        if results["leakage"]:
            rows = [{"stage": stage, "epoch": trainer.current_epoch, **r} for r in results["leakage"]]
            self.protocol_files += [
                write_csv(rows, folder / f"{stem}_leakage.csv"),
                plot_leakage(results["leakage"], folder / f"{stem}_leakage.png", f"{stage}: mask-shape leakage"),
            ]

    def on_validation_epoch_end(self) -> None:
        """Sum the counters across ranks, log the curves, write CSV and PNG."""
        self._finish("val")

    def on_test_epoch_end(self) -> None:
        """Sum the counters across ranks, log the curves, write CSV and PNG."""
        self._finish("test")

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
        first = next((m for m in self.network.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)), None)
        rings = max(first.dilation[0] * (first.kernel_size[0] - 1), 1) if first is not None else 2
        seen = neighbor_pad(images, keep, rings).clamp(0, 1)
        reached = F.max_pool2d(keep, 2 * rings + 1, 1, rings) > 0  # pixels the first conv sees or fills
        yy, xx = torch.meshgrid(torch.arange(h, device=images.device), torch.arange(w, device=images.device), indexing="ij")
        checker = (0.55 + 0.3 * ((yy // 2 + xx // 2) % 2)).to(images.dtype).expand_as(seen)
        seen = torch.where(reached, seen, checker)  # never seen: a checkerboard, not a colour
        pred = self(batch["image"], keep).argmax(-1)
        ok = pred == batch["label"] if "label" in batch else torch.ones_like(pred, dtype=torch.bool)
        names = self._class_names()
        captions = [f"LM: {names[int(p)] if names else int(p)}" for p in pred]
        panels["removal40_grey"] = annotate(paint(images, keep, "grey"), ["grey fill"] * b)
        panels["removal40_layer_view"] = annotate(seen, captions, ok)
        return panels
