"""ONNX export forms of FocalNet (:mod:`modzoo.models.focalnet`), used by
:meth:`~modzoo.models.focalnet.FocalNetStage.export_form`: channels-last stages that ONNX Runtime runs with fewer
layout changes. Eager FocalNet never uses them; they compute the same to fp32 rounding."""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from timm.layers import LayerNorm2d, LayerScale2d

from modzoo.kernels import focal_context
from .focalnet import FocalNetBlock, FocalNetStage, PatchEmbed

__all__ = ['FocalNetBlockNHWC', 'FocalNetStageNHWC', 'stage_nhwc']


def _channels_last_norm(norm: nn.Module) -> Optional[nn.Module]:
    """The LayerNorm of a channels-last tensor that ``norm`` (a LayerNorm2d or Identity) applies channels-first;
    None for any other norm layer."""
    if isinstance(norm, nn.Identity):
        return norm
    if type(norm) is not LayerNorm2d:
        return None
    ln = nn.LayerNorm(norm.normalized_shape, eps=norm.eps, device=norm.weight.device, dtype=norm.weight.dtype)
    ln.load_state_dict(norm.state_dict())
    return ln


def _conv_rows(conv: nn.Conv2d, start: int, stop: int) -> nn.Conv2d:
    """A 1x1 conv computing output channels ``start:stop`` of ``conv``."""
    part = nn.Conv2d(conv.in_channels, stop - start, 1, bias=conv.bias is not None, device=conv.weight.device,
                     dtype=conv.weight.dtype)
    part.weight.data.copy_(conv.weight[start:stop])
    if conv.bias is not None:
        part.bias.data.copy_(conv.bias[start:stop])
    return part


class FocalNetBlockNHWC(nn.Module):
    """Export form of :class:`FocalNetBlock` (inside :class:`FocalNetStageNHWC`): the residual stream channels-last,
    so the LayerNorms need no transposes and ONNX Runtime reads and writes the NCHWc blocks of the 1x1 convs
    straight from and into it; ``f`` as three convs, so ``q`` and the context never leave NCHWc for a Split (the
    gates, L + 1 channels, are a Linear on the channels-last map)."""

    def __init__(self, block: FocalNetBlock, norms: Tuple[nn.Module, ...]):
        super().__init__()
        mod = block.modulation
        dim, levels = mod.dim, mod.focal_level
        self.norm1, self.norm1_post, self.norm2, self.norm2_post = norms
        self.q, self.ctx = _conv_rows(mod.f, 0, dim), _conv_rows(mod.f, dim, 2 * dim)
        self.gates = nn.Linear(dim, levels + 1, bias=mod.f.bias is not None)
        self.gates.weight.data.copy_(mod.f.weight[2 * dim:].flatten(1))
        if mod.f.bias is not None:
            self.gates.bias.data.copy_(mod.f.bias[2 * dim:])
        self.focal_layers, self.normalize_modulator = mod.focal_layers, mod.normalize_modulator
        self.h, self.mod_norm, self.proj = mod.h, mod.norm, mod.proj
        self.gamma1 = block.ls1.gamma if isinstance(block.ls1, LayerScale2d) else None
        self.gamma2 = block.ls2.gamma if isinstance(block.ls2, LayerScale2d) else None
        self.fc1, self.act, self.fc2 = block.mlp.fc1, block.mlp.act, block.mlp.fc2

    def modulation(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.gates(x).permute(0, 3, 1, 2)
        x = x.permute(0, 3, 1, 2)
        kernels = [layer[0].weight for layer in self.focal_layers]
        ctx_all = focal_context(self.ctx(x), gates, kernels, self.normalize_modulator)
        x = self.proj(self.mod_norm(self.q(x) * self.h(ctx_all)))
        return x.permute(0, 2, 3, 1)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc2(self.act(self.fc1(x.permute(0, 3, 1, 2))))
        return x.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1_post(self.modulation(self.norm1(x)))
        x = x + (y if self.gamma1 is None else y * self.gamma1)
        y = self.norm2_post(self.mlp(self.norm2(x)))
        return x + (y if self.gamma2 is None else y * self.gamma2)


class FocalNetStageNHWC(nn.Module):
    """Export form of :class:`FocalNetStage`: NCHW in and out like the stage, channels-last between the downsample's
    conv and the stage output (see :class:`FocalNetBlockNHWC`)."""

    def __init__(self, stage: FocalNetStage, blocks: List[FocalNetBlockNHWC], down_norm: Optional[nn.Module]):
        super().__init__()
        self.downsample = stage.downsample if down_norm is not None else None
        self.down_norm = down_norm
        # the isotropic model's feature taps run stage.blocks one by one on NCHW maps: those stay the eager blocks
        self.blocks = stage.blocks
        self.blocks_nhwc = nn.ModuleList(blocks)
        self.out_norm = stage.out_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.down_norm(self.downsample.patch_conv(x).permute(0, 2, 3, 1))
        else:
            x = x.permute(0, 2, 3, 1)
        for block in self.blocks_nhwc:
            x = block(x)
        return x.permute(0, 3, 1, 2)


def stage_nhwc(stage: FocalNetStage) -> Optional[FocalNetStageNHWC]:
    """:class:`FocalNetStageNHWC` for a stage whose downsample (if any) is a :class:`PatchEmbed` and whose norms are
    LayerNorm2d; None for any other stage (an add-on's downsample, another norm layer) and for a stage with forward
    hooks (the SFM add-on's pre-hook on the downsample), which the form would not call."""
    if any(m._forward_hooks or m._forward_pre_hooks for m in stage.modules()):
        return None
    down_norm = None
    if type(stage.downsample) is PatchEmbed:
        down_norm = _channels_last_norm(stage.downsample.norm)
        if down_norm is None:
            return None
    elif not isinstance(stage.downsample, nn.Identity):
        return None
    blocks = []
    for block in stage.blocks:
        norms = tuple(_channels_last_norm(n) for n in (block.norm1, block.norm1_post, block.norm2, block.norm2_post))
        if any(n is None for n in norms) or not isinstance(block.mlp.norm, nn.Identity):
            return None
        blocks.append(FocalNetBlockNHWC(block, norms))
    return FocalNetStageNHWC(stage, blocks, down_norm)
