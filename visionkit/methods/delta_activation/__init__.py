"""Delta Activation Layers (Yousefzadeh & Sifalakis, 2021): train CNNs whose activations change sparsely
between video frames.

``DeltaActivation`` is the layer (learnable per-channel step, official sign-flipped step gradient),
``insert_delta_activations`` / ``remove_delta_activations`` put it after every activation of a timm CNN
with fan-outs read off the network, ``delta_macs`` / ``check_delta_equivalence`` run a network frame by
frame on deltas, and ``DeltaActivationTask`` is the Lightning task.
"""

from visionkit.methods.delta_activation.delta_inference import (
    DeltaReport,
    check_delta_equivalence,
    delta_macs,
)
from visionkit.methods.delta_activation.insert import (
    ACTIVATIONS,
    WithDelta,
    delta_layers,
    fanouts,
    insert_delta_activations,
    remove_delta_activations,
)
from visionkit.methods.delta_activation.layers import DeltaActivation, quantize_official
from visionkit.methods.delta_activation.measure import spatial_density
from visionkit.methods.delta_activation.task import DeltaActivationTask

__all__ = [
    "ACTIVATIONS",
    "DeltaActivation",
    "DeltaActivationTask",
    "DeltaReport",
    "WithDelta",
    "check_delta_equivalence",
    "delta_layers",
    "delta_macs",
    "fanouts",
    "insert_delta_activations",
    "quantize_official",
    "remove_delta_activations",
    "spatial_density",
]
