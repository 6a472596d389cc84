"""Re²TAL (Zhao et al., CVPR 2023): rewire pretrained residual backbones into reversible ones, in pure torch.

:func:`rewire` turns the residual stages of timm ViT/DeiT, Swin and ResNet models into
:class:`RewiredStage` s (``z_k = z_{k-2} + M_k(z_{k-1})``, same parameters and state-dict keys) whose
memory-saving backward (:class:`ReversibleFunction`) rebuilds activations from the stage output
instead of storing them; ``mode="vanilla"`` runs the same equations through plain autograd.
:class:`ReversibleSequence` is the same run over arbitrary residual branch modules.
"""

from visionkit.methods.re2tal.branches import SUPPORTED_BLOCKS, block_branches, is_supported_block
from visionkit.methods.re2tal.errors import RewireError
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

__all__ = [
    "MODES",
    "SUPPORTED_BLOCKS",
    "Branch",
    "ReversibleFunction",
    "ReversibleSequence",
    "RewireError",
    "RewiredStage",
    "block_branches",
    "is_supported_block",
    "reverse_streams",
    "rewire",
    "rewired_forward",
    "rewired_stages",
    "rewired_streams",
    "set_mode",
]
