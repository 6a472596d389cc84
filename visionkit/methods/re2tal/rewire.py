"""Re²TAL rewiring (Zhao et al., CVPR 2023) of pretrained timm backbones into reversible ones.

A stage of a pretrained network is ``N`` residual modules with equal input and output shapes,
``z_k = z_{k-1} + M_k(z_{k-1})``, ``z_0 = x``. Rewiring moves every skip connection one module
further back, keeping every parameter::

    z_{-1} = z_0 = x                        (the stage input duplicated, not split)
    z_k = z_{k-2} + M_k(z_{k-1}),  k = 1..N
    stage output = (z_{N-1} + z_N) / 2
    inverse: z_{k-2} = z_k - M_k(z_{k-1}), so (z_N, z_{N-1}) determines every earlier stream

Rewiring does not preserve the function (to first order in the branch size the output is
``x + 1/2 sum_k M_k(x)`` instead of ``x + sum_k M_k(x)``): fine-tune after rewiring.

:func:`rewire` replaces, **in place**, every ``nn.Sequential`` of supported timm blocks (see
:mod:`~visionkit.methods.re2tal.branches`: ViT/DeiT ``blocks``, Swin ``layers.i.blocks``, ResNet
``layer1..4``) by a :class:`RewiredStage` that holds the same block objects under the same names,
so parameters and state-dict keys are unchanged, and returns the model. Each Swin/ViT block gives
two branches (attention, MLP). A ResNet block with a projection shortcut (the downsampling first
block of a stage) runs unchanged outside the reversible run, and the streams are duplicated again
after it; the identity-shortcut blocks after it form the run. Stems, patch embedding, patch
merging, final norms and heads are untouched. The memory-saving backward and its guarantees (RNG
replay, BatchNorm, autocast, inputs without grad) are in :mod:`~visionkit.methods.re2tal.reversible`.

Differences from the official code (OpenTAD ``re2tal_swin.py`` / ``re2tal_slowfast.py``):

* **Drop-path seeding.** OpenTAD's Re²Swin draws one seed per block at construction and calls
  ``torch.manual_seed(seed)`` before every drop-path, in the forward and in the recompute: the
  drop-path masks repeat at every step (for a given batch size) and the global RNG is reset at
  each call. visionkit records the generator states before each branch in the forward and replays
  them in the recompute inside ``fork_rng``: new masks at every step, and the global RNG stream
  after a step is exactly what vanilla mode (plain autograd) leaves.
* **Gradients.** OpenTAD (like minREV and PySlowFast) accumulates parameter gradients through
  nested ``backward()`` calls and returns only the input gradient, so with a stage input that does
  not require grad (a frozen stem) the backward never runs. visionkit passes the trainable branch
  parameters to the autograd Function and returns their gradients.
* **Norms.** OpenTAD keeps every norm in eval mode and frozen during TAL training. visionkit also
  supports train-mode BatchNorm: one running-statistics update per step (in the forward); the
  recompute uses batch statistics without updating.
* **ResNet first blocks.** OpenTAD moves the post-add ReLU into the branch in every block,
  including the non-reversible first block (``relu(F(x)) + proj(x)``), and always keeps block 0
  outside. visionkit keeps every projection-shortcut block exactly as pretrained
  (``act(F(x) + proj(x))``), moves the activation into the branch only in identity-shortcut blocks
  (``z + act(F(z))``, as OpenTAD), and makes any identity-shortcut block reversible, so a stage whose
  first block has an identity shortcut (ResNet-18/34 ``layer1``) is reversible from its input.
* **Keys.** OpenTAD renames keys (``layerX.Y.*`` -> ``layerX.blocks.Y.inv_block.Fm.*``) and converts
  checkpoints; here the state dict is unchanged and original checkpoints load as they are.
* Not ported: the two-CUDA-stream backward (``stream_backprop``).

Limits: a rewired stage runs as a whole. Calling one of its blocks (``stage[i](x)``) runs the
original, non-rewired block; iterating or slicing a stage (per-block loops such as timm's
``forward_intermediates``, ``attn_mask`` paths or gradient checkpointing) raises :class:`RewireError`.
Forward hooks on blocks are not called by the run (the branch views call the blocks' sub-modules).
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor, nn

from visionkit.methods.re2tal.branches import block_branches, is_supported_block
from visionkit.methods.re2tal.errors import RewireError
from visionkit.methods.re2tal.reversible import Branch, ReversibleSequence, check_mode, rewired_forward

__all__ = ["RewiredStage", "rewire", "rewired_stages", "set_mode"]


class RewiredStage(nn.Module):
    """A residual stage after rewiring: the original blocks as children under their original names.

    ``forward(x)``: the blocks' input (``(B, N, D)`` tokens, ``(B, H, W, C)`` Swin maps or
    ``(B, C, H, W)`` ResNet maps) to the stage output of the same layout. Consecutive reversible
    blocks form one run (input duplicated, output the mean of the last two streams); a
    non-reversible block runs as it is between runs.
    """

    def __init__(self, blocks: nn.Sequential, mode: str = "reversible", name: str = "") -> None:
        super().__init__()
        for child_name, block in blocks.named_children():
            if not is_supported_block(block):
                raise RewireError(f"'{name}.{child_name}' is a {type(block).__name__}, not a supported residual block")
            self.add_module(child_name, block)
        self.mode = check_mode(mode)
        self.stage_name = name

    def runs(self) -> list[nn.Module | list[Branch]]:
        """The stage in order: a non-reversible block, or the branches of one reversible run."""
        out: list[nn.Module | list[Branch]] = []
        for child_name, block in self.named_children():
            branches = block_branches(block, f"{self.stage_name}.{child_name}" if self.stage_name else child_name)
            if branches is None:
                out.append(block)
            elif out and isinstance(out[-1], list):
                out[-1].extend(branches)
            else:
                out.append(list(branches))
        return out

    def forward(self, x: Tensor) -> Tensor:
        mode = check_mode(self.mode)
        for part in self.runs():
            x = rewired_forward(x, part, mode) if isinstance(part, list) else part(x)
        return x

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> nn.Module:
        if not isinstance(index, int):
            raise RewireError(self._per_block_message("sliced"))
        return list(self._modules.values())[index]  # type: ignore[return-value]

    def __iter__(self) -> Iterator[nn.Module]:
        raise RewireError(self._per_block_message("iterated"))

    def _per_block_message(self, verb: str) -> str:
        return (f"rewired stage '{self.stage_name}' cannot be {verb} block by block (per-block loops, attn_mask "
                "paths, gradient checkpointing): it runs as one reversible whole; call the stage itself")

    def extra_repr(self) -> str:
        return f"mode='{self.mode}'"


def _is_stage(module: nn.Module) -> bool:
    if not isinstance(module, nn.Sequential) or len(module) == 0:
        return False
    children = list(module.children())
    return all(is_supported_block(c) for c in children) and any(
        block_branches(c, "") is not None for c in children)


def rewired_stages(model: nn.Module) -> dict[str, nn.Module]:
    """Qualified name -> :class:`RewiredStage` / :class:`ReversibleSequence` in ``model`` (``""``: the model)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, RewiredStage | ReversibleSequence)}


