"""FocalNet's focal context: reference, ``torch.library`` registration, autograd and dispatch.

``torch.ops.modzoo.focal_context`` (Triton forward, returns ``(ctx_all, mean)``) and
``torch.ops.modzoo.focal_context_backward`` are custom ops with fake implementations and an autograd formula, so
``torch.compile`` traces them as single nodes (no graph break) and AOTAutograd sees the Triton backward. The
kernels and their pass plan are in :mod:`modzoo.kernels.focal_context_triton`, imported when a kernel first runs.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from ._layout import empty_nchw
from .dispatch import check_depthwise_weight, conv_shape_reason, runs_triton

__all__ = ['focal_context', 'focal_context_reference']


def _focal_level(ctx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """One level of hierarchical contextualization: ``GELU(DWConv(ctx))`` (no bias, padding ``k // 2``)."""
    return F.gelu(F.conv2d(ctx, weight, None, 1, weight.shape[-1] // 2, 1, ctx.shape[1]))


def focal_context_reference(
        ctx: torch.Tensor,
        gates: torch.Tensor,
        kernels: List[torch.Tensor],
        normalize: bool = False,
) -> torch.Tensor:
    """FocalNet's focal context ``Z_out`` (focal modulation, Yang et al. 2022) from ``Z_0 = ctx`` and gates ``G``.

    1. Hierarchical contextualization: ``Z_l = GELU(DWConv_l(Z_{l-1}))`` for the levels ``l = 1..L``, with
       ``kernels[l - 1]`` the ``(C, 1, k, k)`` depthwise weight of level ``l`` (no bias, padding ``k // 2``), then
       the global level ``Z_{L+1} = GELU(mean_HW(Z_L))``.
    2. Gated aggregation: ``Z_out = sum_{l=1..L+1} G_l * Z_l`` with ``G_l = gates[:, l - 1]`` (``gates`` is
       ``(B, L + 1, H, W)``) broadcast over the channels; divided by ``L + 1`` when ``normalize`` is set.
    """
    num_levels = len(kernels)
    # a plain multiply-add, starting from the first level's term: no zero tensor and no addcmul, which exported graphs
    # keep as a ConstantOfShape and an extra Mul per level
    ctx = _focal_level(ctx, kernels[0])  # Z_1
    ctx_all = ctx * gates[:, :1]  # G_1 * Z_1
    for level in range(1, num_levels):
        ctx = _focal_level(ctx, kernels[level])  # Z_l
        ctx_all = ctx_all + ctx * gates[:, level:level + 1]  # + G_l * Z_l
    ctx_global = F.gelu(ctx.mean((2, 3), keepdim=True))  # Z_{L+1}
    ctx_all = ctx_all + ctx_global * gates[:, num_levels:]
    if normalize:
        ctx_all = ctx_all / (num_levels + 1)
    return ctx_all


def _check_args(ctx: torch.Tensor, gates: torch.Tensor, kernels: List[torch.Tensor]) -> List[int]:
    """Raise a ValueError on arguments the op does not take; return the depthwise kernel sizes."""
    if ctx.dim() != 4:
        raise ValueError(f'focal_context: ctx must be (B, C, H, W), got shape {tuple(ctx.shape)}')
    B, C, H, W = ctx.shape
    if len(kernels) == 0:
        raise ValueError('focal_context: needs at least one focal level (kernels is empty)')
    if tuple(gates.shape) != (B, len(kernels) + 1, H, W):
        raise ValueError(f'focal_context: gates must be (B, L + 1, H, W) = {(B, len(kernels) + 1, H, W)} for '
                         f'{len(kernels)} levels, got {tuple(gates.shape)}')
    for i, k in enumerate(kernels):
        check_depthwise_weight('focal_context', f'kernels[{i}]', k, C)
    return [k.shape[-1] for k in kernels]


def _shape_reason(ctx: torch.Tensor, gates: torch.Tensor, kernels: List[torch.Tensor]) -> Optional[str]:
    return conv_shape_reason(ctx, 'ctx', kernels)


@torch.library.custom_op('modzoo::focal_context', mutates_args=())
def _focal_context_op(ctx: torch.Tensor, gates: torch.Tensor, kernels: List[torch.Tensor], normalize: bool
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    from .focal_context_triton import focal_context_fwd
    return focal_context_fwd(ctx, gates, kernels, normalize)


@_focal_context_op.register_fake
def _(ctx, gates, kernels, normalize):
    return empty_nchw(ctx), ctx.new_empty((ctx.shape[0], ctx.shape[1]), dtype=torch.float32)


@torch.library.custom_op('modzoo::focal_context_backward', mutates_args=())
def _focal_context_backward_op(
        grad: torch.Tensor, ctx: torch.Tensor, gates: torch.Tensor, kernels: List[torch.Tensor], mean: torch.Tensor,
        normalize: bool) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
    from .focal_context_triton import focal_context_bwd
    return focal_context_bwd(grad, ctx, gates, kernels, mean, normalize)


@_focal_context_backward_op.register_fake
def _(grad, ctx, gates, kernels, mean, normalize):
    return empty_nchw(ctx), gates.new_empty(gates.shape), [k.new_empty(k.shape) for k in kernels]


def _setup_context(ctx, inputs, output):
    x, gates, kernels, normalize = inputs
    ctx.save_for_backward(x, gates, output[1], *kernels)
    ctx.normalize = normalize


def _backward(ctx, grad_out, grad_mean):
    # `mean` is an internal output (saved for backward, discarded by focal_context), so grad_mean is ignored
    x, gates, mean, *kernels = ctx.saved_tensors
    dx, dgates, dkernels = torch.ops.modzoo.focal_context_backward(grad_out, x, gates, kernels, mean, ctx.normalize)
    return dx, dgates, list(dkernels), None


_focal_context_op.register_autograd(_backward, setup_context=_setup_context)


def focal_context(ctx: torch.Tensor, gates: torch.Tensor, kernels: List[torch.Tensor], normalize: bool = False
                  ) -> torch.Tensor:
    """FocalNet's hierarchical focal context ``ctx_all`` (see :func:`focal_context_reference` for the semantics).

    Args:
        ctx: (B, C, H, W) context, any strides (e.g. a channel slice of the ``f`` projection).
        gates: (B, L + 1, H, W) gates, any strides.
        kernels: ``L`` depthwise weights ``(C, 1, k_l, k_l)``, odd ``k_l``, no bias.
        normalize: divide by ``L + 1`` (``normalize_modulator``).
    """
    if not torch.jit.is_scripting():  # TorchScript compiles only the reference below
        if runs_triton('focal_context', (ctx, gates, kernels), _check_args, _shape_reason):
            return torch.ops.modzoo.focal_context(ctx, gates, kernels, normalize)[0]
    return focal_context_reference(ctx, gates, kernels, normalize)


def example_inputs(batch: int, channels: int, size: int, kernel_sizes, dtype: torch.dtype, device,
                   channels_last: bool = False) -> Tuple[tuple, List[torch.Tensor]]:
    """``(args, leaves)`` at a model shape: FocalNet slices ``ctx`` and the gates out of one projection's output."""
    C, L = channels, len(kernel_sizes)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    f = torch.randn(batch, 2 * C + L + 1, size, size, device=device, dtype=dtype).contiguous(memory_format=fmt)
    ctx, gates = f[:, C:2 * C].detach().requires_grad_(), f[:, 2 * C:].detach().requires_grad_()
    kernels = [(torch.randn(C, 1, k, k, device=device) / k).requires_grad_() for k in kernel_sizes]
    return (ctx, gates, kernels, False), [ctx, gates, *kernels]
