"""EfficientMod ops: the context branch's depthwise conv + bias + GELU, and the ``act(v) * tile(ctx)`` modulation.

Custom ops (with fake implementations and autograd formulas, so ``torch.compile`` keeps them as single nodes):
``modzoo::dwconv_gelu`` / ``modzoo::dwconv_gelu_backward`` and ``modzoo::gelu_tile_mul`` /
``modzoo::gelu_tile_mul_backward``.
"""
from typing import Optional, Tuple

import torch

from ._layout import empty_nchw
from .dispatch import check_depthwise_weight, conv_shape_reason, in_export_or_trace, select_backend
from .reference import dwconv_gelu_reference, gelu_tile_mul_reference

__all__ = ['dwconv_gelu', 'gelu_tile_mul']

# ---------------------------------------------------------------------------------------------------------------------
# dwconv_gelu

def _check_dwconv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
    if x.dim() != 4:
        raise ValueError(f'dwconv_gelu: x must be logical (B, C, H, W), got shape {tuple(x.shape)}')
    C = x.shape[1]
    check_depthwise_weight('dwconv_gelu', 'weight', weight, C)
    if bias is not None and tuple(bias.shape) != (C,):
        raise ValueError(f'dwconv_gelu: bias must be ({C},), got {tuple(bias.shape)}')


