"""SMT's multi-head mixed convolution with the channel interleave: reference, ``torch.library`` registration,
autograd and dispatch (custom ops ``modzoo::mixed_dwconv_interleave`` and ``modzoo::mixed_dwconv_interleave_backward``;
the Triton kernels are in :mod:`modzoo.kernels.mixed_dwconv_interleave_triton`, imported when a kernel first runs).
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from ._layout import empty_nchw
from .dispatch import check_depthwise_weight, conv_shape_reason, runs_triton

__all__ = ['mixed_dwconv_interleave', 'mixed_dwconv_interleave_reference']


def mixed_dwconv_interleave_reference(
        x: torch.Tensor,
        weights: List[torch.Tensor],
        biases: List[torch.Tensor],
) -> torch.Tensor:
    """SMT's multi-head mixed convolution (MHMC) and the channel interleave that opens its scale-aware aggregation
    (SAA) (Lin et al. 2023).

    MHMC: the channels of ``x`` are split into ``h`` heads; head ``i`` (the contiguous chunk ``i`` of ``C / h``
    channels) goes through its own depthwise conv, ``weights[i]`` (``(C / h, 1, k_i, k_i)``, padding ``k_i // 2``)
    plus ``biases[i]``, so every head sees another scale. Interleave: output channel ``g * h + i`` is head ``i``'s
    channel ``g``, so each group of ``h`` consecutive channels holds one channel of every scale.
    """
    num_heads = len(weights)
    chunks = torch.chunk(x, num_heads, dim=1)
    heads: List[torch.Tensor] = []
    for i, (weight, bias) in enumerate(zip(weights, biases)):  # noqa: B905  TorchScript has no zip(strict=)
        heads.append(F.conv2d(chunks[i], weight, bias, 1, weight.shape[-1] // 2, 1, weight.shape[0]))
    # stack on a new dim after the channels: (B, C / h, h, H, W) -> channel g * h + i
    return torch.stack(heads, dim=2).flatten(1, 2)


def _check_args(x: torch.Tensor, weights: List[torch.Tensor], biases: List[torch.Tensor]) -> List[int]:
    """Raise a ValueError on arguments the op does not take; return the depthwise kernel sizes."""
    if x.dim() != 4:
        raise ValueError(f'mixed_dwconv_interleave: x must be (B, C, H, W), got shape {tuple(x.shape)}')
    n_heads = len(weights)
    C = x.shape[1]
    if n_heads == 0 or len(biases) != n_heads:
        raise ValueError(f'mixed_dwconv_interleave: needs one weight and one bias per head, got {n_heads} weights '
                         f'and {len(biases)} biases')
    if C % n_heads:
        raise ValueError(f'mixed_dwconv_interleave: {C} channels do not split into {n_heads} heads')
    Cg = C // n_heads
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        check_depthwise_weight('mixed_dwconv_interleave', f'weights[{i}]', w, Cg, 'C / h')
        if tuple(b.shape) != (Cg,):
            raise ValueError(f'mixed_dwconv_interleave: biases[{i}] must be ({Cg},), got {tuple(b.shape)}')
    return [w.shape[-1] for w in weights]


def _shape_reason(x: torch.Tensor, weights: List[torch.Tensor], biases: List[torch.Tensor]) -> Optional[str]:
    return conv_shape_reason(x, 'x', weights)


@torch.library.custom_op('modzoo::mixed_dwconv_interleave', mutates_args=())
def _mixed_op(x: torch.Tensor, weights: List[torch.Tensor], biases: List[torch.Tensor]) -> torch.Tensor:
    from .mixed_dwconv_interleave_triton import mixed_dwconv_fwd
    return mixed_dwconv_fwd(x, weights, biases)


@_mixed_op.register_fake
def _(x, weights, biases):
    return empty_nchw(x)


@torch.library.custom_op('modzoo::mixed_dwconv_interleave_backward', mutates_args=())
def _mixed_backward_op(grad: torch.Tensor, x: torch.Tensor, weights: List[torch.Tensor], biases: List[torch.Tensor]
                       ) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
    from .mixed_dwconv_interleave_triton import mixed_dwconv_bwd
    return mixed_dwconv_bwd(grad, x, weights, biases)


@_mixed_backward_op.register_fake
def _(grad, x, weights, biases):
    return empty_nchw(x), [w.new_empty(w.shape) for w in weights], [b.new_empty(b.shape) for b in biases]


def _setup_context(ctx, inputs, output):
    x, weights, biases = inputs
    ctx.num_heads = len(weights)
    ctx.save_for_backward(x, *weights, *biases)


def _backward(ctx, grad):
    x, *params = ctx.saved_tensors
    weights, biases = params[:ctx.num_heads], params[ctx.num_heads:]
    dx, dweights, dbiases = torch.ops.modzoo.mixed_dwconv_interleave_backward(grad, x, weights, biases)
    return dx, list(dweights), list(dbiases)


_mixed_op.register_autograd(_backward, setup_context=_setup_context)


def mixed_dwconv_interleave(x: torch.Tensor, weights: List[torch.Tensor], biases: List[torch.Tensor]) -> torch.Tensor:
    """SMT's multi-head mixed convolution (MHMC) followed by the channel interleave of SAA.

    Args:
        x: logical (B, C, H, W), any strides (channels-last and permuted token views are read in place).
        weights: ``h`` depthwise weights, ``weights[i]`` is ``(C / h, 1, k_i, k_i)`` with odd ``k_i``
            (SMT: ``k_i = 3 + 2 i``) and applies to the contiguous channel chunk ``i``.
        biases: ``h`` biases of shape ``(C / h,)``.

    Returns:
        (B, C, H, W) in ``x``'s memory order; channel ``g * h + i`` is head ``i``'s channel ``g``.
    """
    if not torch.jit.is_scripting():  # TorchScript compiles only the reference below
        if runs_triton('mixed_dwconv_interleave', (x, weights, biases), _check_args, _shape_reason):
            return torch.ops.modzoo.mixed_dwconv_interleave(x, weights, biases)
    return mixed_dwconv_interleave_reference(x, weights, biases)


def example_inputs(batch: int, channels: int, size: int, kernel_sizes, dtype: torch.dtype, device,
                   channels_last: bool = True) -> Tuple[tuple, List[torch.Tensor]]:
    """``(args, leaves)`` at a model shape, one head per kernel size: SMT feeds a channels-last view of a
    ``(B, H, W, C)`` Linear output."""
    if channels_last:
        x = torch.randn(batch, size, size, channels, device=device, dtype=dtype).permute(0, 3, 1, 2)
    else:
        x = torch.randn(batch, channels, size, size, device=device, dtype=dtype)
    x = x.detach().requires_grad_()
    Cg = channels // len(kernel_sizes)
    ws = [(torch.randn(Cg, 1, k, k, device=device) / k).requires_grad_() for k in kernel_sizes]
    bs = [torch.randn(Cg, device=device).requires_grad_() for _ in kernel_sizes]
    return (x, ws, bs), [x, *ws, *bs]
