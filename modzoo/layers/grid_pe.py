"""GridPE: grid-cell positional encoding as a rotation of queries and keys (Li et al., arXiv:2406.07049).

A position ``x`` in R^p is encoded by ``n = p + 1`` plane waves whose directions point to the vertices of a regular
simplex (three directions 120 degrees apart in 2D: the hexagonal grid-cell pattern), at ``S`` geometric scales. Like
RoPE, nothing is added to the tokens: each (even, odd) channel pair of q and k is rotated by the phase
``theta = |w_s| <omega_j, x>``, so the attention logit ``<q'(x_q), k'(x_k)>`` depends on ``x_q - x_k`` only. In 1D
(one direction, ``omega = 1``) this is exactly RoPE.

Layout (the official 2025 module's, pinned by the golden fixtures): a head's channels are viewed as
``(n directions, S scales, 2)``; the first ``2 n S`` channels rotate, the remaining ``head_dim mod 2n`` pass through
unchanged (partial rotation, so PVT's head_dim 64 and 32 need no change of width).

Each head gets its own fixed random orthogonal rotation of the simplex, drawn from a seeded generator on the CPU in
float64: identical in every process and on every device. It is a *persistent* buffer (``omegas``), so a checkpoint
trained with GridPE carries the rotations it was trained with; models that load plain checkpoints fill it in from
the seed (see ``modzoo.models._pvt_convert.check_gridpe_buffers``).

Scales (``scale_mode``):

* ``'rope'`` (default, as released): ``|w_s| = base ** (-s / S)`` for ``s = 0..S-1`` with ``base = 10000``, i.e.
  ``base ** (-2 n s / d_rot)`` with ``d_rot = 2 n S`` the rotated width (equal to head_dim when it divides). Adjacent
  scales differ by ``base ** (1 / S)``.
* ``'optimal'`` (the paper's theory): adjacent scales differ by ``e ** (1 / p)`` (e in 1D, sqrt(e) in 2D), and the
  coarsest scale's wavelength ``2 pi / |w_{S-1}|`` equals ``max_wavelength``, the extent of the training grid. With
  many scales the finest wavelengths fall below two grid steps (aliased at integer positions); that is what the
  ratio implies, and is left as is (in 1D, 32 scales span e^31, beyond what even float64 phases resolve).

In 1D the only rotations are +-1; GridPE keeps +1 for every head, so it is RoPE. :meth:`GridPE.forward` takes any
positions (batched or not); models on a grid cache tables per input size (see :mod:`modzoo.layers.grid_pe_attention`).
"""
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from modzoo.utils.tracing import is_fx_tracing, is_tracing

__all__ = [
    'GridPE', 'simplex_directions', 'random_rotation', 'scale_magnitudes', 'grid_positions', 'adaptive_pool_centres',
]

_SCALE_MODES = ('rope', 'optimal')


def simplex_directions(dim: int) -> torch.Tensor:
    """``(dim + 1, dim)`` unit vectors to the vertices of a regular simplex centred at the origin (float64).

    The vertices of the standard simplex in R^{dim+1}, centred, are written in the orthonormal Helmert basis of the
    hyperplane ``sum(x) = 0``: a closed form, so no SVD sign ambiguity can make two machines disagree. ``dim == 1``
    gives the single direction ``[[1]]`` (RoPE).
    """
    if dim < 1:
        raise ValueError(f'GridPE needs a spatial dimension >= 1, got {dim}')
    if dim == 1:
        return torch.ones(1, 1, dtype=torch.float64, device='cpu')
    n = dim + 1
    helmert = torch.zeros(dim, n, dtype=torch.float64, device='cpu')
    for k in range(1, n):
        helmert[k - 1, :k] = 1.
        helmert[k - 1, k] = -float(k)
        helmert[k - 1] /= math.sqrt(k * (k + 1))
    # rows of the basis are orthogonal to (1, ..., 1): vertex j (e_j minus the centroid) has coordinates basis[:, j]
    vertices = helmert.t().contiguous()
    return vertices / vertices.norm(dim=1, keepdim=True)


