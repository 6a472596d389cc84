"""UniPT: Universal Parallel Tuning (Diao et al., CVPR 2024) for timm ViTs and open_clip towers.

``UniPT`` is the pure-torch side network; ``UniPTClassifier`` puts it on a frozen timm ViT and
``UniPTTower`` on one tower of a frozen open_clip model. ``UniPTTask`` (classification) and
``UniPTRetrievalTask`` (image-text retrieval) are the Lightning tasks. The hidden-state readers
(``vit_hidden_states``, ``open_clip_hidden_states``, ``HiddenStates``) are in :mod:`visionkit.backbones`.
"""

from visionkit.methods.unipt.model import (
    UniPT,
    UniPTClassifier,
    UniPTError,
    UniPTOutput,
    UniPTTower,
    interaction_weights,
    masked_mean,
)
from visionkit.methods.unipt.task import UniPTRetrievalTask, UniPTTask

__all__ = [
    "UniPT",
    "UniPTClassifier",
    "UniPTError",
    "UniPTOutput",
    "UniPTRetrievalTask",
    "UniPTTask",
    "UniPTTower",
    "interaction_weights",
    "masked_mean",
]
