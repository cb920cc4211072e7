"""ONNX export form of EfficientMod (:mod:`modzoo.models.efficientmod`), used by
:meth:`~modzoo.models.efficientmod.EfficientModStage.export_form`: channels-first modulation blocks, so ONNX Runtime
runs the modulation blocks' projections as NCHWc 1x1 convolutions (as it does for EfficientFormerV2's) instead of
MatMuls with layout changes around every depthwise conv. Eager EfficientMod never uses it; it computes the same to
fp32 rounding."""
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerScale

from modzoo.layers.bn_fold import linear_as_conv1x1
from .efficientmod import AttentionBlock, EfficientModBlock, EfficientModStage, PatchEmbed

__all__ = ['EfficientModBlockNCHW', 'EfficientModStageNCHW', 'stage_nchw']


def _norm_nchw(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm`` (a LayerNorm over channels) of an NCHW map. ONNX Runtime turns the permutes into the NHWC side of
    its NCHWc reorders, which is cheaper than a LayerNorm decomposed into channel means (measured)."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class EfficientModBlockNCHW(nn.Module):
    """Export form of :class:`EfficientModBlock` on NCHW maps: every Linear a 1x1 conv (the LayerScale folded into
    ``fc2``) and the tile multiply a channel concat of the context (no 5-D broadcast), so ONNX Runtime keeps the
    block's convs and element-wise ops in its NCHWc layout."""

    def __init__(self, block: EfficientModBlock):
        super().__init__()
        mod = block.mlp
        self.norm = block.norm
        self.expansion, self.apply_gelu = mod.expansion, mod.apply_gelu
        self.fc1 = linear_as_conv1x1(mod.fc1)
        self.f = linear_as_conv1x1(mod.context_layer.f)
        self.dwconv = mod.context_layer.dwconv
        self.g = linear_as_conv1x1(mod.context_layer.g)
        self.fc2 = linear_as_conv1x1(mod.fc2, block.ls.gamma if isinstance(block.ls, LayerScale) else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _norm_nchw(self.norm, x)
        ctx = self.g(F.gelu(self.dwconv(self.f(y))))
        v = self.fc1(y)
        if self.apply_gelu:
            v = F.gelu(v)
        if self.expansion > 1:
            ctx = torch.cat([ctx] * self.expansion, dim=1)
        return x + self.fc2(v * ctx)


class EfficientModStageNCHW(nn.Module):
    """Export form of :class:`EfficientModStage`: NCHW in and out like the stage, and NCHW through the modulation
    blocks (:class:`EfficientModBlockNCHW`). The attention blocks (stages 3-4 of the hybrid variants, at 1/16 and
    1/32 scale) stay the eager channels-last ones behind one permute: written channels-first (qkv, projection and
    MLP as 1x1 convs) they were 2% faster in ONNX Runtime for EfficientMod-s but 3-8% slower in OpenVINO, which
    reads the same graph."""

    def __init__(self, stage: EfficientModStage, blocks: List[EfficientModBlockNCHW], attention: List[nn.Module]):
        super().__init__()
        self.downsample = stage.downsample
        self.blocks_nchw = nn.ModuleList(blocks)
        self.attention = nn.ModuleList(attention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = _norm_nchw(self.downsample.norm, self.downsample.proj(x))
        for block in self.blocks_nchw:
            x = block(x)
        if len(self.attention) > 0:
            x = x.permute(0, 2, 3, 1)
            for block in self.attention:
                x = block(x)
            x = x.permute(0, 3, 1, 2)
        return x


def stage_nchw(stage: EfficientModStage) -> Optional[EfficientModStageNCHW]:
    """:class:`EfficientModStageNCHW` for an eval-mode stage of EfficientMod's modulation blocks (then its attention
    blocks); None for a training stage (the form has no dropout), a stage with forward hooks (the SFM add-on's
    pre-hook on the downsample), or any other block or downsample."""
    if stage.training or any(m._forward_hooks or m._forward_pre_hooks for m in stage.modules()):
        return None
    if stage.downsample is not None and type(stage.downsample) is not PatchEmbed:
        return None
    blocks, attention = [], []
    for block in stage.blocks:
        if type(block) is EfficientModBlock and not attention and isinstance(block.ls, (LayerScale, nn.Identity)):
            blocks.append(EfficientModBlockNCHW(block))
        elif type(block) is AttentionBlock:
            attention.append(block)
        else:
            return None
    return EfficientModStageNCHW(stage, blocks, attention)
