"""FLOP counting with fvcore, including the attention fvcore does not see.

fvcore counts one fused multiply-add as one flop (i.e. MACs, the convention of the papers' "FLOPs"), ignores
element-wise ops on purpose, and has no handle for ``aten::scaled_dot_product_attention``: without one, every
SDPA call counts zero and attention models look cheaper than they are. :func:`sdpa_flop_jit` is that handle and
:func:`count_flops` registers it.
"""
import warnings
from typing import Any, Dict, List, Sequence, Tuple, Union

import torch
import torch.nn as nn

__all__ = ['sdpa_flop_jit', 'FLOP_HANDLES', 'flop_count_analysis', 'count_flops']


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: the MACs of ``q @ k^T`` and ``attn @ v``.

    ``q`` is ``(*batch, L, E)``, ``k`` ``(*, S, E)``, ``v`` ``(*, S, Ev)``; the count is ``B * L * S * (E + Ev)``
    with ``B`` the product of the query's batch/head dims (with grouped-query attention every query head still
    does its own products). Softmax, scaling and masking are element-wise and not counted, as elsewhere in fvcore.
    """
    from fvcore.nn.jit_handles import get_shape
    q_shape, k_shape, v_shape = (get_shape(v) for v in inputs[:3])
    *batch, length, dim = q_shape
    source_length, value_dim = k_shape[-2], v_shape[-1]
    if k_shape[-1] != dim or v_shape[-2] != source_length:
        raise ValueError(f'unexpected SDPA shapes q={q_shape} k={k_shape} v={v_shape}')
    num = 1
    for b in batch:
        num *= b
    return num * length * source_length * (dim + value_dim)


# op name -> handle; pass to FlopCountAnalysis.set_op_handle(**FLOP_HANDLES) when counting yourself
FLOP_HANDLES: Dict[str, Any] = {
    'aten::scaled_dot_product_attention': sdpa_flop_jit,
}


def flop_count_analysis() -> type:
    """fvcore's ``FlopCountAnalysis`` class, for :func:`count_flops` and ``modzoo.mm.flops`` alike."""
    with warnings.catch_warnings():
        # fvcore.nn scripts its focal loss at import, and recent torch warns that torch.jit.script is deprecated:
        # fvcore's call, not ours, printed in every job that counts FLOPs (a 3.14 "not supported" warning still shows)
        warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)
        from fvcore.nn import FlopCountAnalysis
    return FlopCountAnalysis


def count_flops(model: nn.Module, input_size: Union[int, Sequence[int]] = (3, 224, 224)) -> Tuple[float, int]:
    """Count ``(GFLOPs, params)`` of ``model`` for one image with fvcore (+ :data:`FLOP_HANDLES`).

    Args:
        model: the network; counted in eval mode on its own device and dtype (its mode is restored afterwards).
        input_size: ``(C, H, W)``, ``(H, W)`` (3 channels) or an int (square, 3 channels).

    Returns:
        GFLOPs as fvcore counts them (multiply-accumulates, element-wise ops excluded) and the parameter count.
    """
    if isinstance(input_size, int):
        input_size = (3, input_size, input_size)
    input_size = tuple(int(s) for s in input_size)
    if len(input_size) == 2:
        input_size = (3,) + input_size
    if len(input_size) != 3:
        raise ValueError(f'input_size must be (C, H, W), (H, W) or an int, got {input_size}')
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device('cpu')
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.randn((1,) + input_size, device=device, dtype=dtype)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = flop_count_analysis()(model, x).set_op_handle(**FLOP_HANDLES)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = analysis.total()
    finally:
        model.train(was_training)
    return total / 1e9, sum(p.numel() for p in model.parameters())
