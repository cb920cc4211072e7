"""Export forms of torch/timm layers for phone delegates (XNNPACK): same numbers, only ops the delegate runs.

XNNPACK 1.5.1 has no LayerNorm, and its mean takes only a 4D tensor over H and W with ``keepdim``; every op it
leaves out runs on ExecuTorch's slow portable kernels and splits the graph into more delegate calls. So:

* :class:`LinearMeanLayerNorm` replaces ``nn.LayerNorm`` (and timm's ``LayerNorm``) over the last dimension: the mean
  and the variance over channels are one ``linear`` each with a constant 1/C row (XNNPACK's fully-connected kernel),
  the rest is subtract, multiply, ``rsqrt`` and add.
* :class:`ConvMeanLayerNorm2d` replaces timm's ``LayerNorm2d`` (channels-first, FocalNet) the same way with a 1x1
  convolution, so no permute to channels-last and back is needed.
* :func:`explicit_attention` is attention as two 3-D batched matmuls and a softmax: the export form of
  ``F.scaled_dot_product_attention`` (whose export brings masking ops, ``logical_not``/``any``/``where``, that
  XNNPACK lacks) and of a 4-D ``q @ k^T`` (which exports as ``expand`` + ``bmm``; XNNPACK has no ``expand``).
  Attention modules use it when their ``fused_attn`` is off, with q, k, v cut from the fused projection by
  :func:`sliced_heads` (``unbind`` exports as ``split`` + ``squeeze``, left on portable kernels).
* :class:`WindowedDepthwiseConv2d` computes a stride-1 depthwise conv with a kernel larger than 5x5 as a sum
  of 5x5 depthwise convs, each sliced at its offset: XNNPACK's depthwise micro-kernels stop at 25 taps, and a 7x7
  depthwise conv falls back to its grouped GEMM, measured 17x slower than a 5x5 (ETDump, 32 channels at 56x56:
  1.50 vs 0.087 ms), so four 5x5 convs take about a quarter of the 7x7's time. Not a foreign form of every
  ``nn.Conv2d``: some models read their convs' weights into fused kernel ops (SMT); a module opts in by its own
  export form (EfficientMod's context layer).
* :class:`MeanPool` replaces the ``nn.AdaptiveAvgPool2d(1)`` of timm's classifier head (``adaptive_avg_pool2d``
  becomes an ``as_strided`` view XNNPACK refuses) with ``mean((2, 3), keepdim=True)``, XNNPACK's global average pool.

They are used only at export time (:func:`swap_mobile_forms`, called by the export-form entry point of
``modzoo.export.deploy``); eager models keep the fused PyTorch kernels. Outputs match the replaced layers within
1e-6 (fp32).
"""
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['LinearMeanLayerNorm', 'ConvMeanLayerNorm2d', 'WindowedDepthwiseConv2d', 'windowed_depthwise_form',
           'MeanPool', 'explicit_attention', 'sliced_heads', 'without_fused_attention', 'mobile_foreign_forms',
           'swap_mobile_forms']