def set_mode(model: nn.Module, mode: str) -> nn.Module:
    """Switch every rewired stage of ``model`` to ``mode`` (``"reversible"`` or ``"vanilla"``); returns ``model``."""
    check_mode(mode)
    for stage in rewired_stages(model).values():
        stage.mode = mode
    return model


def rewire(model: nn.Module, mode: str = "reversible") -> nn.Module:
    """Rewire the residual stages of a timm ViT/DeiT, Swin or ResNet into reversible ones, in place.

    Args:
        model: the pretrained model. Every ``nn.Sequential`` whose children are all supported blocks
            (:data:`~visionkit.methods.re2tal.branches.SUPPORTED_BLOCKS`) with at least one
            reversible block becomes a :class:`RewiredStage`; stages already rewired get ``mode``.
        mode: ``"reversible"`` (memory-saving backward) or ``"vanilla"`` (plain autograd, for checks).

    Returns:
        ``model`` itself, rewired (when ``model`` is itself such an ``nn.Sequential``, a new
        :class:`RewiredStage` holding its blocks). ``model.load_state_dict`` of the original weights
        reports no missing or unexpected keys.

    Raises:
        RewireError: an unknown mode, gradient checkpointing switched on, or no stage to rewire.
    """
    check_mode(mode)
    for name, module in model.named_modules():
        if getattr(module, "grad_checkpointing", False) is True:
            where = f"'{name}'" if name else type(model).__name__
            raise RewireError(f"{where} has gradient checkpointing on; reversible stages replace it: call "
                              "set_grad_checkpointing(False) before rewire")
    stages = [name for name, m in model.named_modules() if _is_stage(m)]
    if not stages and not rewired_stages(model):
        raise RewireError(
            f"{type(model).__name__} has no residual stage to rewire: expected an nn.Sequential of timm ViT "
            "Block / ResPostBlock, SwinTransformerBlock or ResNet BasicBlock / Bottleneck with at least one "
            "identity-shortcut block")
    if "" in stages:
        return RewiredStage(model, mode)  # type: ignore[arg-type]
    for name in stages:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, RewiredStage(getattr(parent, child), mode, name))
    return set_mode(model, mode)
