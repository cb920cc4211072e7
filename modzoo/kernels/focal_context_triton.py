"""Triton kernels for FocalNet's focal context (forward and backward).

Forward, with ``c_0 = ctx``, ``c_l = GELU(dw_l(c_{l-1}))``, gates ``g_l = gates[:, l-1]``, global gate
``g_G = gates[:, L]`` and ``s = 1 / (L + 1)`` when normalising (else 1)::

    out = s * (sum_l g_l * c_l + g_G * GELU(mean_HW(c_L)))

Pass plan (``L`` levels, ``N`` = elements of ctx; eager PyTorch moves about ``7N`` per level plus the global term):

* levels ``1 .. L-1``: one pass each computing ``c_l`` tile by tile (halo reads of ``c_{l-1}`` from the neighbouring
  tiles' memory) and, from the centre tap it already loads, the running gated sum of the levels before it;
* level ``L`` is never stored: a reduction pass computes the per-tile channel sums of ``c_L`` (for the global mean),
  and the final pass recomputes ``c_L`` and writes ``out`` with every term, the global level and ``s`` fused in.

So ``L = 2`` moves about ``5N`` in four launches, ``L = 3`` about ``9N``. A single pass over all levels would need
``c_l`` on a halo of neighbouring *computed* values, i.e. a block-wide scratch exchange between levels (Triton has
no explicit shared memory; a global-memory scratch round trip costs as much as the stored level), and the global
mean needs all of ``c_L`` before any output pixel is final; the plan above is the fusion the data allows.

Backward saves only ``ctx``, ``gates``, the kernels and the ``(B, C)`` mean (no level is stored between forward
and backward): it recomputes ``c_1 .. c_{L-1}``, then walks the levels from ``L`` down to 1. The pass for level
``l`` recomputes ``z_l = dw_l(c_{l-1})`` on its tile, gathers ``dc_l = s * dout * g_l`` plus the transposed conv of
``dz_{l+1}`` (or, at ``l = L``, the global-mean term), writes ``dz_l = dc_l * GELU'(z_l)``, adds its gate gradient;
then its weight-gradient pass reads ``dz_l`` back against ``c_{l-1}``. A last transposed conv of ``dz_1`` gives
``dctx``.
"""
from typing import List, Tuple

import torch
import triton
import triton.language as tl

from ._layout import empty_nchw, next_pow2, strides
from ._triton_utils import (
    CONV_FWD_CANDIDATES, DWCONV_FWD, WARPS_CANDIDATES, TunedKernel, on_tensor_device, TilePlan, conv_sizes,
    depthwise_conv, dw_conv_strips, dw_weight_grad_rows, finish_weight_grad, gelu, gelu_grad, item_strips,
    recompute_strips, reduction_programs, strip_coords, strip_weights, sum_weight_partials, tap_major, tile_coords,
    weight_grad_sums,
)

_MODE_LEVEL, _MODE_MEAN, _MODE_FINAL = 0, 1, 2


