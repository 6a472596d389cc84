"""``DeltaActivationTask``: fine-tune a per-frame timm CNN with Delta Activation Layers after its activations,
trading accuracy for temporally sparse activations (clip prediction = mean of the per-frame softmax)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from visionkit.methods.delta_activation.insert import delta_layers, insert_delta_activations
from visionkit.metrics.sparsity import ActivationDensity
from visionkit.tasks import ClassifierBase
from visionkit.tasks.video_classification import check_clips, clip_log_probs, frame_strips
from visionkit.utils.viz import annotate

STAGES = ("train", "val", "test")


class DeltaActivationTask(ClassifierBase):
    """Clip classification with Delta Activation Layers (Yousefzadeh & Sifalakis, 2021).

    The network (``backbone``/``asset``/``checkpoint_path``: start from a trained plain model) gets a
    :class:`~visionkit.methods.delta_activation.layers.DeltaActivation` after every activation, with
    fan-outs read off the network. The loss is the cross-entropy of the clip prediction plus
    ``sparsity_weight * sum_l fanout_l * mean|y_t - y_{t+1}|`` over the layers. Logged per stage:
    accuracy, ``density`` (nonzero deltas / deltas over all layers, first frame excluded), ``mac_density``
    (fan-out weighted) and ``density/<layer>``; per epoch also the mean step ``theta/<layer>``.

    Args:
        sparsity_weight: weight of the delta penalty (the official ``sp_rate``; 1e-4 to 1e-6 on UCF101).
        threshold_init: initial quantisation step of every layer, in the activation's units.
        official_gradient: the official sign-flipped step gradient (``False``: plain straight-through autograd).
        step_lr_scale: learning rate of the steps ``theta`` as a multiple of ``lr`` (no weight decay). A step's
            gradient sums over every position of its channel, so under the official SGD it moves much faster
            than a weight; AdamW normalises that away, and ``theta`` barely grows unless its rate is raised.
        **kwargs: backbone and optimisation arguments of :class:`~visionkit.tasks.ClassifierBase`.
    """

    def __init__(
        self,
        sparsity_weight: float = 1e-4,
        threshold_init: float = 0.25,
        official_gradient: bool = True,
        step_lr_scale: float = 30.0,
        **kwargs: Any,
    ) -> None:
        if sparsity_weight < 0:
            raise ValueError(f"sparsity_weight must be >= 0, got {sparsity_weight}")
        if not step_lr_scale > 0:
            raise ValueError(f"step_lr_scale must be positive, got {step_lr_scale}")
        super().__init__(**kwargs)

    def adapt(self, net: nn.Module) -> nn.Module:
        hp = self.hparams
        size = hp.image_size or 32
        example = torch.zeros(1, hp.in_channels, size, size)
        insert_delta_activations(net, example, threshold_init=hp.threshold_init, official_gradient=hp.official_gradient)
        return net

    def optimizer_groups(self) -> list[dict]:
        """The base groups without the steps, plus one group of all steps at ``lr * step_lr_scale``, no decay."""
        steps = [layer.theta for layer in self.layers().values() if layer.theta.requires_grad]
        ids = {id(p) for p in steps}
        groups = [{**g, "params": [p for p in g["params"] if id(p) not in ids]} for g in super().optimizer_groups()]
        groups = [g for g in groups if g["params"]]
        if steps:
            groups.append({"params": steps, "weight_decay": 0.0, "lr": self.hparams.lr * self.hparams.step_lr_scale})
        return groups

    def configure_metrics(self) -> None:
        self.metrics = MetricCollection({"acc": MulticlassAccuracy(self.hparams.num_classes, average="micro")})
        layers = delta_layers(self.model)
        fanouts = [layer.fanout for layer in layers.values()]
        self.density = nn.ModuleDict(
            {f"{stage}_density": ActivationDensity(list(layers), fanouts) for stage in STAGES}
        )

    def layers(self) -> dict[str, nn.Module]:
        """The Delta Activation Layers by module name, in forward order."""
        return delta_layers(self.model)

    def forward(self, video: Tensor) -> Tensor:
        """Clip log-probabilities ``(B, num_classes)`` for clips ``(B, T, C, H, W)`` in [0, 1]."""
        check_clips(video)
        for layer in self.layers().values():
            layer.num_frames = video.shape[1]
        return clip_log_probs(self.model(self.normalize(video.flatten(0, 1))), video.shape[1])

    def compute_loss(self, batch: dict[str, Any], stage: str) -> dict[str, Tensor]:
        log_probs = self(batch["video"])
        task_loss = torch.nn.functional.cross_entropy(log_probs, batch["label"], label_smoothing=self.hparams.label_smoothing)
        layers = self.layers()
        sparsity = torch.stack([layer.last_loss for layer in layers.values()]).sum()
        self.density[f"{stage}_density"].update({name: (layer.last_nnz, layer.last_numel) for name, layer in layers.items()})
        loss = task_loss + self.hparams.sparsity_weight * sparsity
        return {"loss": loss, "task_loss": task_loss.detach(), "sparsity_loss": sparsity.detach(),
                "preds": log_probs, "target": batch["label"]}

    def _log_density(self, stage: str) -> None:
        values = self.density[f"{stage}_density"].compute()
        self.log_dict({f"{stage}_{k}": v for k, v in values.items()}, prog_bar=False)
        self.density[f"{stage}_density"].reset()

    def on_train_epoch_end(self) -> None:
        self._log_density("train")
        self.log_dict({f"theta/{name}": layer.step().detach().mean() for name, layer in self.layers().items()})

    def on_validation_epoch_end(self) -> None:
        self._log_density("val")

    def on_test_epoch_end(self) -> None:
        self._log_density("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        from visionkit.core.task import prediction_dict

        return prediction_dict(batch, self(batch["video"]).exp())

    def visualize(self, batch: dict[str, Any], outputs: dict[str, Tensor] | None) -> dict[str, Tensor]:
        log_probs = outputs["preds"] if outputs and "preds" in outputs else self(batch["video"])
        pred = log_probs.argmax(-1)
        names = self._class_names()
        captions = [names[int(p)] if names else f"class {int(p)}" for p in pred]
        return {"predictions": annotate(frame_strips(batch["video"]), captions, pred == batch["label"])}

    def configure_callbacks(self) -> list:
        from visionkit.methods.delta_activation.callbacks import DensityChart

        return [DensityChart()]
