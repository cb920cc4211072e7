"""Triton helpers shared by modzoo's kernels: exact GELU and its derivative, the depthwise conv of a lane's pixel
strips and its weight gradient, the row-at-a-time weight-gradient pass of large kernels, the tile configurations,
and the one depthwise-conv launch every conv op shares (:func:`depthwise_conv`: dwconv_gelu's forward, the
transposed conv of the input gradients). Op modules import from here and ``_layout``, never from each other.

Helpers with more than a few parameters are called with keywords (a swapped stride would still compile).

Conventions of every conv-like kernel here:
* a program works on one (batch, spatial tile) pair and a block of ``BLOCK_C`` channels; the tile is ``TH x TW``
  pixels. Conv kernels split it into ``SH x SW`` strips, one per lane and channel: a block is a tuple of
  ``SH * SW`` 2-D ``[BLOCK_C, BLOCK_Q]`` tensors (``BLOCK_Q`` strips), so every input a lane loads serves all the
  taps and outputs of its strip that need it (:func:`dw_conv_strips`);
* tensors are addressed through their four strides, so NCHW, channels-last, permuted views and channel slices are
  read in place; Triton specialises the unit stride, so channels-last loads are vectors along the channels. The
  column stride of every tensor a strip is read from is a ``tl.constexpr`` (one compile per channel count in
  channels-last memory), so the strip's column offsets are immediates of its loads instead of 64-bit adds;
* everything is computed in float32 right after the load (the interpreter cannot do bfloat16 arithmetic, and the
  GPU accumulates more accurately that way), and cast to the destination dtype on store;
* zero padding is a load mask, so halos at tile borders are read straight from the neighbouring tiles' memory.

Importing this module imports Triton; ``TRITON_INTERPRET=1`` must be set before that to run on CPU tensors.
"""
import contextlib
import functools
import inspect
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch
import triton
import triton.language as tl

from ._layout import empty_nchw, is_channels_last, next_pow2, strides

# Whether the kernels defined after this import run under the interpreter (fixed at decoration time).
INTERPRETED = bool(triton.knobs.runtime.interpret)

@triton.jit
def gelu(z):
    """Exact (erf) GELU, as ``torch.nn.functional.gelu`` with ``approximate='none'``."""
    return 0.5 * z * (1.0 + tl.math.erf(z * 0.7071067811865476))


@triton.jit
def gelu_grad(z):
    """d GELU / dz = Phi(z) + z * phi(z)."""
    cdf = 0.5 * (1.0 + tl.math.erf(z * 0.7071067811865476))
    pdf = tl.exp(-0.5 * z * z) * 0.3989422804014327
    return cdf + z * pdf


