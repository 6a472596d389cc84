"""``NoiseMaskTask``: stage 1 of policy-gradient noise masks, "heating" a timm classifier on images multiplied by
a learned noise mask (Yavuz & Yang, 2024). Stage 2 is the foundation's ``ClassificationTask`` with
``checkpoint_path`` at this task's ``.ckpt`` (its ``model.`` part is loaded, the policy left out)."""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from visionkit.backbones.factory import InputNormalize
from visionkit.core.params import ParameterCount, param_groups, parameter_report
from visionkit.errors import check_choice
from visionkit.methods.pg_noise_mask.masks import PGNoiseMaskError, cells_to_mask
from visionkit.methods.pg_noise_mask.model import ESTIMATORS, MaskDraw, NoiseMasker
from visionkit.tasks.classification import ClassifierBase
from visionkit.utils.viz import to_rgb

#: mask statistics of a draw (:class:`~visionkit.methods.pg_noise_mask.model.MaskDraw`), logged per stage.
STATS = ("alpha", "beta", "expected_m", "mask_mean", "mask_std")
#: seeds the validation/test prior masks: one generator per batch, so evaluation never moves the
#: global random stream that training samples from, and every epoch scores the same masks.
EVAL_SEED = 20240429


class NoiseMaskTask(ClassifierBase):
    """Heat a classifier with policy-gradient noise masks (Yavuz & Yang, 2024, arXiv 2406.14568).

    A policy (``policy_trunk`` + two MLP heads + an EMA prior) reads the clean normalised batch ``x``
    and gives Beta concentrations per cell of a ``grid x grid`` grid; one cell draw per image is
    upsampled (nearest) and blurred (``kernel_size``, ``sigma``) into a mask ``M`` ``(B, 1, S, S)``,
    and the classifier trains on ``x * M``. One loss, one backward, two optimisers per step
    (manual optimisation): ``estimator="faithful"`` is the official ``mean_b(LSE_j logp) * CE``
    (the classifier's gradient is plain CE's times ~``log(G^2)``), ``"reinforce"`` the corrected
    REINFORCE (joint log-likelihood, per-image CE, mean baseline; plain CE for the classifier),
    ``"random"`` the control arm (``Beta(1, 1)`` cells, no policy, CE times ``log(G^2)``).

    Validation and test: ``<stage>_acc`` and ``<stage>_loss`` on **clean** images (the checkpoint
    monitor), ``<stage>_noisy_acc`` on ``x * M`` with one mask drawn from the prior per batch (the
    official evaluation; the policy is not called and the prior is unchanged), and the prior mask's
    statistics. Training logs ``train_loss``, ``train_ce``, ``train_ce_scale``, the policy draws'
    ``train_alpha``, ``train_beta``, ``train_expected_m``, ``train_mask_mean``, ``train_mask_std``
    (per step as ``<name>_step``; the epoch values are synchronised across processes) and
    ``train_acc`` on the masked images. ``predict`` and ``forward`` are the clean classifier.

    Schedules (both per epoch, ``scheduler="cosine"``, the default): the classifier's learning rate
    falls by 10 every ``classifier_lr_step`` epochs (StepLR), the policy's follows a cosine from
    ``lr * policy_lr_scale`` to 0 over ``max_epochs`` (official); ``scheduler="none"`` keeps both
    constant. There is no warm-up (``warmup_epochs`` must be 0, its default here). ``trainer.global_step`` counts classifier steps (one
    per batch), as in a plain classifier run. A training batch of one image is skipped (the policy's
    BatchNorm1d heads need two; the official loader drops incomplete batches).

    The mask multiplies the *normalised* image, so pixels shrink towards the normalisation mean;
    ``normalize_input`` is therefore on by default here (the backbone's mean/std; give the stage-2
    ``ClassificationTask`` ``normalize_input: true`` as well, so it sees the same inputs). With it
    off the mask darkens ``[0, 1]`` pixels towards black, a different method.

    Args:
        grid: ``G``, mask cells per side (official 64 at 224 px).
        kernel_size: odd Gaussian blur width of the upsampled cells (official 13).
        sigma: Gaussian blur sigma (official 6).
        estimator: ``"faithful"`` (official loss), ``"reinforce"`` (corrected) or ``"random"`` (control).
        policy_trunk: timm name of the policy's feature trunk (official ``resnet10t`` for every classifier).
        policy_lr_scale: the policy's learning rate as a multiple of ``lr`` (official 0.1).
        classifier_lr_step: epochs between the classifier's tenfold learning-rate drops (official 30).
        normalize_input: see above (``ClassifierBase``'s argument, on by default here).
        **kwargs: backbone and optimisation arguments of :class:`~visionkit.tasks.ClassifierBase`;
            ``image_size`` (the mask's side ``S``, linked from the datamodule by the CLI) is required.

    Raises:
        PGNoiseMaskError: no ``image_size``, an even kernel, a grid larger than the image, an unknown
            estimator, a non-positive ``policy_lr_scale`` or ``classifier_lr_step``.
    """

    def __init__(
        self,
        grid: int = 16,
        kernel_size: int = 7,
        sigma: float = 3.0,
        estimator: Literal["faithful", "reinforce", "random"] = "faithful",
        policy_trunk: str = "resnet10t",
        policy_lr_scale: float = 0.1,
        classifier_lr_step: int = 30,
        normalize_input: bool = True,
        warmup_epochs: float = 0.0,
        **kwargs: Any,
    ) -> None:
        check_choice("estimator", estimator, ESTIMATORS, PGNoiseMaskError)
        image_size = kwargs.get("image_size")
        if image_size is None:
            raise PGNoiseMaskError(
                f"{type(self).__name__} needs image_size (the mask's side): give it, or let the CLI link it from the data"
            )
        if warmup_epochs or kwargs.get("warmup_start_factor") is not None:
            raise PGNoiseMaskError(
                f"{type(self).__name__} has no warm-up (the official per-epoch StepLR / cosine schedules start at the "
                f"full lr): warmup_epochs must be 0, got {warmup_epochs}"
            )
        if grid < 1:
            raise PGNoiseMaskError(f"grid must be a positive integer, got {grid}")
        cells_to_mask(torch.full((1, grid * grid), 0.5), image_size, kernel_size, sigma)  # geometry, before any network
        if not policy_lr_scale > 0:
            raise PGNoiseMaskError(f"policy_lr_scale must be positive, got {policy_lr_scale}")
        if classifier_lr_step < 1:
            raise PGNoiseMaskError(f"classifier_lr_step must be a positive number of epochs, got {classifier_lr_step}")
        if not normalize_input:
            warnings.warn(
                f"{type(self).__name__}(normalize_input=False): the mask multiplies [0, 1] pixels (towards black), "
                "not the normalised image (towards the normalisation mean) as the method does",
                stacklevel=2,
            )
        super().__init__(normalize_input=normalize_input, warmup_epochs=warmup_epochs, **kwargs)
        self._eval_batch = 0
        self.automatic_optimization = False  # one backward, two optimisers, two per-epoch schedules

    # ---- model -------------------------------------------------------------------------------------
    def adapt(self, net: nn.Module) -> nn.Module:
        return net

    def configure_models(self) -> None:
        super().configure_models()
        hp = self.hparams
        self.masker = NoiseMasker(
            grid=hp.grid, image_size=hp.image_size, kernel_size=hp.kernel_size, sigma=hp.sigma,
            estimator=hp.estimator, trunk=hp.policy_trunk, in_chans=hp.in_channels,
        )

    def configure_metrics(self) -> None:
        super().configure_metrics()
        noisy = MetricCollection({"noisy_acc": MulticlassAccuracy(self.hparams.num_classes, average="micro")})
        self.noisy_metrics = nn.ModuleDict({stage: noisy.clone(prefix=f"{stage}_") for stage in ("val", "test")})

    # ---- steps -------------------------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        """``train``: the arm's joint loss on masked images; ``val``/``test``: clean CE, plus ``noisy_preds``
        (the logits on ``x * M``, one prior mask for the batch) and the prior mask's statistics."""
        x, target = self.normalize(batch["image"]), batch["label"]
        smoothing = self.hparams.label_smoothing
        if stage == "train":
            draw = self.masker.draw(x)
            logits = self.model(draw.masked)
            ce_per_image = F.cross_entropy(logits, target, reduction="none", label_smoothing=smoothing)
            ce = ce_per_image.mean()
            loss, scale = self.masker.loss(ce, draw.log_probs, ce_per_image.detach())
            return {"loss": loss, "ce": ce.detach(), "ce_scale": scale, **_stats(draw), "preds": logits, "target": target}
        logits = self.model(x)
        loss = F.cross_entropy(logits, target, label_smoothing=smoothing)
        draw = self.masker.draw_prior(x, self._eval_generator(x.device))
        return {"loss": loss, **_stats(draw), "preds": logits, "target": target, "noisy_preds": self.model(draw.masked)}

    def _eval_generator(self, device: torch.device) -> torch.Generator:
        """The prior masks' generator of the current evaluation batch (seeded by batch index and rank)."""
        return torch.Generator(device=device).manual_seed(EVAL_SEED + 100_003 * self._eval_batch + self.global_rank)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        if len(batch["image"]) < 2 and self.masker.policy is not None:
            # the policy's BatchNorm1d heads need two images (the official loader drops incomplete last batches);
            # every process of a DDP run gets the same batch sizes, so they all skip this one together
            return None
        out = self.compute_loss(batch, "train")
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for opt in optimizers:
            opt.zero_grad()
        self.manual_backward(out["loss"])
        optimizers[0].step()
        for opt in optimizers[1:]:
            # the policy's step goes to the strategy directly (precision plugin and hooks alike), so that
            # trainer.global_step counts one step per batch, as in a plain classifier run
            self.trainer.strategy.optimizer_step(opt.optimizer, closure=lambda: None)
        self._log_train(out, len(batch["image"]))
        return out["loss"].detach()

    def _log_train(self, out: dict[str, Tensor], batch_size: int) -> None:
        for key in ("loss", "ce", "ce_scale", *STATS):
            value = out[key].detach().float()
            self.log(f"train_{key}_step", value, on_step=True, on_epoch=False, prog_bar=key == "loss", batch_size=batch_size)
            self.log(f"train_{key}", value, on_step=False, on_epoch=True, sync_dist=True, batch_size=batch_size)
        self.train_metrics.update(out["preds"].detach(), out["target"])
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=batch_size)

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str) -> dict[str, Tensor]:
        self._eval_batch = batch_idx
        out = self._shared_step(batch, stage)
        noisy = self.noisy_metrics[stage]
        noisy.update(out["noisy_preds"].detach(), out["target"])
        self.log_dict(noisy, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch["image"]))
        return out

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate(batch, batch_idx, "test")

    # ---- optimisation ------------------------------------------------------------------------------
    def parameter_report(self) -> ParameterCount:
        """Trainable and total parameters of the classifier and the policy together (stage 2 keeps the classifier's)."""
        return parameter_report(self)

    def optimizer_groups(self) -> list[dict]:
        """The classifier's parameter groups (decay / no decay); the policy's are :meth:`policy_groups`."""
        return param_groups(self.model, self.hparams.weight_decay)

    def policy_groups(self) -> list[dict]:
        """The policy's parameter groups at ``lr * policy_lr_scale`` (empty for the random arm)."""
        if self.masker.policy is None:
            return []
        lr = self.hparams.lr * self.hparams.policy_lr_scale
        return [{**g, "lr": lr} for g in param_groups(self.masker.policy, self.hparams.weight_decay)]

    def _optimizer(self, groups: list[dict], lr: float) -> torch.optim.Optimizer:
        hp = self.hparams
        if hp.optimizer == "sgd":  # the same rule as VisionTask's, so a plain ClassificationTask arm compares
            return torch.optim.SGD(groups, lr=lr, momentum=hp.momentum, nesterov=hp.momentum > 0)
        return torch.optim.AdamW(groups, lr=lr)

    def configure_optimizers(self) -> Any:
        """The classifier's optimiser first, then the policy's (none for ``"random"``), each with its
        per-epoch schedule (StepLR / cosine), stepped in :meth:`on_train_epoch_end`."""
        hp = self.hparams
        groups = self.optimizer_groups()
        if not groups:
            raise PGNoiseMaskError(f"{type(self).__name__} has no trainable classifier parameters to optimise")
        optimizers = [self._optimizer(groups, hp.lr)]
        policy = self.policy_groups()
        if policy:
            optimizers.append(self._optimizer(policy, hp.lr * hp.policy_lr_scale))
        if hp.scheduler == "none":
            return optimizers
        epochs = self._run_epochs()
        schedulers = [torch.optim.lr_scheduler.StepLR(optimizers[0], step_size=hp.classifier_lr_step, gamma=0.1)]
        schedulers += [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=0.0) for opt in optimizers[1:]]
        names = ("lr-classifier", "lr-policy")  # LearningRateMonitor's names
        return optimizers, [{"scheduler": s, "interval": "epoch", "name": n} for s, n in zip(schedulers, names, strict=False)]

    def _run_epochs(self) -> int:
        """The cosine's ``T_max``: ``max_epochs``, else the epochs ``max_steps`` makes (1 without a trainer)."""
        trainer = self._trainer
        if trainer is None:
            return 1
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            return int(trainer.max_epochs)
        if trainer.max_steps is not None and trainer.max_steps > 0:
            if trainer.train_dataloader is None:
                trainer.fit_loop.setup_data()
            per_epoch = trainer.num_training_batches
            if math.isfinite(per_epoch) and per_epoch > 0:
                return max(1, math.ceil(trainer.max_steps / per_epoch))
        raise PGNoiseMaskError(
            "the policy's cosine schedule needs a known number of epochs: set max_epochs, or max_steps with a sized "
            "training set (or scheduler='none')"
        )

    def on_train_epoch_end(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    # ---- panels ------------------------------------------------------------------------------------
    def denormalize(self, x: Tensor) -> Tensor:
        """Undo ``self.normalize`` (pixels back in ``[0, 1]`` units) for display."""
        if isinstance(self.normalize, InputNormalize):
            return x * self.normalize.std + self.normalize.mean
        return x

    def visualize(self, batch: dict[str, Any], outputs: dict[str, Tensor] | None) -> dict[str, Tensor]:
        """Clean predictions, and per image ``image | mask | masked`` (one policy draw in eval mode, seeded)."""
        panels = super().visualize(batch, outputs)
        x = self.normalize(batch["image"])
        training = self.masker.training
        self.masker.eval()  # no EMA update, BatchNorm running statistics, any batch size
        try:
            draw = self.masker.draw(x, torch.Generator(device=x.device).manual_seed(EVAL_SEED))
        finally:
            self.masker.train(training)
        tiles = [to_rgb(batch["image"]), to_rgb(draw.mask), to_rgb(self.denormalize(draw.masked))]
        scale = max(1, -(-96 // x.shape[-1]))  # at least 96 px per tile, as the prediction panels
        tiles = [F.interpolate(t, scale_factor=scale, mode="nearest") for t in tiles]
        gap = torch.ones(len(x), 3, tiles[0].shape[-2], 4)
        panels["noise_mask"] = torch.cat([tiles[0], gap, tiles[1], gap, tiles[2]], dim=-1)
        return panels

    def configure_callbacks(self) -> list:
        from visionkit.methods.pg_noise_mask.callbacks import PolicyChart

        return [PolicyChart()]


def _stats(draw: MaskDraw) -> dict[str, Tensor]:
    return {key: draw.stats[key].detach().float() for key in STATS}
