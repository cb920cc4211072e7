"""Triton kernels of :func:`modzoo.kernels.dwconv_gelu`: the depthwise convolution with fused bias + GELU
(EfficientMod's context conv) and its backward.

Pass plan: the forward is one launch of the shared depthwise conv (:func:`~._triton_utils.depthwise_conv`); the
backward two, ``dz`` (recomputing the conv) with the weight and bias partial sums, then the transposed conv of
``dz`` for ``dx`` (the shared conv with the kernel flipped: it needs ``dz`` on a halo, i.e. from neighbouring
tiles)."""
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ._layout import empty_nchw, next_pow2, strides
from ._triton_utils import (
    CONV_BWD_CANDIDATES, DWCONV_FWD, TunedKernel, on_tensor_device, TilePlan, conv_sizes, depthwise_conv,
    dw_weight_grad_rows, finish_weight_grad, gelu_grad, item_strips, recompute_strips, reduction_programs,
    strip_weights, sum_weight_partials, tap_major, weight_grad_sums,
)


@triton.jit
def _dwconv_gelu_bwd_kernel(
        x_ptr, w_ptr, b_ptr, dy_ptr, dz_ptr, dwp_ptr, dbp_ptr,
        C, H, W, n_batch, n_split,
        sx_b, sx_c, sx_h, sx_w: tl.constexpr,
        sd_b, sd_c, sd_h, sd_w,
        sz_b, sz_c, sz_h, sz_w,
        K: tl.constexpr, KK: tl.constexpr, HAS_BIAS: tl.constexpr,
        BLOCK_C: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, SW: tl.constexpr,
):
    """Per tile, ``SW`` pixels of one row per lane and channel: recompute ``z = conv(x) + b``
    (:func:`dw_conv_strips`, ``w`` tap-major), write ``dz = dy * GELU'(z)``, and accumulate the bias gradient and
    (k <= 9) the weight gradient of the channel block in registers over the items (batch x tile) this program
    visits, reduced across lanes once at the end. Larger kernels read ``dz`` back in a :func:`weight_grad_pass`.
    Roofline: 3 tensors of bytes (x, dy, dz) against 2 k^2 FMAs per element (conv recompute + weight gradient):
    FMA-bound from k = 5 in bf16 on H100/H200."""
    BLOCK_Q: tl.constexpr = TH * (TW // SW)
    n_tw = tl.cdiv(W, TW)
    n_tiles = tl.cdiv(H, TH) * n_tw
    n_items = n_batch * n_tiles
    offs_c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    pid_s = tl.program_id(1)
    acc_b = tl.zeros([BLOCK_C, BLOCK_Q], dtype=tl.float32)  # reduced along the pixels once, at the end
    dws = weight_grad_sums(K, BLOCK_C, BLOCK_Q)
    weights = strip_weights(w_ptr, C, offs_c, mask_c, K)
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[:, None]
    # a while loop: a for-range bound built from kernel arguments fails under Triton 3.6's interpreter
    item = pid_s - n_split
    while item + n_split < n_items:
        item += n_split
        b, oh, ow = item_strips(item, n_tiles, n_tw, TH, TW, SW)
        x_b = x_ptr + b * sx_b
        zs, xs = recompute_strips(src_ptr=x_b, w_ptr=w_ptr, w_stride=C, weights=weights, offs_c=offs_c,
                                  mask_c=mask_c, oh=oh, ow=ow, H=H, W=W, s_c=sx_c, s_h=sx_h, s_w=sx_w,
                                  K=K, SW=SW, BLOCK_C=BLOCK_C, BLOCK_Q=BLOCK_Q)
        dy_tile = dy_ptr + b * sd_b + offs_c[:, None] * sd_c + (oh * sd_h + ow * sd_w)[None, :]
        dz_tile = dz_ptr + b * sz_b + offs_c[:, None] * sz_c + (oh * sz_h + ow * sz_w)[None, :]
        dzs = ()
        for s in tl.static_range(SW):
            mask = mask_c[:, None] & ((oh < H) & (ow + s < W))[None, :]
            z = zs[s]
            if HAS_BIAS:
                z += bias
            dy = tl.load(dy_tile + s * sd_w, mask=mask, other=0.0).to(tl.float32)
            dz = tl.where(mask, dy * gelu_grad(z), 0.0)
            tl.store(dz_tile + s * sz_w, dz.to(dz_ptr.dtype.element_ty), mask=mask)
            acc_b += dz
            dzs = dzs + (dz,)
        dws = dw_weight_grad_rows(dws, xs, dzs, K=K, SW=SW)
    tl.store(dbp_ptr + pid_s * C + offs_c, tl.sum(acc_b, axis=1), mask=mask_c)
    finish_weight_grad(dwp_ptr=dwp_ptr, dws=dws, src_ptr=x_ptr, g_ptr=dz_ptr, offs_c=offs_c, mask_c=mask_c, C=C,
                       pid_s=pid_s, n_split=n_split, n_items=n_items, n_tiles=n_tiles, n_tw=n_tw, H=H, W=W,
                       ss_b=sx_b, ss_c=sx_c, ss_h=sx_h, ss_w=sx_w, sg_b=sz_b, sg_c=sz_c, sg_h=sz_h, sg_w=sz_w,
                       K=K, KK=KK, BLOCK_C=BLOCK_C, TH=TH, TW=TW, G_WRITTEN=True)


DWCONV_BWD = TunedKernel('dwconv_bwd', _dwconv_gelu_bwd_kernel, CONV_BWD_CANDIDATES,
                         key=['C', 'H', 'W', 'sx_c'], layout_arg='sx_c', size_args=conv_sizes())


def dwconv_gelu_fwd(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    return depthwise_conv(x, weight, bias, apply_gelu=True)


@on_tensor_device
def dwconv_gelu_bwd(
        grad: torch.Tensor,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``GELU(dwconv(x) + b)``: two passes, ``dz`` (recomputing the conv) + weight/bias partial sums,
    then the transposed conv of ``dz`` for ``dx`` (it needs ``dz`` on a halo, i.e. from neighbouring tiles)."""
    plan = TilePlan(x, elems=512)
    C = plan.C
    K = weight.shape[-1]
    KK = next_pow2(K * K)
    w = tap_major(weight)
    dz = empty_nchw(x)
    n_split = reduction_programs(x.device, plan.n_items, plan.n_cblocks)
    dw_part = torch.empty((n_split, C, KK), dtype=torch.float32, device=x.device)
    db_part = torch.empty((n_split, C), dtype=torch.float32, device=x.device)
    DWCONV_BWD[plan.split_grid(n_split)](
        x, w, bias if bias is not None else w, grad, dz, dw_part, db_part,
        C, plan.H, plan.W, plan.B, n_split,
        *strides(x), *strides(grad), *strides(dz),
        K=K, KK=KK, HAS_BIAS=bias is not None, **plan.strip_meta(rows=False),
    )
    dx = depthwise_conv(dz, weight, flip=True, out_dtype=x.dtype)
    dweight = sum_weight_partials(dw_part, weight)
    dbias = db_part.sum(0).to((bias if bias is not None else weight).dtype)
    return dx, dweight, dbias


# every tuned kernel one forward and backward call launches, in launch order
TUNED_KERNELS = (DWCONV_FWD, DWCONV_BWD)


def forward_backward(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
    """Every launch of one forward and backward call (the static report records them on meta tensors)."""
    y = dwconv_gelu_fwd(x, weight, bias)
    dwconv_gelu_bwd(torch.empty_like(y), x, weight, bias)