@triton.jit
def _focal_fwd_kernel(
        src_ptr, w_ptr, gates_ptr, pin_ptr, c_ptr, pout_ptr, part_ptr, mean_ptr, out_ptr,
        C, H, W, level, scale,
        ss_b, ss_c, ss_h, ss_w: tl.constexpr,
        sg_b, sg_l, sg_h, sg_w,
        sb_b, sb_c, sb_h, sb_w,
        K: tl.constexpr, MODE: tl.constexpr, WRITE_P: tl.constexpr, HAS_PIN: tl.constexpr, HAS_PREV: tl.constexpr,
        BLOCK_C: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
):
    """One pass over level ``level`` (1-based), computing ``c = GELU(dw(src))`` with ``src = c_{level-1}``, ``SH x SW``
    pixels per lane and channel (:func:`dw_conv_strips`; ``w`` tap-major).

    MODE 0: store ``c``; with WRITE_P also store ``P_{level-1} = P_{level-2} + g_{level-1} * src``.
    MODE 1: store the per-tile channel sums of ``c`` to ``part[b, tile, c]``.
    MODE 2 (last level): store ``out = s * (P_{L-2} + g_{L-1} * src + g_L * c + g_G * GELU(mean))``.
    ``pin``/``pout``/``c``/``out`` share the buffer strides ``sb_*``. Roofline: 2-4 tensors of bytes per pass
    against k^2 FMAs per element; memory-bound for FocalNet's k = 3/5, FMA-bound from k = 7 in bf16.
    """
    BLOCK_Q: tl.constexpr = (TH // SH) * (TW // SW)
    n_tw = tl.cdiv(W, TW)
    n_tiles = tl.cdiv(H, TH) * n_tw
    pid = tl.program_id(0)
    t = pid % n_tiles
    b = (pid // n_tiles).to(tl.int64)
    oh, ow = strip_coords(t, n_tw, TH, TW, SH, SW)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C

    src_b = src_ptr + b * ss_b
    accs = dw_conv_strips(src_ptr=src_b, w_ptr=w_ptr, w_stride=C, offs_c=offs_c, mask_c=mask_c, oh=oh, ow=ow,
                          H=H, W=W, s_c=ss_c, s_h=ss_h, s_w=ss_w,
                          K=K, FLIP=False, SH=SH, SW=SW, BLOCK_C=BLOCK_C, BLOCK_Q=BLOCK_Q)
    buf = b * sb_b + offs_c[:, None] * sb_c + (oh * sb_h + ow * sb_w)[None, :]
    src_tile = src_b + offs_c[:, None] * ss_c + (oh * ss_h + ow * ss_w)[None, :]
    gate_b = gates_ptr + b * sg_b + oh * sg_h + ow * sg_w
    if MODE == 2:
        glob = gelu(tl.load(mean_ptr + b * C + offs_c, mask=mask_c, other=0.0))[:, None]
    if MODE == 1:
        total = tl.zeros([BLOCK_C, BLOCK_Q], dtype=tl.float32)
    for r in tl.static_range(SH):
        for s in tl.static_range(SW):
            c = gelu(accs[r * SW + s])
            mask_p = (oh + r < H) & (ow + s < W)
            mask = mask_c[:, None] & mask_p[None, :]
            at = r * sb_h + s * sb_w
            if MODE == 1:
                total += tl.where(mask, c, 0.0)
            else:
                if MODE == 0:
                    tl.store(c_ptr + buf + at, c.to(c_ptr.dtype.element_ty), mask=mask)
                if WRITE_P or MODE == 2:
                    gate_p = gate_b + (r * sg_h + s * sg_w)
                    acc = tl.zeros_like(c)
                    if HAS_PIN:
                        acc += tl.load(pin_ptr + buf + at, mask=mask, other=0.0).to(tl.float32)
                    if HAS_PREV:
                        centre = tl.load(src_tile + (r * ss_h + s * ss_w), mask=mask, other=0.0).to(tl.float32)
                        g_prev = tl.load(gate_p + (level - 2) * sg_l, mask=mask_p, other=0.0).to(tl.float32)
                        acc += centre * g_prev[None, :]
                    if MODE == 0:
                        tl.store(pout_ptr + buf + at, acc.to(pout_ptr.dtype.element_ty), mask=mask)
                    else:
                        g_last = tl.load(gate_p + (level - 1) * sg_l, mask=mask_p, other=0.0).to(tl.float32)
                        g_glob = tl.load(gate_p + level * sg_l, mask=mask_p, other=0.0).to(tl.float32)
                        acc += c * g_last[None, :] + glob * g_glob[None, :]
                        tl.store(out_ptr + buf + at, (acc * scale).to(out_ptr.dtype.element_ty), mask=mask)
    if MODE == 1:
        tl.store(part_ptr + (b * n_tiles + t) * C + offs_c, tl.sum(total, axis=1), mask=mask_c)


@triton.jit
def _focal_bwd_global_kernel(
        dout_ptr, gates_ptr, mean_ptr, part_ptr, dgates_ptr,
        C, H, W, n_batch, num_levels, scale,
        sd_b, sd_c, sd_h, sd_w,
        sg_b, sg_l, sg_h, sg_w,
        BLOCK_C: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr,
):
    """Global level: per-tile ``sum_p dout * g_G`` (for d mean) and the channel block's part of
    ``dgates[:, L] = s * sum_c dout * GELU(mean)``. Roofline: memory (one read of ``dout``)."""
    n_tw = tl.cdiv(W, TW)
    n_tiles = tl.cdiv(H, TH) * n_tw
    pid = tl.program_id(0)
    t = pid % n_tiles
    b = (pid // n_tiles).to(tl.int64)
    oh, ow, mask_p = tile_coords(t, n_tw, H, W, TH, TW)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    mask = mask_c[:, None] & mask_p[None, :]
    dout = tl.load(dout_ptr + b * sd_b + offs_c[:, None] * sd_c + (oh * sd_h + ow * sd_w)[None, :],
                   mask=mask, other=0.0).to(tl.float32)
    g_glob = tl.load(gates_ptr + b * sg_b + num_levels * sg_l + oh * sg_h + ow * sg_w,
                     mask=mask_p, other=0.0).to(tl.float32)
    tl.store(part_ptr + (b * n_tiles + t) * C + offs_c, tl.sum(dout * g_glob[None, :], axis=1), mask=mask_c)
    glob = gelu(tl.load(mean_ptr + b * C + offs_c, mask=mask_c, other=0.0))
    dg = tl.sum(dout * glob[:, None], axis=0) * scale
    # dgates_ptr: dense (n_cblocks, B, H, W) float32 partials, one slice per channel block (no atomics: the gate
    # gradient is the same bit for bit on every run)
    cb = tl.program_id(1).to(tl.int64)
    tl.store(dgates_ptr + (cb * n_batch + b) * H * W + oh * W + ow, dg, mask=mask_p)


@triton.jit
def _focal_bwd_level_kernel(
        src_ptr, w_ptr, wn_ptr, gates_ptr, dout_ptr, dzn_ptr, dmean_ptr, dz_ptr, dgates_ptr, dwp_ptr,
        C, H, W, n_split, n_batch, level, num_levels, scale,
        ss_b, ss_c, ss_h, ss_w: tl.constexpr,
        sg_b, sg_l, sg_h, sg_w,
        sd_b, sd_c, sd_h, sd_w,
        sz_b, sz_c, sz_h, sz_w: tl.constexpr,
        K: tl.constexpr, KN: tl.constexpr, KK: tl.constexpr, IS_LAST: tl.constexpr,
        BLOCK_C: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, SW: tl.constexpr,
):
    """Backward of level ``level`` over the items (batch x tile) of this program, ``SW`` pixels of one row per lane
    and channel (:func:`dw_conv_strips`, ``w``/``wn`` tap-major); see the module docstring.

    ``dzn``/``dz`` (``dz_{l+1}`` read on a halo, ``dz_l`` written) share the strides ``sz_*``; ``dmean`` is the
    ``(B, C)`` float32 gradient reaching every pixel of ``c_L`` from the global level. ``dgates`` gets one
    ``(B, L, H, W)`` slice of partial gate gradients per channel block (each pixel written by one program). The
    weight gradient (k <= 9) is summed per lane in registers and reduced once at the end; larger kernels read
    ``dz`` back in a :func:`weight_grad_pass`.
    Roofline: 4-5 tensors of bytes against 2 k^2 + k_next^2 FMAs per element: FMA-bound from k = 5 in bf16.
    """
    BLOCK_Q: tl.constexpr = TH * (TW // SW)
    n_tw = tl.cdiv(W, TW)
    n_tiles = tl.cdiv(H, TH) * n_tw
    n_items = n_batch * n_tiles
    offs_c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    pid_s = tl.program_id(1)
    dg_blk = dgates_ptr + tl.program_id(0).to(tl.int64) * n_batch * num_levels * H * W
    dws = weight_grad_sums(K, BLOCK_C, BLOCK_Q)
    weights = strip_weights(w_ptr, C, offs_c, mask_c, K)
    # a while loop: a for-range bound built from kernel arguments fails under Triton 3.6's interpreter
    item = pid_s - n_split
    while item + n_split < n_items:
        item += n_split
        b, oh, ow = item_strips(item, n_tiles, n_tw, TH, TW, SW)
        src_b = src_ptr + b * ss_b
        zs, xs = recompute_strips(src_ptr=src_b, w_ptr=w_ptr, w_stride=C, weights=weights, offs_c=offs_c,
                                  mask_c=mask_c, oh=oh, ow=ow, H=H, W=W, s_c=ss_c, s_h=ss_h, s_w=ss_w,
                                  K=K, SW=SW, BLOCK_C=BLOCK_C, BLOCK_Q=BLOCK_Q)
        if IS_LAST:
            dmean = tl.load(dmean_ptr + b * C + offs_c, mask=mask_c, other=0.0)[:, None]
        else:
            dcs = dw_conv_strips(src_ptr=dzn_ptr + b * sz_b, w_ptr=wn_ptr, w_stride=C, offs_c=offs_c, mask_c=mask_c,
                                 oh=oh, ow=ow, H=H, W=W, s_c=sz_c, s_h=sz_h, s_w=sz_w,
                                 K=KN, FLIP=True, SH=1, SW=SW, BLOCK_C=BLOCK_C, BLOCK_Q=BLOCK_Q)
        dout_tile = dout_ptr + b * sd_b + offs_c[:, None] * sd_c + (oh * sd_h + ow * sd_w)[None, :]
        dz_tile = dz_ptr + b * sz_b + offs_c[:, None] * sz_c + (oh * sz_h + ow * sz_w)[None, :]
        gate_row = gates_ptr + b * sg_b + (level - 1) * sg_l + oh * sg_h + ow * sg_w
        dg_row = dg_blk + (b * num_levels + level - 1) * H * W + oh * W + ow
        dzs = ()
        for s in tl.static_range(SW):
            mask_p = (oh < H) & (ow + s < W)
            mask = mask_c[:, None] & mask_p[None, :]
            z = zs[s]
            c = gelu(z)
            dout = tl.load(dout_tile + s * sd_w, mask=mask, other=0.0).to(tl.float32)
            gate = tl.load(gate_row + s * sg_w, mask=mask_p, other=0.0).to(tl.float32)
            dc = dout * (gate[None, :] * scale)
            if IS_LAST:
                dc += dmean
            else:
                dc += dcs[s]
            dz = tl.where(mask, dc * gelu_grad(z), 0.0)
            tl.store(dz_tile + s * sz_w, dz.to(dz_ptr.dtype.element_ty), mask=mask)
            tl.store(dg_row + s, tl.sum(dout * c, axis=0) * scale, mask=mask_p)
            dzs = dzs + (dz,)
        dws = dw_weight_grad_rows(dws, xs, dzs, K=K, SW=SW)
    finish_weight_grad(dwp_ptr=dwp_ptr, dws=dws, src_ptr=src_ptr, g_ptr=dz_ptr, offs_c=offs_c, mask_c=mask_c, C=C,
                       pid_s=pid_s, n_split=n_split, n_items=n_items, n_tiles=n_tiles, n_tw=n_tw, H=H, W=W,
                       ss_b=ss_b, ss_c=ss_c, ss_h=ss_h, ss_w=ss_w, sg_b=sz_b, sg_c=sz_c, sg_h=sz_h, sg_w=sz_w,
                       K=K, KK=KK, BLOCK_C=BLOCK_C, TH=TH, TW=TW, G_WRITTEN=True)


FOCAL_FWD_KEY = ['C', 'H', 'W', 'ss_c']
FOCAL_FWD = TunedKernel('focal_fwd', _focal_fwd_kernel, CONV_FWD_CANDIDATES, key=FOCAL_FWD_KEY,
                        layout_arg='ss_c', size_args=conv_sizes())
# the mean pass keeps the plan's tile and one-row strips: 128-256 strip-channels, so 8 warps would only duplicate
# lanes, and 2 spill (sm_90 compile check)
MEAN_WARPS_CANDIDATES = {'any': [dict(num_warps=4)]}
FOCAL_MEAN = TunedKernel('focal_mean', _focal_fwd_kernel, MEAN_WARPS_CANDIDATES, key=FOCAL_FWD_KEY)
FOCAL_BWD_GLOBAL = TunedKernel('focal_bwd_global', _focal_bwd_global_kernel, WARPS_CANDIDATES,
                               key=['C', 'H', 'W', 'sd_c'])
# the per channel block gate-gradient partials fix BLOCK_C to the plan's (8 NCHW, 32 channels-last channels at
# most); the tile, strip and warps are tuned, one strip per lane and channel as for CONV_BWD_CANDIDATES
_TILE_STRIP = ('TH', 'TW', 'SW', 'num_warps')
FOCAL_BWD_LEVEL_CANDIDATES = {
    'nchw': [dict(zip(_TILE_STRIP, c, strict=True)) for c in ((8, 16, 8, 4), (4, 32, 8, 4), (8, 8, 8, 2))],
    'nhwc': [dict(zip(_TILE_STRIP, c, strict=True)) for c in ((4, 4, 4, 4), (2, 8, 4, 4), (8, 8, 8, 8))],
}
FOCAL_BWD_LEVEL = TunedKernel('focal_bwd_level', _focal_bwd_level_kernel, FOCAL_BWD_LEVEL_CANDIDATES,
                              key=['C', 'H', 'W', 'ss_c'], layout_arg='ss_c', size_args=conv_sizes())


def _fwd_pass(plan: TilePlan, mode: int, src, weight, gates, level: int, *, pin=None, c_out=None, pout=None,
              part=None, mean=None, out=None, scale: float = 1.0, has_prev: bool = False):
    w = tap_major(weight)
    buf = next(t for t in (c_out, pout, out, pin, src) if t is not None)
    dummy = w
    kernel = FOCAL_MEAN if mode == _MODE_MEAN else FOCAL_FWD  # the mean pass's partials follow the plan's tiles
    kernel[plan.tiles_grid()](
        src, w, gates,
        pin if pin is not None else dummy, c_out if c_out is not None else dummy,
        pout if pout is not None else dummy, part if part is not None else dummy,
        mean if mean is not None else dummy, out if out is not None else dummy,
        plan.C, plan.H, plan.W, level, scale,
        *strides(src), *strides(gates), *strides(buf),
        K=weight.shape[-1], MODE=mode, WRITE_P=pout is not None, HAS_PIN=pin is not None, HAS_PREV=has_prev,
        **plan.strip_meta(),
    )


def _levels(plan: TilePlan, ctx: torch.Tensor, gates: torch.Tensor, kernels: List[torch.Tensor], with_partial: bool):
    """Run levels 1 .. L-1. Returns ``(c_{L-1}, P_{L-2})`` when ``with_partial``, else the list ``[c_0 .. c_{L-1}]``."""
    cs = [ctx]
    partial = None
    for level in range(1, len(kernels)):
        c_out = empty_nchw(ctx)
        pout = empty_nchw(ctx) if with_partial and level >= 2 else None
        _fwd_pass(plan, _MODE_LEVEL, cs[-1], kernels[level - 1], gates, level, pin=partial, c_out=c_out,
                  pout=pout, has_prev=pout is not None)
        if with_partial:
            partial = pout
            cs = [c_out]  # the forward only needs the latest level
        else:
            cs.append(c_out)
    return (cs[-1], partial) if with_partial else cs


@on_tensor_device
def focal_context_fwd(ctx: torch.Tensor, gates: torch.Tensor, kernels: List[torch.Tensor], normalize: bool
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(ctx_all, mean)``; ``mean`` is the float32 ``(B, C)`` spatial mean of ``c_L`` (saved for backward)."""
    plan = TilePlan(ctx)  # shared by the passes of one call (the backward level passes get their own)
    L = len(kernels)
    src, partial = _levels(plan, ctx, gates, kernels, with_partial=True)
    part = torch.empty((plan.B, plan.n_tiles, plan.C), dtype=torch.float32, device=ctx.device)
    _fwd_pass(plan, _MODE_MEAN, src, kernels[-1], gates, L, part=part)
    mean = part.sum(1) / (plan.H * plan.W)
    out = empty_nchw(ctx)
    _fwd_pass(plan, _MODE_FINAL, src, kernels[-1], gates, L, pin=partial, mean=mean, out=out,
              scale=1.0 / (L + 1) if normalize else 1.0, has_prev=L >= 2)
    return out, mean


def _gelu_grad_torch(x: torch.Tensor) -> torch.Tensor:
    cdf = 0.5 * (1.0 + torch.erf(x * 0.7071067811865476))
    return cdf + x * torch.exp(-0.5 * x * x) * 0.3989422804014327


@on_tensor_device
def focal_context_bwd(grad: torch.Tensor, ctx: torch.Tensor, gates: torch.Tensor, kernels: List[torch.Tensor],
                      mean: torch.Tensor, normalize: bool) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
    plan = TilePlan(ctx)
    B, C, H, W = ctx.shape
    L = len(kernels)
    scale = 1.0 / (L + 1) if normalize else 1.0
    cs = _levels(plan, ctx, gates, kernels, with_partial=False)

    # per channel block partial gate gradients, summed below (deterministic); every element is written
    dgates_global = torch.empty((plan.n_cblocks, B, 1, H, W), dtype=torch.float32, device=ctx.device)
    part = torch.empty((B, plan.n_tiles, C), dtype=torch.float32, device=ctx.device)
    FOCAL_BWD_GLOBAL[plan.grid](
        grad, gates, mean, part, dgates_global,
        C, H, W, B, L, scale,
        *strides(grad), *strides(gates), **plan.meta(),
    )
    dmean = (part.sum(1) * scale * _gelu_grad_torch(mean) / (H * W)).contiguous()

    plan = TilePlan(ctx, elems=512)
    n_split = reduction_programs(ctx.device, plan.n_items, plan.n_cblocks)
    dgates_levels = torch.empty((plan.n_cblocks, B, L, H, W), dtype=torch.float32, device=ctx.device)
    dkernels: List[torch.Tensor] = [torch.empty(0)] * L
    dz_next = None
    for level in range(L, 0, -1):
        weight = kernels[level - 1]
        K = weight.shape[-1]
        KK = next_pow2(K * K)
        w = tap_major(weight)
        wn = tap_major(kernels[level]) if level < L else w
        src = cs[level - 1]
        dz = empty_nchw(ctx)
        dw_part = torch.empty((n_split, C, KK), dtype=torch.float32, device=ctx.device)
        FOCAL_BWD_LEVEL[(plan.n_cblocks, n_split)](
            src, w, wn, gates, grad, dz_next if dz_next is not None else dz, dmean, dz, dgates_levels, dw_part,
            C, H, W, n_split, B, level, L, scale,
            *strides(src), *strides(gates), *strides(grad), *strides(dz),
            K=K, KN=kernels[level].shape[-1] if level < L else 1, KK=KK, IS_LAST=level == L,
            **plan.strip_meta(rows=False),
        )
        dkernels[level - 1] = sum_weight_partials(dw_part, weight)
        dz_next = dz
        cs[level - 1] = None  # c_{l-1} is done: the pass of level l-1 reads c_{l-2} and dz_l
    dctx = depthwise_conv(dz_next, kernels[0], flip=True, out_dtype=ctx.dtype)
    dgates = torch.cat([dgates_levels.sum(0), dgates_global.sum(0)], dim=1)
    return dctx, dgates.to(gates.dtype), dkernels


# every tuned kernel one forward and backward call launches, in launch order (the last dwconv is dctx's)
TUNED_KERNELS = (FOCAL_FWD, FOCAL_MEAN, FOCAL_BWD_GLOBAL, FOCAL_BWD_LEVEL, DWCONV_FWD)


def forward_backward(ctx: torch.Tensor, gates: torch.Tensor, kernels: List[torch.Tensor], normalize: bool) -> None:
    """Every launch of one forward and backward call (the static report records them on meta tensors)."""
    out, mean = focal_context_fwd(ctx, gates, kernels, normalize)
    focal_context_bwd(torch.empty_like(out), ctx, gates, kernels, mean, normalize)
