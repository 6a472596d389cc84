"""Published methods, one folder each (``model.py`` pure torch, ``task.py`` the LightningModule, ``README.md``)."""
from visionkit.methods.delta_activation import DeltaActivationTask  # noqa: F401
from visionkit.methods.hst import HSTSegmentationTask, HSTTask  # noqa: F401
from visionkit.methods.layer_masking import LayerMaskingTask  # noqa: F401
from visionkit.methods.pg_noise_mask import NoiseMaskTask  # noqa: F401
from visionkit.methods.re2tal import Re2TALClassificationTask, Re2TALTask  # noqa: F401
from visionkit.methods.unipt import UniPTRetrievalTask, UniPTTask  # noqa: F401
