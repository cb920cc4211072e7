"""Triton helpers shared by modzoo's kernels: exact GELU and its derivative, the depthwise-conv tile, the
weight-gradient pass of the conv backwards, and the tile configurations.

Conventions of every conv-like kernel here:
* a program works on one (batch, spatial tile) pair and a block of ``BLOCK_C`` channels; the tile is ``TH x TW``
  pixels flattened to ``BLOCK_P = TH * TW`` so a block is a 2-D ``[BLOCK_C, BLOCK_P]`` tensor;
* tensors are addressed through their four strides, so NCHW, channels-last, permuted views and channel slices are
  read in place; Triton specialises the unit stride, so loads are coalesced along whichever dim is contiguous;
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

from ._layout import is_channels_last, next_pow2

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


@triton.jit
def _tile_ptrs(src_ptr, offs_c, mask_c, oh, ow, s_c, s_h, s_w):
    """Pointers to the ``[BLOCK_C, BLOCK_P]`` tile; channels outside ``mask_c`` point at channel 0 (in bounds)."""
    return src_ptr + tl.where(mask_c, offs_c, 0)[:, None] * s_c + (oh * s_h + ow * s_w)[None, :]


@triton.jit
def _load_tap(src_tile, tap, oh, ow, H, W, s_h, s_w, K: tl.constexpr):
    """The tile shifted by tap ``tap`` (row-major) of a KxK kernel centred on its pixels; zero outside the image."""
    di = tap // K - K // 2
    dj = tap % K - K // 2
    ih = oh + di
    iw = ow + dj
    ok = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    return tl.load(src_tile + (di * s_h + dj * s_w), mask=ok[None, :], other=0.0)


@triton.jit
def dw_conv_tile(src_ptr, w_ptr, offs_c, mask_c, oh, ow, H, W, s_c, s_h, s_w,
                 K: tl.constexpr, FLIP: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
                 UNROLL: tl.constexpr = True):
    """Depthwise KxK cross-correlation with zero padding K // 2 on one tile, in float32.

    ``src_ptr`` points at the batch sample; channel ``offs_c[i]`` lives at ``src_ptr + offs_c[i] * s_c``. ``w_ptr``
    is a dense ``(C, K*K)`` weight. ``FLIP`` rotates the kernel by 180 degrees, which turns the op into its
    transpose (the input gradient of the forward conv). Channels outside ``mask_c`` read channel 0 (always in
    bounds) with a zero weight, so the big loads only need the spatial mask.

    ``UNROLL`` unrolls the taps at compile time (forward kernels: most load-level parallelism); otherwise the taps
    are a runtime loop, which keeps the backward kernels (two or three tap loops each) small enough to compile in
    seconds and to stay within the register file.
    """
    acc = tl.zeros([BLOCK_C, BLOCK_P], dtype=tl.float32)
    src_tile = _tile_ptrs(src_ptr, offs_c, mask_c, oh, ow, s_c, s_h, s_w)
    w_row = w_ptr + offs_c * (K * K)
    if UNROLL:
        for i in tl.static_range(K):
            ih = oh + (i - K // 2)
            row_ok = (ih >= 0) & (ih < H)
            src_row = src_tile + (i - K // 2) * s_h
            for j in tl.static_range(K):
                iw = ow + (j - K // 2)
                ok = row_ok & (iw >= 0) & (iw < W)
                val = tl.load(src_row + (j - K // 2) * s_w, mask=ok[None, :], other=0.0)
                if FLIP:
                    wv = tl.load(w_row + ((K - 1 - i) * K + (K - 1 - j)), mask=mask_c, other=0.0)
                else:
                    wv = tl.load(w_row + (i * K + j), mask=mask_c, other=0.0)
                acc += val.to(tl.float32) * wv.to(tl.float32)[:, None]
    else:
        for tap in range(K * K):
            val = _load_tap(src_tile, tap, oh, ow, H, W, s_h, s_w, K)
            if FLIP:
                wv = tl.load(w_row + (K * K - 1 - tap), mask=mask_c, other=0.0)
            else:
                wv = tl.load(w_row + tap, mask=mask_c, other=0.0)
            acc += val.to(tl.float32) * wv.to(tl.float32)[:, None]
    return acc


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


def conv_tile_config(channels_last: bool, C: int, H: int, W: int, elems: int = 1024):
    """``(BLOCK_C, TH, TW, num_warps)`` for a conv-like kernel on a (C, H, W) plane, about ``elems`` per program.

    Channels-last memory wants a wide channel block (its contiguous dim) and few pixels; NCHW wants rows of pixels
    and few channels. Forward kernels use 1024 elements; the backward kernels, whose weight-gradient pass keeps a
    kernel row's taps of the tile in registers, 512 (SMT's, with four heads, 256): the sm_90 compile check
    (``tools/kernel_static_report.py``) shows these within the register file. The choice depends on the shape only
    through small-image / narrow-channel cases, so a model triggers few compilations.

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
# wide channel blocks; at most 8 tile elements per thread, so the unrolled forward taps stay in registers.
# Each layout has an 8x8 (or smaller) tile for the 7x7 maps of the last stage.
CONV_FWD_CANDIDATES = {
    'nchw': _cands((8, 8, 16, 4), (4, 8, 32, 4), (4, 16, 32, 8), (16, 8, 8, 4)),
    'nhwc': _cands((64, 4, 4, 4), (32, 8, 4, 4), (32, 8, 8, 8), (16, 8, 8, 4)),
}
# Kernels with a weight-gradient pass (a [row taps, BLOCK_C, tile] accumulator): half the tile.
CONV_BWD_CANDIDATES = {
    'nchw': _cands((8, 4, 16, 4), (4, 8, 16, 4), (8, 8, 16, 8), (8, 8, 8, 4)),
    'nhwc': _cands((32, 4, 4, 4), (16, 4, 8, 4), (32, 4, 8, 8)),
}
# SMT's backward runs four heads: a quarter of the forward tile.
MIXED_BWD_CANDIDATES = {
    'nchw': _cands((4, 4, 16, 4), (2, 8, 16, 4), (4, 8, 8, 4)),
    'nhwc': _cands((16, 4, 4, 4), (8, 4, 8, 4)),
}
# Kernels whose outputs are indexed by the launcher's tile or channel block keep that tile; only warps are tuned.
WARPS_CANDIDATES = {'any': _cands((4,), (8,), keys=('num_warps',))}


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
        self.block_c, self.th, self.tw, self.num_warps = conv_tile_config(is_channels_last(x), C, H, W, elems)
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