@triton.jit
def tile_coords(t, n_tw, H, W, TH: tl.constexpr, TW: tl.constexpr):
    """Pixel rows/cols of spatial tile ``t`` (row-major over ``n_tw`` tiles per row) and their in-image mask."""
    p = tl.arange(0, TH * TW)
    oh = (t // n_tw) * TH + p // TW
    ow = (t % n_tw) * TW + p % TW
    return oh, ow, (oh < H) & (ow < W)


@triton.constexpr_function
def _cache_weights(sh, k):
    """Whether the strip helper keeps all K x K weights in registers: only when a lane owns several rows (each
    weight is then used by every row) and the kernel is small enough to fit (k <= 9: at most 81 registers)."""
    return int(sh) > 1 and int(k) <= 9


@triton.jit
def strip_coords(t, n_tw, TH: tl.constexpr, TW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr):
    """Row and column of the top-left pixel of every ``SH x SW`` strip of spatial tile ``t`` (row-major over
    ``n_tw`` tiles per row): a ``[(TH // SH) * (TW // SW)]`` tensor each, one strip per lane and channel."""
    NSW: tl.constexpr = TW // SW
    q = tl.arange(0, (TH // SH) * NSW)
    return (t // n_tw) * TH + (q // NSW) * SH, (t % n_tw) * TW + (q % NSW) * SW


@triton.jit
def _strip_cols(ow, K: tl.constexpr, SW: tl.constexpr):
    """The ``SW + K - 1`` input columns under a lane's strip, as unsigned integers (a column left of the image wraps
    to a huge value, so one unsigned compare against the width checks both sides)."""
    cols = ()
    for v in tl.static_range(SW + K - 1):
        cols = cols + ((ow + (v - K // 2)).to(tl.uint32),)
    return cols


@triton.jit
def _row_bound(ih, H, W, mask_c):
    """``[BLOCK_C, BLOCK_Q]`` column bound of input row ``ih``: ``W`` where the row is in the image and the channel
    real, else 0, so ``col < bound`` is a load's whole mask: one compare per load, and no mask stays live across
    rows (a GPU thread has 7 predicate registers)."""
    row_ok = (ih >= 0) & (ih < H)
    return tl.where(mask_c[:, None] & row_ok[None, :], W, 0).to(tl.uint32)


@triton.jit
def _row_inputs(row, cols, bound, s_w, K: tl.constexpr, SW: tl.constexpr):
    """The ``SW + K - 1`` inputs of one input row around the lanes' strips, loaded once and converted to float32
    (``row``: the strips' origins on that row; ``cols``, ``bound``: :func:`_strip_cols`, :func:`_row_bound`)."""
    P: tl.constexpr = K // 2
    xs = ()
    for v in tl.static_range(SW + K - 1):
        xs = xs + (tl.load(row + (v - P) * s_w, mask=cols[v][None, :] < bound, other=0.0).to(tl.float32),)
    return xs


@triton.jit
def _all_taps(w_c, w_stride, K: tl.constexpr, FLIP: tl.constexpr, mask_c):
    """Every tap of the lane's channels, row-major (:func:`_tap_weight`), for a kernel that keeps them in
    registers."""
    weights = ()
    for tap in tl.static_range(K * K):
        weights = weights + (_tap_weight(w_c, w_stride, tap, K, FLIP, mask_c),)
    return weights


@triton.jit
def dw_conv_strips(src_ptr, w_ptr, w_stride, offs_c, mask_c, oh, ow, H, W, s_c, s_h, s_w,
                   K: tl.constexpr, FLIP: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
                   BLOCK_C: tl.constexpr, BLOCK_Q: tl.constexpr):
    """Depthwise KxK cross-correlation with zero padding K // 2, in float32, of the ``SH x SW`` pixel strips whose
    top-left pixels are ``(oh, ow)`` (see :func:`strip_coords`), for channels ``offs_c``.

    Returns the ``SH * SW`` accumulators, row-major: element ``r * SW + s`` is pixel ``(oh + r, ow + s)``, a
    ``[BLOCK_C, BLOCK_Q]`` tensor. Each lane keeps its strip in registers and reads every input it needs once: per
    input row, the ``SW + K - 1`` values under the strip are loaded (and converted to float32) once and feed the
    ``K`` taps of every output row that sees that input row. Loads per output drop from ``K * K`` to
    ``(SH + K - 1) * (SW + K - 1) / (SH * SW)``, and the address and mask work is shared in the same way.

    ``w_ptr`` is a tap-major ``(K*K, C)`` weight (tap ``t`` of channel ``c`` at ``w_ptr + t * w_stride + c``), so
    in channels-last memory a lane's channels are one vector load. ``FLIP`` rotates the kernel by 180 degrees: the
    transposed conv (the input gradient of the forward conv). Channels outside ``mask_c`` and pixels outside the
    image read zero (load masks).
    """
    P: tl.constexpr = K // 2
    tile = src_ptr + offs_c[:, None] * s_c + (oh * s_h + ow * s_w)[None, :]
    w_c = w_ptr + offs_c
    cols = _strip_cols(ow, K, SW)
    weights = ()
    if _cache_weights(SH, K):
        weights = _all_taps(w_c, w_stride, K, FLIP, mask_c)
    accs = zeros_tuple(SH * SW, BLOCK_C, BLOCK_Q)
    for u in tl.static_range(SH + K - 1):  # input rows under the strip
        xs = _row_inputs(tile + (u - P) * s_h, cols, _row_bound(oh + (u - P), H, W, mask_c), s_w, K, SW)
        updated = ()
        for r in tl.static_range(SH):  # output row r sees input row u through kernel row u - r
            if u - r >= 0:
                if u - r < K:
                    w_row = ()
                    for t in tl.static_range(K):
                        if _cache_weights(SH, K):
                            w_row = w_row + (weights[(u - r) * K + t],)
                        else:
                            w_row = w_row + (_tap_weight(w_c, w_stride, (u - r) * K + t, K, FLIP, mask_c),)
            for s in tl.static_range(SW):
                acc = accs[r * SW + s]
                if u - r >= 0:
                    if u - r < K:
                        for t in tl.static_range(K):
                            acc += w_row[t] * xs[s + t]
                updated = updated + (acc,)
        accs = updated
    return accs


@triton.jit
def _tap_weight(w_c, w_stride, tap: tl.constexpr, K: tl.constexpr, FLIP: tl.constexpr, mask_c):
    """Tap ``tap`` (row-major, rotated by 180 degrees with ``FLIP``) of the lane's channels, ``[BLOCK_C, 1]``."""
    if FLIP:
        wv = tl.load(w_c + (K * K - 1 - tap) * w_stride, mask=mask_c, other=0.0)
    else:
        wv = tl.load(w_c + tap * w_stride, mask=mask_c, other=0.0)
    return wv.to(tl.float32)[:, None]


@triton.constexpr_function
def fused_weight_grad(k):
    """Whether a backward kernel keeps the K x K weight-gradient sums in registers (one per tap and lane, k <= 9:
    at most 81 registers); larger kernels take :func:`weight_grad_pass`, one kernel row at a time."""
    return int(k) <= 9


@triton.constexpr_function
def _register_taps(k):
    return int(k) * int(k) if int(k) <= 9 else 0


@triton.jit
def weight_grad_sums(K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_Q: tl.constexpr):
    """The per-lane weight-gradient sums a backward kernel carries over its items: ``K * K`` zero accumulators when
    they fit in registers (:func:`fused_weight_grad`), else none (:func:`finish_weight_grad` then runs a
    :func:`weight_grad_pass`)."""
    return zeros_tuple(_register_taps(K), BLOCK_C, BLOCK_Q)


@triton.jit
def item_strips(item, n_tiles, n_tw, TH: tl.constexpr, TW: tl.constexpr, SW: tl.constexpr):
    """Batch index and one-row strip origins (:func:`strip_coords`) of item ``item`` (batch x tile) of a backward
    kernel's walk."""
    oh, ow = strip_coords(item % n_tiles, n_tw, TH, TW, 1, SW)
    return (item // n_tiles).to(tl.int64), oh, ow


@triton.jit
def zeros_tuple(N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_Q: tl.constexpr):
    """``N`` float32 ``[BLOCK_C, BLOCK_Q]`` zero accumulators."""
    out = ()
    for _ in tl.static_range(N):
        out = out + (tl.zeros([BLOCK_C, BLOCK_Q], dtype=tl.float32),)
    return out


@triton.jit
def load_strip_rows(src_ptr, offs_c, mask_c, oh, ow, H, W, s_c, s_h, s_w, K: tl.constexpr, SW: tl.constexpr):
    """The inputs under the one-row strips of :func:`strip_coords` (``SH = 1``) that a KxK conv with zero padding
    K // 2 reads: for each kernel row ``i`` the ``SW + K - 1`` values around the strip, as one flat row-major tuple
    of ``K * (SW + K - 1)`` float32 ``[BLOCK_C, BLOCK_Q]`` tensors (zero outside the image and the channels)."""
    P: tl.constexpr = K // 2
    tile = src_ptr + offs_c[:, None] * s_c + (oh * s_h + ow * s_w)[None, :]
    cols = _strip_cols(ow, K, SW)
    xs = ()
    for i in tl.static_range(K):
        xs = xs + _row_inputs(tile + (i - P) * s_h, cols, _row_bound(oh + (i - P), H, W, mask_c), s_w, K, SW)
    return xs


@triton.jit
def strip_weights(w_ptr, w_stride, offs_c, mask_c, K: tl.constexpr):
    """The ``K * K`` taps of the lane's channels (``w`` tap-major), ``[BLOCK_C, 1]`` float32 each, loaded once by a
    backward kernel before its walk when the weight-gradient sums fit in registers (else an empty tuple)."""
    weights = ()
    if fused_weight_grad(K):
        weights = _all_taps(w_ptr + offs_c, w_stride, K, False, mask_c)
    return weights


@triton.jit
def dw_conv_rows(xs, weights, K: tl.constexpr, SW: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_Q: tl.constexpr):
    """The ``SW`` outputs of :func:`dw_conv_strips` (``SH = 1``, no flip) from inputs already loaded by
    :func:`load_strip_rows` and the taps of :func:`strip_weights`, so a backward kernel that needs the inputs again
    (the weight gradient) keeps them."""
    W_ROW: tl.constexpr = SW + K - 1
    accs = zeros_tuple(SW, BLOCK_C, BLOCK_Q)
    for i in tl.static_range(K):
        updated = ()
        for s in tl.static_range(SW):
            acc = accs[s]
            for t in tl.static_range(K):
                acc += weights[i * K + t] * xs[i * W_ROW + s + t]
            updated = updated + (acc,)
        accs = updated
    return accs


@triton.jit
def recompute_strips(src_ptr, w_ptr, w_stride, weights, offs_c, mask_c, oh, ow, H, W, s_c, s_h, s_w,
                     K: tl.constexpr, SW: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_Q: tl.constexpr):
    """A backward kernel's recomputed conv of its one-row strips, and the inputs it read when the weight-gradient
    sums are kept in registers (:func:`fused_weight_grad`; they feed :func:`dw_weight_grad_rows` without a second
    load; ``weights``: :func:`strip_weights`), else an empty tuple."""
    if fused_weight_grad(K):
        xs = load_strip_rows(src_ptr=src_ptr, offs_c=offs_c, mask_c=mask_c, oh=oh, ow=ow, H=H, W=W,
                             s_c=s_c, s_h=s_h, s_w=s_w, K=K, SW=SW)
        zs = dw_conv_rows(xs, weights, K=K, SW=SW, BLOCK_C=BLOCK_C, BLOCK_Q=BLOCK_Q)
    else:
        xs = ()
        zs = dw_conv_strips(src_ptr=src_ptr, w_ptr=w_ptr, w_stride=w_stride, offs_c=offs_c, mask_c=mask_c, oh=oh,
                            ow=ow, H=H, W=W, s_c=s_c, s_h=s_h, s_w=s_w,
                            K=K, FLIP=False, SH=1, SW=SW, BLOCK_C=BLOCK_C, BLOCK_Q=BLOCK_Q)
    return zs, xs


@triton.jit
def dw_weight_grad_rows(dws, xs, g, K: tl.constexpr, SW: tl.constexpr):
    """``dws[tap] + sum_s g[s] * x[pixel s + tap]``: the weight-gradient sums of a depthwise KxK conv, per lane,
    over the one-row strips the lane has seen, from the strip's inputs ``xs`` (:func:`load_strip_rows`).

    ``dws``: ``K * K`` float32 ``[BLOCK_C, BLOCK_Q]`` accumulators (row-major taps), reduced across lanes once per
    program by :func:`finish_weight_grad`; ``g``: the ``SW`` output-gradient values of the strip (zero outside the
    image and the channels). Without sums in registers (k > 9, :func:`weight_grad_sums`) ``dws`` is returned as it
    is.
    """
    out = dws
    if fused_weight_grad(K):
        W_ROW: tl.constexpr = SW + K - 1
        out = ()
        for i in tl.static_range(K):
            for t in tl.static_range(K):
                acc = dws[i * K + t]
                for s in tl.static_range(SW):
                    acc += g[s] * xs[i * W_ROW + s + t]
                out = out + (acc,)
    return out


@triton.jit
def dw_weight_grad_strips(dws, src_ptr, g, offs_c, mask_c, oh, ow, H, W, s_c, s_h, s_w,
                          K: tl.constexpr, SW: tl.constexpr):
    """:func:`dw_weight_grad_rows` of inputs loaded here, for a kernel whose conv read another tensor."""
    out = dws
    if fused_weight_grad(K):
        xs = load_strip_rows(src_ptr=src_ptr, offs_c=offs_c, mask_c=mask_c, oh=oh, ow=ow, H=H, W=W,
                             s_c=s_c, s_h=s_h, s_w=s_w, K=K, SW=SW)
        out = dw_weight_grad_rows(dws, xs, g, K=K, SW=SW)
    return out


@triton.jit
def store_weight_grad(dwp_ptr, dws, offs_c, mask_c, C, pid_s, K: tl.constexpr, KK: tl.constexpr):
    """Each tap's per-lane sums reduced across the lanes, into this program's row ``dwp[pid_s, c, tap]``."""
    part = dwp_ptr + (pid_s * C + offs_c) * KK
    for tap in tl.static_range(K * K):
        tl.store(part + tap, tl.sum(dws[tap], axis=1), mask=mask_c)


@triton.constexpr_function
def _padded_row(k):
    """A kernel row's taps rounded up to a power of two (the register tile's first dim)."""
    return 1 << max(0, int(k) - 1).bit_length()


@triton.jit
def weight_grad_pass(dwp_ptr, src_ptr, g_ptr, offs_c, mask_c, C, pid_s, n_split, n_items, n_tiles, n_tw, H, W,
                     ss_b, ss_c, ss_h, ss_w, sg_b, sg_c, sg_h, sg_w,
                     K: tl.constexpr, KK: tl.constexpr, BLOCK_C: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr):
    """Weight-gradient partials of a depthwise KxK conv over the items (batch x tile) a program visits:
    ``dwp[pid_s, c, tap] = sum_items sum_p g[c, p] * src[c, p + tap]``, ``g`` the conv's output gradient.

    One kernel row at a time: its ``K`` taps (padded to ``KP``, a power of two) accumulate element-wise in a
    ``[KP, BLOCK_C, TH * TW]`` register tile over the items, against one load of ``g`` per item, and the tile is
    reduced along the pixels once per row and program, straight into the row's columns: no reduction per item and
    tap, and no select-and-add over a ``[BLOCK_C, taps]`` accumulator. ``g`` is read from memory (``.cg``: from L2,
    where this program's own earlier stores are), so a kernel that has just written it must put a
    ``tl.debug_barrier()`` before this pass.
    """
    KP: tl.constexpr = _padded_row(K)
    cols = tl.arange(0, KP)
    col_ok = cols < K
    dj = cols - K // 2
    chans = tl.where(mask_c, offs_c, 0)  # channels outside mask_c read channel 0 (in bounds) against a zero g
    part = dwp_ptr + (pid_s * C + offs_c) * KK
    for i in range(K):
        di = i - K // 2
        acc = tl.zeros([KP, BLOCK_C, TH * TW], dtype=tl.float32)
        # a while loop: a for-range bound built from kernel arguments fails under Triton 3.6's interpreter
        item = pid_s - n_split
        while item + n_split < n_items:
            item += n_split
            b = (item // n_tiles).to(tl.int64)
            oh, ow, mask_p = tile_coords(item % n_tiles, n_tw, H, W, TH, TW)
            g = tl.load(g_ptr + b * sg_b + (offs_c[:, None] * sg_c + (oh * sg_h + ow * sg_w)[None, :]),
                        mask=mask_c[:, None] & mask_p[None, :], other=0.0, cache_modifier='.cg')
            ih = oh + di
            iw = ow[None, :] + dj[:, None]
            ok = ((ih >= 0) & (ih < H))[None, :] & (iw >= 0) & (iw < W) & col_ok[:, None]
            offs = chans[None, :, None] * ss_c + (ih * ss_h)[None, None, :] + (iw * ss_w)[:, None, :]
            val = tl.load(src_ptr + b * ss_b + offs, mask=ok[:, None, :], other=0.0)
            acc += val.to(tl.float32) * g.to(tl.float32)[None, :, :]
        tl.store(part[None, :] + (i * K + cols)[:, None], tl.sum(acc, axis=2),
                 mask=col_ok[:, None] & mask_c[None, :])


@triton.jit
def finish_weight_grad(dwp_ptr, dws, src_ptr, g_ptr, offs_c, mask_c, C, pid_s, n_split, n_items, n_tiles, n_tw, H, W,
                       ss_b, ss_c, ss_h, ss_w, sg_b, sg_c, sg_h, sg_w,
                       K: tl.constexpr, KK: tl.constexpr, BLOCK_C: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr,
                       G_WRITTEN: tl.constexpr):
    """This program's weight-gradient partials ``dwp[pid_s]`` at the end of its walk: the per-lane register sums
    reduced across lanes (:func:`store_weight_grad`), or, for kernels too large for them, a
    :func:`weight_grad_pass` of ``src`` against ``g``; ``G_WRITTEN``: the kernel has just stored ``g`` itself (a
    barrier first, so the pass reads this program's stores)."""
    if fused_weight_grad(K):
        store_weight_grad(dwp_ptr, dws, offs_c, mask_c, C, pid_s, K, KK)
    else:
        if G_WRITTEN:
            tl.debug_barrier()
        weight_grad_pass(dwp_ptr=dwp_ptr, src_ptr=src_ptr, g_ptr=g_ptr, offs_c=offs_c, mask_c=mask_c, C=C,
                         pid_s=pid_s, n_split=n_split, n_items=n_items, n_tiles=n_tiles, n_tw=n_tw, H=H, W=W,
                         ss_b=ss_b, ss_c=ss_c, ss_h=ss_h, ss_w=ss_w, sg_b=sg_b, sg_c=sg_c, sg_h=sg_h, sg_w=sg_w,
                         K=K, KK=KK, BLOCK_C=BLOCK_C, TH=TH, TW=TW)


def conv_tile_config(channels_last: bool, C: int, H: int, W: int, elems: int = 1024):
    """``(BLOCK_C, TH, TW, num_warps)`` for a conv-like kernel on a (C, H, W) plane, about ``elems`` per program.

    Channels-last memory wants a wide channel block (its contiguous dim) and few pixels; NCHW wants rows of pixels
    and few channels. Forward kernels use 1024 elements; the backward kernels, which keep weight-gradient sums in
    registers, 512: the sm_90 compile check (``tools/kernel_static_report.py``) shows these within the register
    file. The choice depends on the shape only through small-image / narrow-channel cases, so a model triggers few
    compilations.

    On a GPU this is the plan the launch sizes its buffers from; the kernels' tiles themselves are autotuned among
    the ``*_CANDIDATES`` below (:class:`TunedKernel`), except where an output is indexed by the plan's tile.

    Under the interpreter the blocks are small (8x8 pixels, 4 channels) so test shapes just above 8 pixels / 4
    channels cover several tiles and channel blocks (halos across tile borders, masks), while tiny shapes stay
    cheap (the interpreter's cost is per program).
    """
    if INTERPRETED:
        return min(4, next_pow2(C)), min(8, next_pow2(H)), min(8, next_pow2(W)), 1
    if channels_last:
        block_c = min(max(1, elems // 16), 64, next_pow2(C))
        pixels = elems // block_c
        tw = min(4, pixels)
        th = min(8, pixels // tw)
    else:
        small = max(H, W) <= 8
        tw = 8 if small else 16
        th = 8 if small or elems >= 1024 else 4
        block_c = max(1, min(next_pow2(C), elems // (th * tw)))
    return block_c, th, tw, 4


# ---------------------------------------------------------------------------------------------------------------------
# Tuning: autotuned on a GPU, one fixed configuration under the interpreter (or a pinned candidate)

CONFIG_ENV = 'MODZOO_KERNEL_CONFIG'
_pinned: Dict[str, int] = {}


def _env_pins() -> Dict[str, int]:
    pins = {}
    for item in filter(None, os.environ.get(CONFIG_ENV, '').split(',')):
        name, _, index = item.partition('=')
        if not index.strip().isdigit():
            raise ValueError(f'{CONFIG_ENV}: expected comma-separated kernel=index pairs (e.g. dwconv_fwd=2), '
                             f'got {item!r}')
        pins[name.strip()] = int(index)
    return pins


@contextlib.contextmanager
def pin_config(name: str, index: int) -> Iterator[None]:
    """Under the interpreter, launch tuned kernel ``name`` with its ``index``-th GPU candidate of the input's layout
    (how the tests run every autotune candidate on the CPU). ``MODZOO_KERNEL_CONFIG=name=index,...`` does the same
    for a whole process."""
    previous = _pinned.get(name)
    _pinned[name] = index
    try:
        yield
    finally:
        if previous is None:
            _pinned.pop(name, None)
        else:
            _pinned[name] = previous


def _cands(*rows, keys=('BLOCK_C', 'TH', 'TW', 'num_warps')):
    return [dict(zip(keys, r, strict=True)) for r in rows]


# GPU candidates (BLOCK_C, TH, TW, num_warps). NCHW tiles are rows of pixels (W contiguous), channels-last tiles
# wide channel blocks. Each layout has an 8x8 (or smaller) tile for the 7x7 maps of the last stage.
#
# Forward candidates add the strip a lane owns, SH x SW pixels (:func:`dw_conv_strips`), and fill the program's
# lanes with one strip per channel: BLOCK_C * (TH / SH) * (TW / SW) = 32 * num_warps. Strips are 2-4 rows of 8 (the
# K x K weights stay in registers and serve every row; 4 x 8 loads each input about 4.4 times at k = 7, not 49) in
# both layouts, since the compile-time column stride makes channels-last column offsets load immediates too; the
# one-row channels-last strip of 4 is for narrow channel blocks (SMT's heads), where the 4 x 8 strip of its k = 9
# head spills (sm_90 compile check).
STRIP_KEYS = ('BLOCK_C', 'TH', 'TW', 'SH', 'SW', 'num_warps')
CONV_FWD_CANDIDATES = {
    'nchw': _cands((8, 8, 32, 2, 8, 4), (8, 16, 32, 4, 8, 4), (32, 8, 16, 4, 8, 4), (64, 8, 8, 4, 8, 4),
                   (32, 8, 8, 2, 8, 4), keys=STRIP_KEYS),
    'nhwc': _cands((32, 8, 16, 4, 8, 4), (64, 8, 8, 4, 8, 4), (32, 8, 8, 2, 8, 4), (16, 8, 16, 1, 4, 4),
                   keys=STRIP_KEYS),
}
# Backward candidates add SW, the one-row strip a lane owns (:func:`dw_weight_grad_strips`), one strip per lane and
# channel (BLOCK_C * TH * (TW / SW) = 32 * num_warps): the weight-gradient sums take one register per tap and lane.
BWD_KEYS = ('BLOCK_C', 'TH', 'TW', 'SW', 'num_warps')
CONV_BWD_CANDIDATES = {
    'nchw': _cands((4, 8, 32, 8, 4), (8, 8, 16, 8, 4), (16, 8, 8, 8, 4), (8, 16, 16, 4, 4), keys=BWD_KEYS),
    'nhwc': _cands((32, 4, 4, 4, 4), (16, 4, 8, 4, 4), (64, 2, 4, 4, 4), (32, 8, 8, 8, 8), keys=BWD_KEYS),
}
# Kernels whose outputs are indexed by the launcher's tile or channel block keep that tile; only warps are tuned.
WARPS_CANDIDATES = {'any': _cands((4,), (8,), keys=('num_warps',))}


def conv_sizes(channels: str = 'C') -> Dict[str, Callable[[dict], int]]:
    """The ``size_args`` of a conv-like :class:`TunedKernel`: its channel block covers the kernel argument
    ``channels``, its tile the ``H x W`` plane (only the entries a kernel's candidates tune are used)."""
    return dict(BLOCK_C=lambda a: a[channels], TH=lambda a: a['H'], TW=lambda a: a['W'])


class TunedKernel:
    """A Triton kernel launched with the best of its GPU candidates (``triton.autotune``, keyed on ``key`` and the
    tensors' dtypes). Candidates are per memory layout: ``layout_arg`` is the channel stride (1 for channels-last),
    and candidates larger than the shape (``size_args``: ``{constexpr: arg it covers}``) are pruned.

    The launcher passes its :class:`TilePlan` choice as keyword arguments too: on a GPU the tuned ones are dropped
    (the autotuner sets them); under the interpreter that plan (small tiles) is the one fixed configuration, unless
    a candidate is pinned with :func:`pin_config`.
    """

    def __init__(self, name: str, fn, candidates: Dict[str, List[dict]], key: Sequence[str],
                 layout_arg: Optional[str] = None, size_args: Optional[Dict[str, Callable[[dict], int]]] = None):
        self.name, self.fn = name, fn
        self.layout_arg, self.size_args = layout_arg, size_args or {}
        self.candidates = {layout: [triton.Config({k: v for k, v in c.items() if k != 'num_warps'},
                                                  num_warps=c.get('num_warps', 4)) for c in cands]
                           for layout, cands in candidates.items()}
        self.tuned_keys = {k for cands in self.candidates.values() for c in cands for k in c.kwargs} | {'num_warps'}
        # the key: the given sizes and layout stride, plus every compile-time switch the tuner does not set (K,
        # MODE, IS_LAST, a launcher-chosen tile, ...), so no tuning is reused across kernel sizes or passes
        params = inspect.signature(getattr(fn, 'fn', fn)).parameters.values()
        switches = [p.name for p in params if 'constexpr' in str(p.annotation) and p.name not in self.tuned_keys]
        self.key = list(key) + [s for s in switches if s not in key]
        self.tuner = None
        if not INTERPRETED:
            configs = [c for cands in self.candidates.values() for c in cands]
            self.tuner = triton.autotune(configs=configs, key=self.key,
                                         prune_configs_by={'early_config_prune': self._prune})(fn)

    def layout(self, named: dict) -> str:
        if self.layout_arg is None or len(self.candidates) == 1:
            return next(iter(self.candidates))
        return 'nhwc' if named[self.layout_arg] == 1 else 'nchw'

    def candidates_for(self, named: dict) -> List['triton.Config']:
        """The candidates a GPU would time for these arguments (the layout's, without those bigger than needed)."""
        cands = self.candidates[self.layout(named)]
        fits = [c for c in cands if all(c.kwargs[k] <= max(8, next_pow2(size(named)))
                                        for k, size in self.size_args.items() if k in c.kwargs)]
        # nothing fits (a narrow channel block or tiny image): the candidate with the fewest idle lanes
        return fits or [min(cands, key=lambda c: tuple(c.kwargs.get(k, 0) for k in self.size_args))]

    def _prune(self, configs, named_args, **kwargs):
        allowed = self.candidates_for(named_args)
        return [c for c in configs if any(c is a for a in allowed)] or allowed[:1]

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            if self.tuner is not None:
                fixed = {k: v for k, v in kwargs.items() if k not in self.tuned_keys}
                return self.tuner[grid](*args, **fixed)
            # strict=False: trailing arguments may be left to their defaults
            named = dict(zip([a for a in self.fn.arg_names if a not in kwargs], args, strict=False))
            index = _pinned.get(self.name, _env_pins().get(self.name))
            meta = dict(kwargs)
            if index is not None:
                cands = self.candidates[self.layout(named)]
                if not 0 <= index < len(cands):
                    raise IndexError(f'{self.name}: {len(cands)} {self.layout(named)} candidates, none at {index}')
                meta.update(cands[index].kwargs, num_warps=cands[index].num_warps)
            g = grid(meta) if callable(grid) else grid
            return self.fn[g](*args, **meta)
        return launch


class TilePlan:
    """Launch geometry of a conv-like kernel on a logical (B, C, H, W) tensor: the :func:`conv_tile_config` of its
    memory order, the spatial tiling and the forward grid (one program per (batch x tile, channel block))."""

    def __init__(self, x: torch.Tensor, channels: Optional[int] = None, elems: int = 1024):
        B, C, H, W = x.shape
        C = C if channels is None else channels  # SMT tiles one head's channels
        self.B, self.C, self.H, self.W = B, C, H, W
        self.channels_last = is_channels_last(x)
        self.block_c, self.th, self.tw, self.num_warps = conv_tile_config(self.channels_last, C, H, W, elems)
        self.n_tw = triton.cdiv(W, self.tw)
        self.n_tiles = triton.cdiv(H, self.th) * self.n_tw
        self.n_cblocks = triton.cdiv(C, self.block_c)
        self.n_items = B * self.n_tiles  # (batch, tile) pairs, walked by the weight-gradient kernels

    @property
    def grid(self):
        return self.n_items, self.n_cblocks

    def tiles_grid(self):
        """The forward grid as a function of the launch's tile (autotuned or pinned)."""
        B, C, H, W = self.B, self.C, self.H, self.W
        return lambda m: (B * triton.cdiv(H, m['TH']) * triton.cdiv(W, m['TW']), triton.cdiv(C, m['BLOCK_C']))

    def split_grid(self, n_split: int):
        """The grid of a weight-gradient kernel: channel blocks x ``n_split`` programs walking the tiles."""
        C = self.C
        return lambda m: (triton.cdiv(C, m['BLOCK_C']), n_split)

    def meta(self):
        return dict(BLOCK_C=self.block_c, TH=self.th, TW=self.tw, num_warps=self.num_warps)

    def strip_meta(self, rows: bool = True):
        """:meth:`meta` plus the strip of a :func:`dw_conv_strips` kernel, ``SH x SW`` pixels (``rows=False``: a
        backward kernel's one-row strip, ``SW`` only): under the interpreter 2 x 4 pixels, so a tile holds several
        strips and a strip several taps' overlap; on a GPU (the launch plan of the untuned passes) one row of 4
        channels-last or 8 NCHW pixels."""
        if INTERPRETED:
            sh, sw = min(2, self.th), min(4, self.tw)
        else:
            sh, sw = 1, min(4 if self.channels_last else 8, self.tw)
        return dict(self.meta(), SH=sh, SW=sw) if rows else dict(self.meta(), SW=sw)


def on_tensor_device(launcher):
    """Run ``launcher`` with the CUDA device of its first tensor argument current: Triton launches on the current
    device, which need not be the tensors' one (a model on ``cuda:1`` while ``cuda:0`` is current)."""
    @functools.wraps(launcher)
    def wrapper(*args, **kwargs):
        first = next(a for a in args if isinstance(a, torch.Tensor))
        if first.device.type == 'cuda':
            with torch.cuda.device(first.device):
                return launcher(*args, **kwargs)
        return launcher(*args, **kwargs)
    return wrapper


def sum_weight_partials(partials: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The gradient of a depthwise ``weight`` from a weight-gradient kernel's ``(n_split, C, KK)`` float32 partial
    sums (``KK``: the taps rounded up to a power of two)."""
    taps = weight.shape[-2] * weight.shape[-1]
    return partials.sum(0)[:, :taps].reshape(weight.shape).to(weight.dtype)


# SMs assumed for meta tensors (an H100/H200), which have no device to ask.
META_SM_COUNT = 132


@functools.lru_cache(maxsize=None)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def reduction_programs(device: torch.device, n_items: int, n_cblocks: int) -> int:
    """How many programs per channel block split the (batch x tile) items of a weight-gradient kernel.

    Each program sums its partial weight gradient over the items it visits and writes it once; the partials are
    summed afterwards (deterministic, no atomics). Enough programs to fill the GPU a few times.
    """
    if INTERPRETED or device.type not in ('cuda', 'meta'):
        return max(1, min(2, n_items))
    if device.type == 'meta':  # the static report plans launches on meta tensors
        sms = META_SM_COUNT
    else:
        sms = _sm_count(device.index if device.index is not None else torch.cuda.current_device())
    target = 4 * sms
    return max(1, min(n_items, triton.cdiv(target, n_cblocks)))


# ---------------------------------------------------------------------------------------------------------------------
# The depthwise conv launch shared by the conv ops: dwconv_gelu's forward and every op's transposed conv (input
# gradient)

def tap_major(weight: torch.Tensor) -> torch.Tensor:
    """A depthwise ``(C, 1, K, K)`` weight as the kernels read it: ``(K*K, C)``, tap ``t`` of channel ``c`` at
    ``t * C + c``, so a lane's channels are one vector load in channels-last memory."""
    return weight.reshape(weight.shape[0], -1).t().contiguous()


@triton.jit
def _dwconv_act_fwd_kernel(
        x_ptr, w_ptr, b_ptr, y_ptr,
        C, H, W,
        sx_b, sx_c, sx_h, sx_w: tl.constexpr,
        sy_b, sy_c, sy_h, sy_w,
        K: tl.constexpr, HAS_BIAS: tl.constexpr, APPLY_GELU: tl.constexpr, FLIP: tl.constexpr,
        BLOCK_C: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
):
    """``act(dwconv(x) + b)`` on one tile, ``SH x SW`` pixels per lane and channel (:func:`dw_conv_strips`; ``w``
    tap-major). Roofline: max(2 tensors of bytes / peak bandwidth, k^2 FMAs per element / peak FMA rate); on
    H100/H200 memory-bound up to k = 5 in bf16 and k = 9 in fp32, FMA-bound above."""
    BLOCK_Q: tl.constexpr = (TH // SH) * (TW // SW)
    n_tw = tl.cdiv(W, TW)
    n_tiles = tl.cdiv(H, TH) * n_tw
    pid = tl.program_id(0)
    b = (pid // n_tiles).to(tl.int64)
    oh, ow = strip_coords(pid % n_tiles, n_tw, TH, TW, SH, SW)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < C

    accs = dw_conv_strips(src_ptr=x_ptr + b * sx_b, w_ptr=w_ptr, w_stride=C, offs_c=offs_c, mask_c=mask_c, oh=oh,
                          ow=ow, H=H, W=W, s_c=sx_c, s_h=sx_h, s_w=sx_w,
                          K=K, FLIP=FLIP, SH=SH, SW=SW, BLOCK_C=BLOCK_C, BLOCK_Q=BLOCK_Q)
    if HAS_BIAS:
        bias = tl.load(b_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[:, None]
    y_tile = y_ptr + b * sy_b + offs_c[:, None] * sy_c + (oh * sy_h + ow * sy_w)[None, :]
    for r in tl.static_range(SH):
        for s in tl.static_range(SW):
            acc = accs[r * SW + s]
            if HAS_BIAS:
                acc += bias
            if APPLY_GELU:
                acc = gelu(acc)
            mask_p = (oh + r < H) & (ow + s < W)
            tl.store(y_tile + (r * sy_h + s * sy_w), acc.to(y_ptr.dtype.element_ty),
                     mask=mask_c[:, None] & mask_p[None, :])


DWCONV_FWD = TunedKernel('dwconv_fwd', _dwconv_act_fwd_kernel, CONV_FWD_CANDIDATES, key=['C', 'H', 'W', 'sx_c'],
                         layout_arg='sx_c', size_args=conv_sizes())


@on_tensor_device
def depthwise_conv(
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor] = None,
        apply_gelu: bool = False,
        flip: bool = False,
        out_dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """``act(dwconv(x, weight, padding=k // 2) + bias)``; ``flip`` gives the transposed conv (input gradient).

    ``x`` is logical NCHW with any strides; the output has ``x``'s memory order (channels-last in, channels-last
    out) so a permuted channels-last view round-trips without a copy.
    """
    plan = TilePlan(x)
    y = empty_nchw(x, dtype=out_dtype or x.dtype)
    w = tap_major(weight)
    DWCONV_FWD[plan.tiles_grid()](
        x, w, bias if bias is not None else w, y,
        plan.C, plan.H, plan.W,
        *strides(x), *strides(y),
        K=weight.shape[-1], HAS_BIAS=bias is not None, APPLY_GELU=apply_gelu, FLIP=flip, **plan.strip_meta(),
    )
    return y
