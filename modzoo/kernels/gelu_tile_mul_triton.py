"""Triton kernels of :func:`modzoo.kernels.gelu_tile_mul`, EfficientMod's ``act(v) * tile(ctx)`` (channels-last).

``v`` is ``(M, r*C)`` and ``ctx`` ``(M, C)`` after flattening the leading dims; hidden channel ``j`` is multiplied by
``ctx[:, j mod C]``. A program owns a ``[BLOCK_M, BLOCK_C]`` block of ``ctx``, loads it once and walks the ``r``
repeats, so ``ctx`` is read once and the tile never exists in memory. The backward does the same walk, writing
``dv`` and summing ``dctx`` over the repeats in registers (no atomics): one launch each way.
"""
from typing import Tuple

import torch
import triton
import triton.language as tl

from ._layout import next_pow2
from ._triton_utils import INTERPRETED, TunedKernel, gelu, gelu_grad, on_tensor_device


@triton.jit
def _tile_mul_fwd_kernel(
        v_ptr, c_ptr, o_ptr, M, C, R: tl.constexpr,  # constexpr: the ratio loop unrolls
        sv_m, sv_k, sc_m, sc_k, so_m,
        APPLY_GELU: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Roofline: memory ((2r + 1) x ctx bytes; a GELU and a multiply per element)."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (rows < M)[:, None] & (cols < C)[None, :]
    rows = rows.to(tl.int64)
    ctx = tl.load(c_ptr + rows[:, None] * sc_m + cols[None, :] * sc_k, mask=mask, other=0.0).to(tl.float32)
    v_tile = v_ptr + rows[:, None] * sv_m + cols[None, :] * sv_k
    o_tile = o_ptr + rows[:, None] * so_m + cols[None, :]
    for r in range(R):
        v = tl.load(v_tile + r * C * sv_k, mask=mask, other=0.0).to(tl.float32)
        if APPLY_GELU:
            v = gelu(v)
        tl.store(o_tile + r * C, (v * ctx).to(o_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _tile_mul_bwd_kernel(
        v_ptr, c_ptr, do_ptr, dv_ptr, dc_ptr, M, C, R: tl.constexpr,
        sv_m, sv_k, sc_m, sc_k, sd_m, sd_k,
        APPLY_GELU: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Roofline: memory ((3r + 2) x ctx bytes)."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (rows < M)[:, None] & (cols < C)[None, :]
    rows = rows.to(tl.int64)
    ctx = tl.load(c_ptr + rows[:, None] * sc_m + cols[None, :] * sc_k, mask=mask, other=0.0).to(tl.float32)
    v_tile = v_ptr + rows[:, None] * sv_m + cols[None, :] * sv_k
    do_tile = do_ptr + rows[:, None] * sd_m + cols[None, :] * sd_k
    dv_tile = dv_ptr + rows[:, None] * (R * C) + cols[None, :]
    dctx = tl.zeros([BLOCK_M, BLOCK_C], dtype=tl.float32)
    for r in range(R):
        v = tl.load(v_tile + r * C * sv_k, mask=mask, other=0.0).to(tl.float32)
        do = tl.load(do_tile + r * C * sd_k, mask=mask, other=0.0).to(tl.float32)
        if APPLY_GELU:
            dv = do * ctx * gelu_grad(v)
            dctx += do * gelu(v)
        else:
            dv = do * ctx
            dctx += do * v
        tl.store(dv_tile + r * C, dv.to(dv_ptr.dtype.element_ty), mask=mask)
    tl.store(dc_ptr + rows[:, None] * C + cols[None, :], dctx.to(dc_ptr.dtype.element_ty), mask=mask)


# GPU candidates (BLOCK_M, BLOCK_C, num_warps): channel blocks along the contiguous dim, 8 elements per thread
TILE_MUL_CANDIDATES = {'any': [dict(BLOCK_M=m, BLOCK_C=c, num_warps=w)
                               for m, c, w in ((32, 32, 4), (8, 128, 4), (16, 64, 4), (16, 128, 8))]}
TILE_MUL_SIZES = dict(BLOCK_C=lambda a: a['C'], BLOCK_M=lambda a: a['M'])
TILE_MUL_FWD = TunedKernel('tile_mul_fwd', _tile_mul_fwd_kernel, TILE_MUL_CANDIDATES, key=['M', 'C', 'R'],
                           size_args=TILE_MUL_SIZES)
TILE_MUL_BWD = TunedKernel('tile_mul_bwd', _tile_mul_bwd_kernel, TILE_MUL_CANDIDATES, key=['M', 'C', 'R'],
                           size_args=TILE_MUL_SIZES)


def _grid(M: int, C: int):
    return lambda m: (triton.cdiv(M, m['BLOCK_M']), triton.cdiv(C, m['BLOCK_C']))


def _config(M: int, C: int):
    if INTERPRETED:
        return min(8, next_pow2(M)), min(4, next_pow2(C)), 1
    block_c = min(128, next_pow2(C))
    return max(1, min(next_pow2(M), 1024 // block_c)), block_c, 4


def _as_2d(t: torch.Tensor) -> torch.Tensor:
    # a view whenever the leading dims can be merged (always for the contiguous Linear outputs of the model)
    return t.reshape(-1, t.shape[-1])


@on_tensor_device
def gelu_tile_mul_fwd(v: torch.Tensor, ctx: torch.Tensor, apply_gelu: bool) -> torch.Tensor:
    C = ctx.shape[-1]
    R = v.shape[-1] // C
    v2, c2 = _as_2d(v), _as_2d(ctx)
    M = v2.shape[0]
    out = torch.empty(v.shape, dtype=torch.promote_types(v.dtype, ctx.dtype), device=v.device)
    block_m, block_c, num_warps = _config(M, C)
    TILE_MUL_FWD[_grid(M, C)](
        v2, c2, out, M, C, R, v2.stride(0), v2.stride(1), c2.stride(0), c2.stride(1), R * C,
        APPLY_GELU=apply_gelu, BLOCK_M=block_m, BLOCK_C=block_c, num_warps=num_warps,
    )
    return out


@on_tensor_device
def gelu_tile_mul_bwd(grad: torch.Tensor, v: torch.Tensor, ctx: torch.Tensor, apply_gelu: bool
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    C = ctx.shape[-1]
    R = v.shape[-1] // C
    v2, c2, g2 = _as_2d(v), _as_2d(ctx), _as_2d(grad)
    M = v2.shape[0]
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    dctx = torch.empty(ctx.shape, dtype=ctx.dtype, device=ctx.device)
    block_m, block_c, num_warps = _config(M, C)
    TILE_MUL_BWD[_grid(M, C)](
        v2, c2, g2, dv, dctx, M, C, R,
        v2.stride(0), v2.stride(1), c2.stride(0), c2.stride(1), g2.stride(0), g2.stride(1),
        APPLY_GELU=apply_gelu, BLOCK_M=block_m, BLOCK_C=block_c, num_warps=num_warps,
    )
    return dv, dctx


# every tuned kernel one forward and backward call launches, in launch order
TUNED_KERNELS = (TILE_MUL_FWD, TILE_MUL_BWD)


def forward_backward(v: torch.Tensor, ctx: torch.Tensor, apply_gelu: bool) -> None:
    """Every launch of one forward and backward call (the static report records them on meta tensors)."""
    out = gelu_tile_mul_fwd(v, ctx, apply_gelu)
    gelu_tile_mul_bwd(torch.empty_like(out), v, ctx, apply_gelu)