def random_rotation(dim: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``(dim, dim)`` orthogonal matrix (float64, CPU), Haar-distributed.

    Gram-Schmidt on the columns of a Gaussian matrix: the Q of its QR factorisation with a positive diagonal in R,
    which is unique, so the result depends on the generator state only (no LAPACK sign conventions, and no LAPACK
    call, which is costly for these tiny matrices).
    """
    gauss = torch.randn(dim, dim, generator=generator, dtype=torch.float64, device='cpu')
    columns: List[torch.Tensor] = []
    for j in range(dim):
        v = gauss[:, j].clone()
        for u in columns:
            v -= (u @ v) * u
        columns.append(v / v.norm())
    return torch.stack(columns, dim=1)


def scale_magnitudes(
        num_scales: int,
        spatial_dim: int,
        scale_mode: str = 'rope',
        base: float = 10000.,
        max_wavelength: Optional[float] = None,
) -> torch.Tensor:
    """Frequency magnitudes ``|w_s|``, ``s = 0..S-1``, finest first (float64, CPU)."""
    s = torch.arange(num_scales, dtype=torch.float64, device='cpu')
    if scale_mode == 'rope':
        return base ** (-s / num_scales)
    if scale_mode == 'optimal':
        if max_wavelength is None or max_wavelength <= 0:
            raise ValueError("scale_mode='optimal' needs max_wavelength > 0 (the extent of the training grid)")
        ratio = math.exp(1. / spatial_dim)
        coarsest = 2 * math.pi / max_wavelength
        return coarsest * ratio ** (num_scales - 1 - s)
    raise ValueError(f'scale_mode must be one of {_SCALE_MODES}, got {scale_mode!r}')


def grid_positions(
        height: int,
        width: int,
        stride: int = 1,
        offset: float = 0.,
        dtype: torch.dtype = torch.float32,
        device: Optional[torch.device] = None,
) -> torch.Tensor:
    """``(height * width, 2)`` row-major (row, col) coordinates ``stride * index + offset``.

    ``height``/``width`` may be symbolic sizes taken from a tensor's shape, so exported graphs follow the input size.
    """
    rows = torch.arange(height, device=device).to(dtype) * stride + offset
    cols = torch.arange(width, device=device).to(dtype) * stride + offset
    grid_r, grid_c = torch.meshgrid(rows, cols, indexing='ij')
    return torch.stack((grid_r.reshape(-1), grid_c.reshape(-1)), dim=-1)


def adaptive_pool_centres(
        in_size: int,
        out_size: int,
        dtype: torch.dtype = torch.float32,
        device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Centres, in input coordinates, of the ``out_size`` bins of adaptive average pooling over ``in_size`` cells.

    Bin ``i`` covers ``[floor(i * in / out), ceil((i + 1) * in / out))`` as in ``F.adaptive_avg_pool1d``.
    """
    idx = torch.arange(out_size, device=device)
    start = torch.div(idx * in_size, out_size, rounding_mode='floor')
    end = torch.div((idx + 1) * in_size + out_size - 1, out_size, rounding_mode='floor')
    return (start + end - 1).to(dtype) / 2


def _exporting() -> bool:
    """Under ``torch.export`` (False when scripted: TorchScript skips the branch)."""
    exporting = False
    if not torch.jit.is_scripting():
        exporting = torch.compiler.is_exporting()
    return exporting


def _rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x * cos + swap(x) * sin`` with ``swap`` exchanging the channels of each (even, odd) pair.

    Under ``torch.export`` the export form: the swap as a product with a constant permutation matrix, and a plain
    multiply-add (phone targets: XNNPACK has no ``flip`` and ran the slices and cat of a pair swap as strided copies,
    about a fifth of GridPE-PVTv2-b0's ``.pte`` time; Core ML's converter has no ``addcmul``). Same values up to the
    fused rounding (a one-hot product is exact)."""
    if _exporting():
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        swapped = F.linear(x, eye.unflatten(0, (-1, 2)).flip(1).flatten(0, 1))
        return x * cos + swapped * sin
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return torch.addcmul(x * cos, swapped, sin)


class GridPE(nn.Module):
    """Grid-cell positional encoding applied as a rotation of q and k.

    Args:
        num_heads: attention heads; each gets its own rotation of the simplex directions.
        head_dim: channels per head. The first ``2 n S`` (``n = p + 1``, or 1 in 1D; ``S = head_dim // 2n``) rotate.
        spatial_dim: ``p``, the dimension of the positions (1, 2 or 3; any ``p >= 1`` works).
        scale_mode: ``'rope'`` or ``'optimal'`` (see the module docstring).
        base: the RoPE base of ``scale_mode='rope'``.
        max_wavelength: the coarsest wavelength of ``scale_mode='optimal'`` (the training grid's extent).
        seed: seed of the per-head rotations.

    ``forward(q, k, q_pos, k_pos)`` rotates ``q`` (..., heads, Nq, head_dim) at positions ``q_pos`` (Nq, p) or
    (B, Nq, p), and ``k`` at ``k_pos``. Models with a fixed grid build the tables once with :meth:`tables` and call
    :meth:`rotate` (or, in eager mode, :meth:`rotate_complex` with :meth:`complex_table`); ``cache`` is a dict they
    may keep tables in (cleared whenever ``omegas`` is reloaded or moved).
    """

    cache_size = 16  # table sets a user of ``cache`` keeps; a new input size beyond this evicts the oldest

    def __init__(
            self,
            num_heads: int,
            head_dim: int,
            spatial_dim: int = 2,
            scale_mode: str = 'rope',
            base: float = 10000.,
            max_wavelength: Optional[float] = None,
            seed: int = 0,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.spatial_dim = spatial_dim
        self.num_directions = spatial_dim + 1 if spatial_dim > 1 else 1
        self.num_scales = head_dim // (2 * self.num_directions)
        if self.num_scales < 1:
            raise ValueError(
                f'GridPE in {spatial_dim}D rotates channels in groups of 2 * {self.num_directions}; head_dim '
                f'{head_dim} is too small')
        self.rot_dim = 2 * self.num_directions * self.num_scales
        self.scale_mode = scale_mode
        self.base = base
        self.max_wavelength = max_wavelength
        self.seed = seed
        # the scales are geometric: keep log |w_0| and the log ratio as floats (nothing for .half() to round)
        magnitudes = scale_magnitudes(self.num_scales, spatial_dim, scale_mode, base, max_wavelength)
        self.log_magnitude0 = math.log(magnitudes[0].item())
        self.log_scale_ratio = math.log(magnitudes[0].item() / magnitudes[1].item()) if self.num_scales > 1 else 0.

        generator = torch.Generator(device='cpu').manual_seed(seed)
        simplex = simplex_directions(spatial_dim)
        if spatial_dim == 1:  # the only 1D rotations are +-1; keep +1 so 1D GridPE is RoPE
            omegas = simplex.expand(num_heads, 1, 1)
        else:
            omegas = torch.stack([simplex @ random_rotation(spatial_dim, generator).t() for _ in range(num_heads)])
        # follow a `with torch.device(...)` context (e.g. 'meta' builds) like every other parameter and buffer
        self.register_buffer('omegas', omegas.to(device=torch.empty(()).device, dtype=torch.float32).contiguous())
        self.cache: Dict[Tuple, Tuple[torch.Tensor, ...]] = {}

    def extra_repr(self) -> str:
        return (f'num_heads={self.num_heads}, head_dim={self.head_dim}, spatial_dim={self.spatial_dim}, '
                f'rot_dim={self.rot_dim}, scale_mode={self.scale_mode}, seed={self.seed}')

    def _apply(self, fn, recurse: bool = True):
        # .half()/.bfloat16() would round the directions (phase errors grow with the position); keep them float32
        omegas = self.omegas
        super()._apply(fn, recurse)
        if self.omegas.dtype != torch.float32 and self.omegas.is_floating_point():
            self.omegas = omegas.to(device=self.omegas.device, dtype=torch.float32)
        self.cache.clear()
        return self

    def _load_from_state_dict(self, *args, **kwargs):
        self.cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    def magnitudes(self, dtype: torch.dtype = torch.float64, device: Optional[torch.device] = None) -> torch.Tensor:
        """``|w_s|``, finest first: computed in float64 on the CPU, then moved to ``device``/``dtype``."""
        s = torch.arange(self.num_scales, dtype=torch.float64, device='cpu')
        return torch.exp(self.log_magnitude0 - s * self.log_scale_ratio).to(device=device, dtype=dtype)

    def tables(
            self,
            positions: torch.Tensor,
            dtype: torch.dtype = torch.float32,
            num_prefix_tokens: int = 0,
            work_dtype: Optional[torch.dtype] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Rotation tables ``(cos, sin)`` for ``positions`` (..., N, p): each (..., heads, prefix + N, head_dim).

        ``sin`` carries the rotation's signs (-sin on even, +sin on odd channels). Pass-through channels and the
        ``num_prefix_tokens`` leading rows (e.g. a class token, which has no position) get cos 1, sin 0. The phases
        are computed in float64 for float64 positions, else in float32 (as the official module does), and the
        tables are rounded once to ``dtype``. Models that cache their tables pass float64 positions.
        ``work_dtype`` fixes the phase precision instead (FX proxies have no dtype to branch on).
        """
        check = True
        if not torch.jit.is_scripting():  # FX proxies have no size to compare
            check = not is_tracing()
        if check and positions.shape[-1] != self.spatial_dim:
            raise ValueError(f'GridPE built for {self.spatial_dim}D positions, got positions of shape '
                             f'{list(positions.shape)}')
        if work_dtype is None:
            work = torch.float64 if positions.dtype == torch.float64 else torch.float32
        else:
            work = work_dtype
        omegas = self.omegas.to(work)
        # (..., N, p) x (heads, n, p) -> (..., heads, N, n): <omega_hj, x>
        if _exporting():  # export form: a broadcast matmul (Core ML mistranslates this einsum)
            proj = positions.to(work).unsqueeze(-3) @ omegas.transpose(-1, -2)
        else:
            proj = torch.einsum('...np,hjp->...hnj', positions.to(work), omegas)
        theta = proj.unsqueeze(-1) * self.magnitudes(work, positions.device)  # (..., heads, N, n, S)
        cos, sin = torch.cos(theta), torch.sin(theta)
        # (even, odd) pair p rotates by theta: [cos, cos] and [-sin, +sin]
        cos = torch.stack((cos, cos), dim=-1).flatten(-3)
        sin = torch.stack((-sin, sin), dim=-1).flatten(-3)
        lead = cos.shape[:-1]
        pad = self.head_dim - self.rot_dim
        # torch.ones/zeros rather than Tensor.new_*: Core ML's converter has no new_ones/new_zeros
        if pad:
            cos = torch.cat((cos, torch.ones(lead + (pad,), dtype=cos.dtype, device=cos.device)), dim=-1)
            sin = torch.cat((sin, torch.zeros(lead + (pad,), dtype=sin.dtype, device=sin.device)), dim=-1)
        if num_prefix_tokens:
            prefix = lead[:-1] + (num_prefix_tokens, self.head_dim)
            cos = torch.cat((torch.ones(prefix, dtype=cos.dtype, device=cos.device), cos), dim=-2)
            sin = torch.cat((torch.zeros(prefix, dtype=sin.dtype, device=sin.device), sin), dim=-2)
        return cos.to(dtype), sin.to(dtype)

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` (..., heads, N, head_dim) with tables from :meth:`tables` (broadcast over the batch)."""
        if self.head_dim % 2:  # an odd head_dim: the last channel has no partner and always passes through
            return torch.cat((_rotate_pairs(x[..., :-1], cos[..., :-1], sin[..., :-1]), x[..., -1:]), dim=-1)
        return _rotate_pairs(x, cos, sin)

    def complex_table(self, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """``cos + i sin`` per channel pair, (..., head_dim // 2) complex, for :meth:`rotate_complex`.

        Only for an even head_dim and float32/float64 tables (there is no bfloat16 complex type).
        """
        return torch.complex(cos[..., 0::2], sin[..., 1::2])

    @staticmethod
    def rotate_complex(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """:meth:`rotate` as one complex multiply: the (even, odd) pairs of ``x`` are complex numbers.

        Faster than the real form on CPU (which needs the pair swap, a strided copy), but complex tensors
        do not export to ONNX and have no bfloat16 type, so models use it in eager mode with cached tables only.
        """
        pairs = x.unflatten(-1, (-1, 2))
        if is_fx_tracing() or pairs.stride(-1) != 1 or pairs.stride(-2) != 2:  # a proxy has no strides
            pairs = pairs.contiguous()
        return torch.view_as_real(torch.view_as_complex(pairs) * table).flatten(-2)

    def forward(
            self,
            q: torch.Tensor,
            k: torch.Tensor,
            q_pos: torch.Tensor,
            k_pos: Optional[torch.Tensor] = None,
            num_prefix_tokens: int = 0,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Rotate q at ``q_pos`` and k at ``k_pos`` (default: ``q_pos``). Positions are (N, p) or (B, N, p)."""
        q_cos, q_sin = self.tables(q_pos, q.dtype, num_prefix_tokens)
        if k_pos is None:
            k_cos, k_sin = q_cos, q_sin
        else:
            k_cos, k_sin = self.tables(k_pos, k.dtype, num_prefix_tokens)
        return self.rotate(q, q_cos, q_sin), self.rotate(k, k_cos, k_sin)
