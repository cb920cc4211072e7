"""Pure-PyTorch reference implementations of the fused modulation ops.

These are the semantics the Triton kernels must reproduce, and the path taken on CPU, in float64, for unsupported
shapes, under ONNX export, TorchScript scripting/tracing and fvcore counting. They use only standard ATen ops
(conv2d, gelu, mean, mul/add, reshape), so every exporter and counter understands them, and they are scriptable.
"""
from typing import List, Optional

import torch
import torch.nn.functional as F

__all__ = [
    'focal_context_reference', 'dwconv_gelu_reference', 'gelu_tile_mul_reference',
    'mixed_dwconv_interleave_reference',
]


def focal_context_reference(
        ctx: torch.Tensor,
        gates: torch.Tensor,
        kernels: List[torch.Tensor],
        normalize: bool = False,
) -> torch.Tensor:
    """FocalNet hierarchical context: ``sum_l gate_l * ctx_l + gate_L1 * GELU(mean_HW(ctx_L))``.

    ``ctx_l = GELU(dwconv_l(ctx_{l-1}))`` with ``kernels[l]`` the ``(C, 1, k, k)`` depthwise weight (no bias,
    padding ``k // 2``). ``gates`` is ``(B, L + 1, H, W)``; gate ``l`` is broadcast over the channels. The sum is
    divided by ``L + 1`` when ``normalize`` is set.
    """
    num_levels = len(kernels)
    ctx_all = torch.zeros_like(ctx)
    for level, weight in enumerate(kernels):
        ctx = F.gelu(F.conv2d(ctx, weight, None, 1, weight.shape[-1] // 2, 1, ctx.shape[1]))
        ctx_all = torch.addcmul(ctx_all, ctx, gates[:, level:level + 1])
    ctx_global = F.gelu(ctx.mean((2, 3), keepdim=True))
    ctx_all = torch.addcmul(ctx_all, ctx_global, gates[:, num_levels:])
    if normalize:
        ctx_all = ctx_all / (num_levels + 1)
    return ctx_all


def dwconv_gelu_reference(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``GELU(depthwise_conv(x, weight, padding=k // 2) + bias)`` on a logical NCHW tensor of any strides."""
    return F.gelu(F.conv2d(x, weight, bias, 1, weight.shape[-1] // 2, 1, x.shape[1]))


def gelu_tile_mul_reference(v: torch.Tensor, ctx: torch.Tensor, apply_gelu: bool = True) -> torch.Tensor:
    """Channels-last ``act(v) * tile(ctx)``: hidden channel ``j`` of ``v (..., r*C)`` times ``ctx (..., C)`` channel
    ``j mod C`` (``ctx.repeat(..., r)``, not ``repeat_interleave``). The tile is a broadcast, never materialised."""
    num_chs = ctx.shape[-1]
    if apply_gelu:
        v = F.gelu(v)
    out = v.unflatten(-1, (v.shape[-1] // num_chs, num_chs)) * ctx.unsqueeze(-2)
    return out.flatten(-2)


def mixed_dwconv_interleave_reference(
        x: torch.Tensor,
        weights: List[torch.Tensor],
        biases: List[torch.Tensor],
) -> torch.Tensor:
    """SMT multi-head mixed convolution with the channel interleave.

    Head ``i`` takes the contiguous channel chunk ``i`` of ``x`` (``C / h`` channels) through a depthwise conv with
    ``weights[i]`` (``(C / h, 1, k_i, k_i)``, padding ``k_i // 2``) plus ``biases[i]``. Output channel ``g * h + i``
    holds head ``i``'s channel ``g``.
    """
    num_heads = len(weights)
    chunks = torch.chunk(x, num_heads, dim=1)
    outs: List[torch.Tensor] = []
    for i, (weight, bias) in enumerate(zip(weights, biases)):
        outs.append(F.conv2d(chunks[i], weight, bias, 1, weight.shape[-1] // 2, 1, weight.shape[0]))
    # stack on a new dim after the channels: (B, C / h, h, H, W) -> channel g * h + i
    return torch.stack(outs, dim=2).flatten(1, 2)
