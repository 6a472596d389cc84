"""Layer masking for CNNs (Balasubramanian & Feizi, ICCV 2023) and the LIME masking analysis.

``convert(model)`` makes a CNN layer-masked in place; ``model(x, keep_mask=m)`` then removes the
hidden pixels (``m == 0``) from the network's view instead of painting them. ``model`` builds the
layer-masked classifier (pure torch); ``LayerMaskingTask`` trains or loads it, and its
``MaskingProtocolEvaluator`` callback evaluates it under masking protocols; ``lime_analysis`` and
``lime_run`` compare LIME explanations made with different fills (``lime`` is imported lazily).
"""

from visionkit.methods.layer_masking.callbacks import MaskingProtocolEvaluator
from visionkit.methods.layer_masking.convert import (
    LayerMaskedModel,
    UnsupportedLayerError,
    convert,
    is_layer_masked,
    keep_masks,
    set_fill,
    supported_types,
    unsupported_modules,
    use_fill,
)
from visionkit.methods.layer_masking.layers import LayerMaskingError, MaskedMap, neighbor_pad
from visionkit.methods.layer_masking.model import layer_masked_classifier
from visionkit.methods.layer_masking.task import LayerMaskingTask

__all__ = [
    "LayerMaskedModel",
    "LayerMaskingError",
    "LayerMaskingTask",
    "MaskedMap",
    "MaskingProtocolEvaluator",
    "UnsupportedLayerError",
    "convert",
    "is_layer_masked",
    "keep_masks",
    "layer_masked_classifier",
    "neighbor_pad",
    "set_fill",
    "supported_types",
    "unsupported_modules",
    "use_fill",
]
