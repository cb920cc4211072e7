"""FocalNet focal context: public op, ``torch.library`` registration and dispatch.

``torch.ops.modzoo.focal_context`` (Triton forward, returns ``(ctx_all, mean)``) and
``torch.ops.modzoo.focal_context_backward`` are custom ops with fake implementations and an autograd formula, so
``torch.compile`` traces them as single nodes (no graph break) and AOTAutograd sees the Triton backward.
"""
from typing import List, Tuple

import torch

from ._layout import empty_nchw
from .dispatch import check_depthwise_weight, conv_shape_reason, in_export_or_trace, select_backend
from .reference import focal_context_reference

__all__ = ['focal_context']

def _check_args(ctx: torch.Tensor, gates: torch.Tensor, kernels: List[torch.Tensor]) -> None:
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


def _use_triton(ctx: torch.Tensor, gates: torch.Tensor, kernels: List[torch.Tensor]) -> bool:
    if in_export_or_trace():  # exporters and tracers record the reference (and no shape checks)
        return False
    _check_args(ctx, gates, kernels)
    return select_backend('focal_context', [ctx, gates] + list(kernels),
                          lambda: conv_shape_reason(ctx, 'ctx', kernels)) == 'triton'


@torch.library.custom_op('modzoo::focal_context', mutates_args=())
def _focal_context_op(ctx: torch.Tensor, gates: torch.Tensor, kernels: List[torch.Tensor], normalize: bool
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    from ._focal_triton import focal_context_fwd
    return focal_context_fwd(ctx, gates, kernels, normalize)


@_focal_context_op.register_fake
def _(ctx, gates, kernels, normalize):
    return empty_nchw(ctx), ctx.new_empty((ctx.shape[0], ctx.shape[1]), dtype=torch.float32)


@torch.library.custom_op('modzoo::focal_context_backward', mutates_args=())
def _focal_context_backward_op(
        grad: torch.Tensor, ctx: torch.Tensor, gates: torch.Tensor, kernels: List[torch.Tensor], mean: torch.Tensor,
        normalize: bool) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
    from ._focal_triton import focal_context_bwd
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
        if _use_triton(ctx, gates, kernels):
            return torch.ops.modzoo.focal_context(ctx, gates, kernels, normalize)[0]
    return focal_context_reference(ctx, gates, kernels, normalize)
