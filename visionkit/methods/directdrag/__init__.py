"""DirectDrag (Liao et al., 2025) and DragDiffusion drag editing on diffusers components: the pure parts.

Building blocks so far (spec ``shared/specs/directdrag.md``): ``DirectDragConfig`` (every
hyper-parameter, DXD script defaults, ``DirectDragConfig.dragdiffusion()`` preset); DDIM bookkeeping,
inversion and denoising on diffusers' ``DDIMScheduler`` (``make_scheduler``, ``inversion_plan``,
``inversion_step``, ``ddim_step``, ``ddim_invert``, ``ddim_denoise``); points and drag losses
(``xy_to_grid``/``grid_to_xy``, ``bilinear_patch``, ``motion_supervision_loss``, ``track_points``);
the auto soft mask (``soft_mask``, ``latent_mask``, ``mask_regulariser``; the official transposed
orientation behind ``transposed=True``); the latent warpage function (``latent_warpage``); feature
hooks (``capture_features``: F and φ from one UNet call); KV injection
(``MutualSelfAttentionProcessor``, ``kv_injection``); the readout head and RG loss (``ReadoutHead``,
``rg_loss``); per-image LoRA with PEFT (``add_lora``, ``train_lora``); VAE encode/decode (``encode_image``, ``decode_latents``). The editor and the Lightning
modules are not written yet (see README.md).
"""

from visionkit.methods.directdrag.config import DirectDragConfig
from visionkit.methods.directdrag.ddim import (
    SD_SCHEDULER_CONFIG,
    InversionPlan,
    ddim_denoise,
    ddim_invert,
    ddim_step,
    inversion_plan,
    inversion_step,
    make_scheduler,
)
from visionkit.methods.directdrag.errors import DirectDragError
from visionkit.methods.directdrag.features import (
    FeatureStore,
    capture_features,
    default_feature_idx,
    motion_features,
    readout_stack,
)
from visionkit.methods.directdrag.kv_injection import (
    MutualSelfAttentionProcessor,
    install_kv_injection,
    kv_injection,
    self_attention_names,
)
from visionkit.methods.directdrag.latents import decode_latents, encode_image, fit_max_side
from visionkit.methods.directdrag.lora import LORA_TARGETS, add_lora, lora_parameters, train_lora
from visionkit.methods.directdrag.mask import latent_mask, mask_regulariser, path_map, soft_mask
from visionkit.methods.directdrag.readout import BottleneckBlock, ReadoutHead, rg_loss
from visionkit.methods.directdrag.sampling import (
    bilinear_patch,
    grid_size,
    grid_to_xy,
    motion_supervision_loss,
    split_points,
    track_points,
    xy_to_grid,
)
from visionkit.methods.directdrag.warp import displacement_field, latent_warpage

__all__ = [
    "LORA_TARGETS",
    "SD_SCHEDULER_CONFIG",
    "BottleneckBlock",
    "DirectDragConfig",
    "DirectDragError",
    "FeatureStore",
    "InversionPlan",
    "MutualSelfAttentionProcessor",
    "ReadoutHead",
    "add_lora",
    "bilinear_patch",
    "capture_features",
    "ddim_denoise",
    "decode_latents",
    "ddim_invert",
    "ddim_step",
    "default_feature_idx",
    "displacement_field",
    "encode_image",
    "fit_max_side",
    "grid_size",
    "grid_to_xy",
    "install_kv_injection",
    "inversion_plan",
    "inversion_step",
    "kv_injection",
    "latent_mask",
    "latent_warpage",
    "lora_parameters",
    "make_scheduler",
    "mask_regulariser",
    "motion_features",
    "motion_supervision_loss",
    "path_map",
    "readout_stack",
    "rg_loss",
    "self_attention_names",
    "soft_mask",
    "split_points",
    "track_points",
    "train_lora",
    "xy_to_grid",
]
