"""Re²TAL (Zhao et al., CVPR 2023): rewire pretrained residual backbones into reversible ones, in pure torch.

:func:`rewire` turns the residual stages of timm ViT/DeiT, Swin and ResNet models into
:class:`RewiredStage` s (``z_k = z_{k-2} + M_k(z_{k-1})``, same parameters and state-dict keys) whose
memory-saving backward (:class:`ReversibleFunction`) rebuilds activations from the stage output
instead of storing them; ``mode="vanilla"`` runs the same equations through plain autograd.
:class:`ReversibleSequence` is the same run over arbitrary residual branch modules.

:class:`Re2TALTask` localizes actions with a rewired per-frame backbone and an ActionFormer-lite head
(:mod:`~visionkit.methods.re2tal.head`), trained end to end or on frozen features;
:class:`Re2TALClassificationTask` rewires and fine-tunes an image classifier.
"""

from visionkit.methods.re2tal.branches import SUPPORTED_BLOCKS, block_branches, is_supported_block
from visionkit.methods.re2tal.errors import RewireError, TALInputError
from visionkit.methods.re2tal.head import (
    LocalizationLoss,
    TemporalHead,
    TemporalTargets,
    assign_targets,
    decode_segments,
    diou_loss_1d,
    sigmoid_focal_loss,
)
from visionkit.methods.re2tal.model import Re2TALLocalizer, freeze_norms
from visionkit.methods.re2tal.reversible import (
    MODES,
    Branch,
    ReversibleFunction,
    ReversibleSequence,
    reverse_streams,
    rewired_forward,
    rewired_streams,
)
from visionkit.methods.re2tal.rewire import RewiredStage, rewire, rewired_stages, set_mode
from visionkit.methods.re2tal.task import Re2TALClassificationTask, Re2TALTask
from visionkit.methods.re2tal.timeline import timeline_images

__all__ = [
    "MODES",
    "SUPPORTED_BLOCKS",
    "Branch",
    "LocalizationLoss",
    "Re2TALClassificationTask",
    "Re2TALLocalizer",
    "Re2TALTask",
    "ReversibleFunction",
    "ReversibleSequence",
    "RewireError",
    "RewiredStage",
    "TALInputError",
    "TemporalHead",
    "TemporalTargets",
    "assign_targets",
    "block_branches",
    "decode_segments",
    "diou_loss_1d",
    "freeze_norms",
    "is_supported_block",
    "reverse_streams",
    "rewire",
    "rewired_forward",
    "rewired_stages",
    "rewired_streams",
    "set_mode",
    "sigmoid_focal_loss",
    "timeline_images",
]