class LinearMeanLayerNorm(nn.Module):
    """LayerNorm over the last dimension with the channel means taken by ``linear`` (export form)."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        (channels,) = norm.normalized_shape
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias
        self.register_buffer('average', torch.full((1, channels), 1.0 / channels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - F.linear(x, self.average)
        var = F.linear(centred * centred, self.average)
        x = centred * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            x = x * self.weight
        return x + self.bias if self.bias is not None else x


class ConvMeanLayerNorm2d(nn.Module):
    """Channels-first LayerNorm (B, C, H, W) with the channel means taken by a 1x1 convolution (export form)."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        (channels,) = norm.normalized_shape
        self.eps = norm.eps
        self.weight, self.bias = norm.weight, norm.bias
        self.register_buffer('average', torch.full((1, channels, 1, 1), 1.0 / channels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - F.conv2d(x, self.average)
        var = F.conv2d(centred * centred, self.average)
        x = centred * torch.rsqrt(var + self.eps)
        if self.weight is not None:
            x = x * self.weight[:, None, None]
        return x + self.bias[:, None, None] if self.bias is not None else x


class WindowedDepthwiseConv2d(nn.Module):
    """A stride-1, same-size depthwise conv (k x k, k > ``window``) as a sum of ``window`` x ``window`` depthwise
    convs (export form). The kernel's rows and columns are cut into runs of ``window``; each tile holds one run pair
    at its offset in a ``window``-sized kernel (zeros elsewhere), convolves the input with the conv's own padding and
    is sliced to the input's size at that offset. No pad op: a form that padded the input once made XNNPACK refuse
    EfficientMod-xxs's int8 program at load time (invalid StaticConstantPad). Same numbers up to fp32 summation
    order."""

    def __init__(self, conv: nn.Conv2d, window: int = 5):
        super().__init__()
        k = conv.kernel_size[0]
        self.pad, self.groups = k // 2, conv.groups
        runs = [(start, min(start + window, k), min(start, k - window)) for start in range(0, k, window)]
        self.offsets, tiles = [], []
        weight = conv.weight.detach()
        for r0, r1, row_offset in runs:
            for c0, c1, col_offset in runs:
                tile = weight.new_zeros(weight.shape[0], 1, window, window)
                tile[..., r0 - row_offset:r1 - row_offset, c0 - col_offset:c1 - col_offset] = weight[..., r0:r1, c0:c1]
                tiles.append(nn.Parameter(tile, requires_grad=False))
                self.offsets.append((row_offset, col_offset))
        self.tiles = nn.ParameterList(tiles)
        self.bias = conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        out = None
        for (r, c), tile in zip(self.offsets, self.tiles, strict=True):
            bias = self.bias if out is None else None
            part = F.conv2d(x, tile, bias, padding=self.pad, groups=self.groups)[..., r:r + height, c:c + width]
            out = part if out is None else out + part
        return out


def windowed_depthwise_form(conv: nn.Module, window: int = 5) -> Optional[WindowedDepthwiseConv2d]:
    """:class:`WindowedDepthwiseConv2d` of a plain depthwise ``nn.Conv2d`` with a square odd kernel larger than
    ``window``, stride 1, no dilation and same-size zero padding; None for any other conv."""
    if type(conv) is not nn.Conv2d or not conv.in_channels == conv.out_channels == conv.groups:
        return None
    (kh, kw), padding = conv.kernel_size, conv.padding
    if kh != kw or kh % 2 == 0 or kh <= window or conv.stride != (1, 1) or conv.dilation != (1, 1):
        return None
    if padding != (kh // 2, kw // 2) or conv.padding_mode != 'zeros':
        return None
    return WindowedDepthwiseConv2d(conv, window)


class MeanPool(nn.Module):
    """Global average pooling as ``mean((2, 3), keepdim=True)`` (export form of ``nn.AdaptiveAvgPool2d(1)``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, dropout_p: float = 0.0,
                       training: bool = False) -> torch.Tensor:
    """``dropout(softmax(q k^T * scale)) v`` for (B, heads, N, d) tensors, as 3-D ``bmm`` on (B * heads, N, d)
    views. No size is named (flatten/unflatten only), so traced graphs keep a dynamic batch and token count;
    TorchScript-compatible (the attention modules are scripted)."""
    heads = q.shape[1]
    attn = torch.bmm(q.flatten(0, 1) * scale, k.flatten(0, 1).transpose(1, 2)).softmax(dim=-1)
    attn = F.dropout(attn, dropout_p, training)
    return torch.bmm(attn, v.flatten(0, 1)).unflatten(0, (-1, heads))


def sliced_heads(fused: torch.Tensor, heads: int, head_dim: int) -> List[torch.Tensor]:
    """The (B, heads, N, head_dim) parts (q, k, v or k, v) of a fused projection (B, N, parts * heads * head_dim) by
    slicing its channels: the usual ``unflatten(...).permute(...).unbind(0)`` exports as ``split`` + ``squeeze``,
    which XNNPACK leaves on portable kernels; a slice it runs. Same values. TorchScript-compatible."""
    inner = heads * head_dim
    return [fused[..., i * inner:(i + 1) * inner].unflatten(-1, (heads, head_dim)).transpose(1, 2)
            for i in range(fused.shape[-1] // inner)]


def without_fused_attention(module: nn.Module) -> nn.Module:
    """The export form of an attention module with a ``fused_attn`` switch: a shallow copy (same parameters and
    children) that takes its :func:`explicit_attention` path."""
    import copy
    form = copy.copy(module)
    form.fused_attn = False
    return form


def _layer_norm_form(module: nn.Module) -> Optional[nn.Module]:
    return LinearMeanLayerNorm(module) if len(module.normalized_shape) == 1 else None


def _layer_norm_2d_form(module: nn.Module) -> Optional[nn.Module]:
    return ConvMeanLayerNorm2d(module) if len(module.normalized_shape) == 1 else None


def _global_pool_form(module: nn.Module) -> Optional[nn.Module]:
    return MeanPool() if module.output_size in (1, (1, 1)) else None


def mobile_foreign_forms(target: str) -> Dict[type, Callable[[nn.Module], Optional[nn.Module]]]:
    """``{layer type: make form or None}`` of torch/timm layers for ``target`` ('executorch' or 'coreml'): the
    entries of ``modzoo.export.deploy.FOREIGN_EXPORT_FORMS``. Core ML has LayerNorm; it needs only the head."""
    from timm.layers import LayerNorm, LayerNorm2d
    forms: Dict[type, Callable[[nn.Module], Optional[nn.Module]]] = {nn.AdaptiveAvgPool2d: _global_pool_form}
    if target == 'executorch':
        forms.update({nn.LayerNorm: _layer_norm_form, LayerNorm: _layer_norm_form, LayerNorm2d: _layer_norm_2d_form})
    return forms


def swap_mobile_forms(model: nn.Module, target: str = 'executorch') -> Dict[str, int]:
    """Replace (in place) every torch/timm layer that has a form for ``target``; returns the count per replaced
    class name. (Exports go through ``modzoo.export.deploy.prepare_for_export``, which does this and more.)"""
    forms = mobile_foreign_forms(target)
    counts: Dict[str, int] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            make = forms.get(type(child))
            form = make(child) if make is not None else None
            if form is not None:
                setattr(parent, name, form)
                counts[type(child).__name__] = counts.get(type(child).__name__, 0) + 1
    return counts
