"""Layer masking for CNNs (Balasubramanian & Feizi, ICCV 2023) and the LIME masking analysis.

``convert(model)`` makes a CNN layer-masked in place; ``model(x, keep_mask=m)`` then removes the
hidden pixels (``m == 0``) from the network's view instead of painting them. ``LayerMaskingTask``
trains or loads a classifier and evaluates it under masking protocols; ``lime_analysis`` compares
LIME explanations made with different fills (``lime`` is imported only there, lazily).
"""

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
from visionkit.methods.layer_masking.task import LayerMaskingTask

__all__ = [
    "LayerMaskedModel",
    "LayerMaskingError",
    "LayerMaskingTask",
    "MaskedMap",
    "UnsupportedLayerError",
    "convert",
    "is_layer_masked",
    "keep_masks",
    "neighbor_pad",
    "set_fill",
    "supported_types",
    "unsupported_modules",
    "use_fill",
]
