"""EfficientMod's context conv ``GELU(dwconv(x) + bias)``: reference, custom ops, autograd and dispatch.

Custom ops (with fake implementations and an autograd formula, so ``torch.compile`` keeps them as single nodes):
``modzoo::dwconv_gelu`` and ``modzoo::dwconv_gelu_backward``; the Triton kernels are in
:mod:`modzoo.kernels.dwconv_gelu_triton`, imported when a kernel first runs.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from ._layout import empty_nchw
from .dispatch import check_depthwise_weight, conv_shape_reason, runs_triton

__all__ = ['dwconv_gelu', 'dwconv_gelu_reference']


def dwconv_gelu_reference(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """EfficientMod's context modelling (Ma et al. 2024): ``GELU(DWConv_k(x) + bias)``, a depthwise ``k x k``
    convolution (padding ``k // 2``) with bias, then GELU, on a logical NCHW tensor of any strides."""
    return F.gelu(F.conv2d(x, weight, bias, 1, weight.shape[-1] // 2, 1, x.shape[1]))


def _check_args(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> List[int]:
    """Raise a ValueError on arguments the op does not take; return the depthwise kernel size."""
    if x.dim() != 4:
        raise ValueError(f'dwconv_gelu: x must be logical (B, C, H, W), got shape {tuple(x.shape)}')
    C = x.shape[1]
    check_depthwise_weight('dwconv_gelu', 'weight', weight, C)
    if bias is not None and tuple(bias.shape) != (C,):
        raise ValueError(f'dwconv_gelu: bias must be ({C},), got {tuple(bias.shape)}')
    return [weight.shape[-1]]


def _shape_reason(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> Optional[str]:
    return conv_shape_reason(x, 'x', [weight])


@torch.library.custom_op('modzoo::dwconv_gelu', mutates_args=())
def _dwconv_gelu_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    from .dwconv_gelu_triton import dwconv_gelu_fwd
    return dwconv_gelu_fwd(x, weight, bias)


@_dwconv_gelu_op.register_fake
def _(x, weight, bias):
    return empty_nchw(x)


@torch.library.custom_op('modzoo::dwconv_gelu_backward', mutates_args=())
def _dwconv_gelu_backward_op(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
                             ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns ``(dx, dweight, dbias)``; ``dbias`` (in the weight's dtype when there is no bias) is always computed
    because a custom op cannot return an optional tensor."""
    from .dwconv_gelu_triton import dwconv_gelu_bwd
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
        if runs_triton('dwconv_gelu', (x, weight, bias), _check_args, _shape_reason):
            return torch.ops.modzoo.dwconv_gelu(x, weight, bias)
    return dwconv_gelu_reference(x, weight, bias)


def example_inputs(batch: int, channels: int, size: int, kernel_size: int, dtype: torch.dtype, device,
                   channels_last: bool = True) -> Tuple[tuple, List[torch.Tensor]]:
    """``(args, leaves)`` at a model shape: EfficientMod feeds a channels-last view of a ``(B, H, W, C)`` tensor."""
    if channels_last:
        x = torch.randn(batch, size, size, channels, device=device, dtype=dtype).permute(0, 3, 1, 2)
    else:
        x = torch.randn(batch, channels, size, size, device=device, dtype=dtype)
    x = x.detach().requires_grad_()
    w = (torch.randn(channels, 1, kernel_size, kernel_size, device=device) / kernel_size).requires_grad_()
    b = torch.randn(channels, device=device).requires_grad_()
    return (x, w, b), [x, w, b]
