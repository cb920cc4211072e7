"""EfficientMod's modulation ``act(v) * tile(ctx)`` (channels-last): reference, custom ops, autograd and dispatch.

Custom ops (with fake implementations and an autograd formula, so ``torch.compile`` keeps them as single nodes):
``modzoo::gelu_tile_mul`` and ``modzoo::gelu_tile_mul_backward``; the Triton kernels are in
:mod:`modzoo.kernels.gelu_tile_mul_triton`, imported when a kernel first runs.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from .dispatch import runs_triton

__all__ = ['gelu_tile_mul', 'gelu_tile_mul_reference']


def gelu_tile_mul_reference(v: torch.Tensor, ctx: torch.Tensor, apply_gelu: bool = True,
                            ratio: Optional[int] = None) -> torch.Tensor:
    """EfficientMod's modulation (Ma et al. 2024) on channels-last tensors: ``act(v) * tile_r(ctx)``.

    The value ``v (..., r*C)`` (GELU when ``apply_gelu``, else identity) is modulated by the context ``ctx (..., C)``
    repeated ``r`` times along the channels: hidden channel ``j`` times context channel ``j mod C``
    (``ctx.repeat(..., r)``, not ``repeat_interleave``). The tile is a broadcast, never materialised. ``ratio``, the
    expansion ``r`` as the caller knows it: a Python int keeps exported graphs free of shape arithmetic (default: read
    from the shapes).
    """
    if ratio is None:
        ratio = v.shape[-1] // ctx.shape[-1]
    if apply_gelu:
        v = F.gelu(v)
    # the broadcast axis by a reshape, not unsqueeze: XNNPACK (ExecuTorch) lacks unsqueeze, which would leave one
    # portable-kernel call and a delegate split per block; same products, bit-identical
    out = v.unflatten(-1, (ratio, -1)) * ctx.unflatten(-1, (1, -1))
    return out.flatten(-2)


def _check_args(v: torch.Tensor, ctx: torch.Tensor) -> List[int]:
    """Raise a ValueError on arguments the op does not take; return the kernel sizes (none: no convolution)."""
    if v.dim() < 1 or ctx.dim() < 1 or ctx.shape[-1] == 0 or v.shape[-1] % ctx.shape[-1] != 0:
        raise ValueError(f'gelu_tile_mul: the last dim of v {tuple(v.shape)} must be a multiple r * C of the last dim '
                         f'C of ctx {tuple(ctx.shape)}')
    return []


def _shape_reason(v: torch.Tensor, ctx: torch.Tensor) -> Optional[str]:
    if v.shape[:-1] != ctx.shape[:-1]:
        return (f'the leading dims of v {tuple(v.shape[:-1])} and ctx {tuple(ctx.shape[:-1])} differ (the kernel '
                f'does not broadcast)')
    if v.numel() == 0:
        return 'v is empty'
    return None


@torch.library.custom_op('modzoo::gelu_tile_mul', mutates_args=())
def _gelu_tile_mul_op(v: torch.Tensor, ctx: torch.Tensor, apply_gelu: bool) -> torch.Tensor:
    from .gelu_tile_mul_triton import gelu_tile_mul_fwd
    return gelu_tile_mul_fwd(v, ctx, apply_gelu)


@_gelu_tile_mul_op.register_fake
def _(v, ctx, apply_gelu):
    return v.new_empty(v.shape, dtype=torch.promote_types(v.dtype, ctx.dtype))


@torch.library.custom_op('modzoo::gelu_tile_mul_backward', mutates_args=())
def _gelu_tile_mul_backward_op(grad: torch.Tensor, v: torch.Tensor, ctx: torch.Tensor, apply_gelu: bool
                               ) -> Tuple[torch.Tensor, torch.Tensor]:
    from .gelu_tile_mul_triton import gelu_tile_mul_bwd
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


def gelu_tile_mul(v: torch.Tensor, ctx: torch.Tensor, apply_gelu: bool = True, ratio: Optional[int] = None
                  ) -> torch.Tensor:
    """Channels-last ``act(v) * tile(ctx)`` without materialising the tile.

    Args:
        v: ``(..., r * C)`` value branch (``fc1`` output).
        ctx: ``(..., C)`` context; hidden channel ``j`` of ``v`` is multiplied by channel ``j mod C``
            (``ctx.repeat(..., r)``, not ``repeat_interleave``).
        apply_gelu: exact GELU on ``v`` (EfficientMod applies it when ``r > 1``), else identity.
        ratio: ``r`` when the caller knows it (a Python int: no shape arithmetic in exported graphs).
    """
    if not torch.jit.is_scripting():  # TorchScript compiles only the reference below
        if runs_triton('gelu_tile_mul', (v, ctx), _check_args, _shape_reason):
            return torch.ops.modzoo.gelu_tile_mul(v, ctx, apply_gelu)
    return gelu_tile_mul_reference(v, ctx, apply_gelu, ratio)


def example_inputs(batch: int, channels: int, size: int, ratio: int, dtype: torch.dtype, device
                   ) -> Tuple[tuple, List[torch.Tensor]]:
    """``(args, leaves)`` at a model shape: the ``(B, H, W, r * C)`` ``fc1`` output and the ``(B, H, W, C)`` context;
    GELU when ``r > 1``, as EfficientMod applies it."""
    v = torch.randn(batch, size, size, ratio * channels, device=device, dtype=dtype).requires_grad_()
    ctx = torch.randn(batch, size, size, channels, device=device, dtype=dtype).requires_grad_()
    return (v, ctx, ratio > 1), [v, ctx]
