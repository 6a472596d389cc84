"""The residual branches of timm blocks, as :class:`~visionkit.methods.re2tal.reversible.Branch` views.

A view calls the block's own sub-modules (looked up at call time), so it holds no parameters of its
own and the block keeps its state-dict keys. Per block type (exact type, not subclasses, whose
``forward`` may differ):

* ViT/DeiT ``Block`` (pre-norm), two branches:
  ``drop_path1(ls1(attn(norm1(z))))`` and ``drop_path2(ls2(mlp(norm2(z))))``, tokens ``(B, N, D)``.
* ViT ``ResPostBlock`` (post-norm), two branches:
  ``drop_path1(norm1(attn(z)))`` and ``drop_path2(norm2(mlp(z)))``.
* Swin ``SwinTransformerBlock``, two branches on ``(B, H, W, C)``:
  ``drop_path1(_attn(norm1(z)))`` (padding, cyclic shift, windows and the shift mask of the block,
  the same in the recompute) and ``drop_path2(mlp(norm2(z)))``.
* ResNet ``BasicBlock`` / ``Bottleneck`` with an identity shortcut (``downsample is None``), one
  branch: the residual path with the block's post-add activation moved inside it, then drop-path,
  ``drop_path(act(bn_last(conv_last(...))))`` (as OpenTAD's Re²SlowFast). A block with a projection
  shortcut is not reversible (:func:`block_branches` gives ``None``) and runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from timm.models.resnet import BasicBlock, Bottleneck
from timm.models.swin_transformer import SwinTransformerBlock
from timm.models.vision_transformer import Block, ResPostBlock
from torch import Tensor, nn

from visionkit.methods.re2tal.reversible import Branch

__all__ = ["SUPPORTED_BLOCKS", "block_branches", "is_supported_block"]


def _vit_branches(b: nn.Module, name: str) -> list[Branch]:
    return [
        Branch(lambda z: b.drop_path1(b.ls1(b.attn(b.norm1(z)))), (b.norm1, b.attn, b.ls1, b.drop_path1),
               f"{name}.attn"),
        Branch(lambda z: b.drop_path2(b.ls2(b.mlp(b.norm2(z)))), (b.norm2, b.mlp, b.ls2, b.drop_path2),
               f"{name}.mlp"),
    ]


def _res_post_branches(b: nn.Module, name: str) -> list[Branch]:
    return [
        Branch(lambda z: b.drop_path1(b.norm1(b.attn(z))), (b.attn, b.norm1, b.drop_path1), f"{name}.attn"),
        Branch(lambda z: b.drop_path2(b.norm2(b.mlp(z))), (b.mlp, b.norm2, b.drop_path2), f"{name}.mlp"),
    ]


def _swin_branches(b: nn.Module, name: str) -> list[Branch]:
    return [
        Branch(lambda z: b.drop_path1(b._attn(b.norm1(z))), (b.norm1, b.attn, b.drop_path1), f"{name}.attn"),
        Branch(lambda z: b.drop_path2(b.mlp(b.norm2(z))), (b.norm2, b.mlp, b.drop_path2), f"{name}.mlp"),
    ]


def _basic_path(b: nn.Module, z: Tensor) -> Tensor:
    """timm ``BasicBlock.forward`` without the shortcut, the activation moved before drop-path."""
    x = b.aa(b.act1(b.drop_block(b.bn1(b.conv1(z)))))
    x = b.bn2(b.conv2(x))
    if b.se is not None:
        x = b.se(x)
    x = b.act2(x)
    return x if b.drop_path is None else b.drop_path(x)


def _bottleneck_path(b: nn.Module, z: Tensor) -> Tensor:
    """timm ``Bottleneck.forward`` without the shortcut, the activation moved before drop-path."""
    x = b.act1(b.bn1(b.conv1(z)))
    x = b.aa(b.act2(b.drop_block(b.bn2(b.conv2(x)))))
    x = b.bn3(b.conv3(x))
    if b.se is not None:
        x = b.se(x)
    x = b.act3(x)
    return x if b.drop_path is None else b.drop_path(x)


def _resnet_branches(b: nn.Module, name: str) -> list[Branch] | None:
    if b.downsample is not None:
        return None
    path = _basic_path if isinstance(b, BasicBlock) else _bottleneck_path
    return [Branch(lambda z: path(b, z), (b,), name)]


#: Block type -> ``(block, name) -> branches`` (``None``: the block is kept outside the reversible run).
SUPPORTED_BLOCKS: dict[type[nn.Module], Callable[[nn.Module, str], list[Branch] | None]] = {
    Block: _vit_branches,
    ResPostBlock: _res_post_branches,
    SwinTransformerBlock: _swin_branches,
    BasicBlock: _resnet_branches,
    Bottleneck: _resnet_branches,
}


def is_supported_block(module: nn.Module) -> bool:
    """Whether ``module`` is one of :data:`SUPPORTED_BLOCKS` (exact type)."""
    return type(module) in SUPPORTED_BLOCKS


def block_branches(block: nn.Module, name: str) -> list[Branch] | None:
    """The residual branches of a supported ``block`` in order, or ``None`` when it is not reversible
    (a ResNet block with a projection shortcut). ``name`` prefixes the branch names."""
    return SUPPORTED_BLOCKS[type(block)](block, name)