def _dwconv_use_triton(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> bool:
    if in_export_or_trace():  # exporters and tracers record the reference (and no shape checks)
        return False
    _check_dwconv(x, weight, bias)
    tensors = [x, weight] if bias is None else [x, weight, bias]
    return select_backend('dwconv_gelu', tensors, lambda: conv_shape_reason(x, 'x', [weight])) == 'triton'


@torch.library.custom_op('modzoo::dwconv_gelu', mutates_args=())
def _dwconv_gelu_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    from ._dwconv_triton import dwconv_gelu_fwd
    return dwconv_gelu_fwd(x, weight, bias)


@_dwconv_gelu_op.register_fake
def _(x, weight, bias):
    return empty_nchw(x)


@torch.library.custom_op('modzoo::dwconv_gelu_backward', mutates_args=())
def _dwconv_gelu_backward_op(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
                             ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns ``(dx, dweight, dbias)``; ``dbias`` (in the weight's dtype when there is no bias) is always computed
    because a custom op cannot return an optional tensor."""
    from ._dwconv_triton import dwconv_gelu_bwd
    return dwconv_gelu_bwd(grad, x, weight, bias)


@_dwconv_gelu_backward_op.register_fake
def _(grad, x, weight, bias):
    bias_dtype = (bias if bias is not None else weight).dtype
    return empty_nchw(x), weight.new_empty(weight.shape), weight.new_empty((weight.shape[0],), dtype=bias_dtype)


def _dwconv_setup_context(ctx, inputs, output):
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight, bias)


def _dwconv_backward(ctx, grad):
    x, weight, bias = ctx.saved_tensors
    dx, dweight, dbias = torch.ops.modzoo.dwconv_gelu_backward(grad, x, weight, bias)
    return dx, dweight, dbias if bias is not None else None


_dwconv_gelu_op.register_autograd(_dwconv_backward, setup_context=_dwconv_setup_context)


def dwconv_gelu(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``GELU(depthwise_conv2d(x, weight, padding=k // 2) + bias)``.

    Args:
        x: logical (B, C, H, W), any strides. A permuted channels-last ``(B, H, W, C)`` tensor is read in place and
            the result keeps that memory order, so ``.permute(0, 2, 3, 1)`` of the output is contiguous again.
        weight: depthwise ``(C, 1, k, k)`` weight, odd ``k``.
        bias: ``(C,)`` or None.
    """
    if not torch.jit.is_scripting():  # TorchScript compiles only the reference below
        if _dwconv_use_triton(x, weight, bias):
            return torch.ops.modzoo.dwconv_gelu(x, weight, bias)
    return dwconv_gelu_reference(x, weight, bias)


# ---------------------------------------------------------------------------------------------------------------------
# gelu_tile_mul

def _check_tile_mul(v: torch.Tensor, ctx: torch.Tensor) -> None:
    if v.dim() < 1 or ctx.dim() < 1 or ctx.shape[-1] == 0 or v.shape[-1] % ctx.shape[-1] != 0:
        raise ValueError(f'gelu_tile_mul: the last dim of v {tuple(v.shape)} must be a multiple r * C of the last dim '
                         f'C of ctx {tuple(ctx.shape)}')


def _tile_mul_reason(v: torch.Tensor, ctx: torch.Tensor) -> Optional[str]:
    if v.shape[:-1] != ctx.shape[:-1]:
        return (f'the leading dims of v {tuple(v.shape[:-1])} and ctx {tuple(ctx.shape[:-1])} differ (the kernel '
                f'does not broadcast)')
    if v.numel() == 0:
        return 'v is empty'
    return None


def _tile_mul_use_triton(v: torch.Tensor, ctx: torch.Tensor) -> bool:
    if in_export_or_trace():  # exporters and tracers record the reference (and no shape checks)
        return False
    _check_tile_mul(v, ctx)
    return select_backend('gelu_tile_mul', [v, ctx], lambda: _tile_mul_reason(v, ctx)) == 'triton'


@torch.library.custom_op('modzoo::gelu_tile_mul', mutates_args=())
def _gelu_tile_mul_op(v: torch.Tensor, ctx: torch.Tensor, apply_gelu: bool) -> torch.Tensor:
    from ._tile_mul_triton import gelu_tile_mul_fwd
    return gelu_tile_mul_fwd(v, ctx, apply_gelu)


@_gelu_tile_mul_op.register_fake
def _(v, ctx, apply_gelu):
    return v.new_empty(v.shape, dtype=torch.promote_types(v.dtype, ctx.dtype))


@torch.library.custom_op('modzoo::gelu_tile_mul_backward', mutates_args=())
def _gelu_tile_mul_backward_op(grad: torch.Tensor, v: torch.Tensor, ctx: torch.Tensor, apply_gelu: bool
                               ) -> Tuple[torch.Tensor, torch.Tensor]:
    from ._tile_mul_triton import gelu_tile_mul_bwd
    return gelu_tile_mul_bwd(grad, v, ctx, apply_gelu)


@_gelu_tile_mul_backward_op.register_fake
def _(grad, v, ctx, apply_gelu):
    return v.new_empty(v.shape), ctx.new_empty(ctx.shape)


def _tile_mul_setup_context(ctx, inputs, output):
    v, c, apply_gelu = inputs
    ctx.save_for_backward(v, c)
    ctx.apply_gelu = apply_gelu


def _tile_mul_backward(ctx, grad):
    v, c = ctx.saved_tensors
    dv, dc = torch.ops.modzoo.gelu_tile_mul_backward(grad, v, c, ctx.apply_gelu)
    return dv, dc, None


_gelu_tile_mul_op.register_autograd(_tile_mul_backward, setup_context=_tile_mul_setup_context)


def gelu_tile_mul(v: torch.Tensor, ctx: torch.Tensor, apply_gelu: bool = True) -> torch.Tensor:
    """Channels-last ``act(v) * tile(ctx)`` without materialising the tile.

    Args:
        v: ``(..., r * C)`` value branch (``fc1`` output).
        ctx: ``(..., C)`` context; hidden channel ``j`` of ``v`` is multiplied by channel ``j mod C``
            (``ctx.repeat(..., r)``, not ``repeat_interleave``).
        apply_gelu: exact GELU on ``v`` (EfficientMod applies it when ``r > 1``), else identity.
    """
    if not torch.jit.is_scripting():  # TorchScript compiles only the reference below
        if _tile_mul_use_triton(v, ctx):
            return torch.ops.modzoo.gelu_tile_mul(v, ctx, apply_gelu)
    return gelu_tile_mul_reference(v, ctx, apply_gelu)
