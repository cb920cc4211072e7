"""PVT's spatial-reduction attention (SRA) with GridPE rotating its queries and keys, shared by PVT v1 and v2.

Queries sit at the integer (row, col) positions of the stage's grid, keys at the positions of what they were reduced
from: the centres ``sr * i + sr // 2`` of the strided conv's cells, the centres of the 7x7 adaptive pooling bins
(linear SRA, PVT v2-li), or the query grid itself (``sr == 1``). Positions and rotation tables follow the input size
(any H x W, non-square too). In eager mode the tables are cached per input size, dtype and device, as complex
tables, so the rotation is one complex multiply; while scripting, tracing, exporting or compiling they are built in
the graph from the (possibly symbolic) input size, in real form (FX symbolic tracing builds eager's complex tables in
the graph, so an FX graph gives eager's outputs exactly).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.pvt_v2 import Attention as PvtV2Attention

from modzoo.utils.tracing import can_cache, is_fx_tracing, is_graph_capture

from .mobile_forms import explicit_attention, sliced_heads, without_fused_attention
from .grid_pe import GridPE, adaptive_pool_centres, grid_positions
from .input_check import pad_to_min_size
from .pooling import adaptive_avg_pool2d_traceable

__all__ = ['GridPEAttention', 'grid_pe_block_cfgs', 'reduced_size']

LINEAR_SRA_POOL = 7  # PVT v2-li's fixed key grid


def reduced_size(size: int, sr_ratio: int) -> int:
    """Cells of the spatial-reduction conv along one side (inputs smaller than the kernel are padded to one cell)."""
    return max(size // sr_ratio, 1)


# FX records calls to these instead of tracing into them: they branch on sizes, which a proxy does not have
torch.fx.wrap('pad_to_min_size')
torch.fx.wrap('reduced_size')


def grid_pe_block_cfgs(
        depths: Sequence[int],
        stage_grids: Sequence[Tuple[int, int]],
        gridpe: bool = True,
        gridpe_blocks: str = 'all',
        scale_mode: str = 'rope',
        base: float = 10000.,
        seed: int = 0,
) -> List[List[Optional[Dict]]]:
    """Per stage, per block: the :class:`GridPE` arguments of that block's attention (``None``: no GridPE).

    ``gridpe_blocks`` 'all' or 'first' (the paper's placement: the first block of each stage); block ``i``, counted
    over all stages, is seeded ``seed + i``; ``scale_mode='optimal'`` spans each stage's grid with its coarsest wave.
    """
    if gridpe_blocks not in ('all', 'first'):
        raise ValueError(f"gridpe_blocks must be 'all' or 'first', got {gridpe_blocks!r}")
    cfgs, block_index = [], 0
    for depth, grid in zip(depths, stage_grids, strict=True):
        stage = []
        for j in range(depth):
            use = gridpe and (gridpe_blocks == 'all' or j == 0)
            stage.append(dict(
                scale_mode=scale_mode,
                base=base,
                max_wavelength=float(max(grid)) if scale_mode == 'optimal' else None,
                seed=seed + block_index + j,
            ) if use else None)
        block_index += depth
        cfgs.append(stage)
    return cfgs


class GridPEAttention(PvtV2Attention):
    """timm's PVT spatial-reduction attention (strided-conv SRA, or linear SRA) with GridPE rotating q and k.

    timm's ``__init__`` builds the projections, so the state_dict is timm's (plus ``grid_pe.omegas``). The forward
    is the SRA algorithm with one added step, ``rotate_qk``; it cannot delegate to timm's (TorchScript has no
    ``super()``), and it also takes what timm's refuses: an empty batch and inputs smaller than the SR kernel.

    ``grid_pe`` holds the :class:`~modzoo.layers.grid_pe.GridPE` arguments (``None``: plain attention, same keys as
    timm's). ``num_prefix_tokens`` leading tokens (PVT v1's class token) carry no position and are not rotated.
    """

    def __init__(
            self,
            dim: int,
            num_heads: int = 8,
            sr_ratio: int = 1,
            linear_attn: bool = False,
            qkv_bias: bool = True,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
            num_prefix_tokens: int = 0,
            grid_pe: Optional[Dict] = None,
    ):
        super().__init__(
            dim, num_heads=num_heads, sr_ratio=sr_ratio, linear_attn=linear_attn, qkv_bias=qkv_bias,
            attn_drop=attn_drop, proj_drop=proj_drop)
        if num_prefix_tokens and (sr_ratio > 1 or linear_attn):
            raise ValueError('prefix (class) tokens need sr_ratio 1 and no linear SRA, as in PVT v1 stage 4')
        self.sr_ratio = sr_ratio
        self.pool_size = LINEAR_SRA_POOL if linear_attn else 0
        self.num_prefix_tokens = num_prefix_tokens
        self.grid_pe = GridPE(num_heads, self.head_dim, spatial_dim=2, **grid_pe) if grid_pe is not None else None

    def _reduce_pool(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            # a fixed-size pooling would be baked into traced/exported graphs; an FX graph calls the op at run time
            if is_graph_capture() and not is_fx_tracing():
                return adaptive_avg_pool2d_traceable(x, self.pool_size)
        return F.adaptive_avg_pool2d(x, self.pool_size)

    def _make_tables(
            self,
            height: int,
            width: int,
            dtype: torch.dtype,
            device: torch.device,
            pos_dtype: torch.dtype = torch.float32,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(q_cos, q_sin, k_cos, k_sin) for a height x width query grid."""
        grid_pe = self.grid_pe
        assert grid_pe is not None
        q_cos, q_sin = grid_pe.tables(grid_positions(height, width, dtype=pos_dtype, device=device), dtype,
                                      self.num_prefix_tokens, work_dtype=pos_dtype)
        if self.pool is not None:
            rows = adaptive_pool_centres(height, self.pool_size, pos_dtype, device)
            cols = adaptive_pool_centres(width, self.pool_size, pos_dtype, device)
            grid_r, grid_c = torch.meshgrid(rows, cols, indexing='ij')
            k_pos = torch.stack((grid_r.reshape(-1), grid_c.reshape(-1)), dim=-1)
        elif self.sr is not None:
            sr = self.sr_ratio
            k_pos = grid_positions(reduced_size(height, sr), reduced_size(width, sr), stride=sr,
                                   offset=float(sr // 2), dtype=pos_dtype, device=device)
        else:  # keys are the queries' tokens
            return q_cos, q_sin, q_cos, q_sin
        k_cos, k_sin = grid_pe.tables(k_pos, dtype, work_dtype=pos_dtype)
        return q_cos, q_sin, k_cos, k_sin

    @torch.jit.unused
    def _eager_tables(
            self, height: int, width: int, dtype: torch.dtype, device: torch.device) -> Tuple[torch.Tensor, ...]:
        """The eager tables: float64 positions (exact phases before the final rounding), complex where possible."""
        grid_pe = self.grid_pe
        pos_dtype = torch.float32 if device.type == 'mps' else torch.float64
        tables = self._make_tables(height, width, dtype, device, pos_dtype)
        if dtype in (torch.float32, torch.float64) and grid_pe.head_dim % 2 == 0:
            tables = (grid_pe.complex_table(tables[0], tables[1]), grid_pe.complex_table(tables[2], tables[3]))
        return tables

    @torch.jit.unused
    def _rotate_with(self, q: torch.Tensor, k: torch.Tensor, tables: Tuple[torch.Tensor, ...]):
        grid_pe = self.grid_pe
        if len(tables) == 2:
            return grid_pe.rotate_complex(q, tables[0]), grid_pe.rotate_complex(k, tables[1])
        return grid_pe.rotate(q, tables[0], tables[1]), grid_pe.rotate(k, tables[2], tables[3])

    @torch.jit.unused
    def _rotate_cached(
            self, q: torch.Tensor, k: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Eager path: tables built once per (size, dtype, device)."""
        grid_pe = self.grid_pe
        key = (height, width, q.dtype, q.device)
        tables = grid_pe.cache.get(key)
        if tables is None:
            with torch.no_grad():
                tables = self._eager_tables(height, width, q.dtype, q.device)
            if len(grid_pe.cache) >= grid_pe.cache_size:
                grid_pe.cache.pop(next(iter(grid_pe.cache)))
            grid_pe.cache[key] = tables
        return self._rotate_with(q, k, tables)

    @torch.jit.unused
    def _rotate_fx(
            self, q: torch.Tensor, k: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """FX symbolic tracing: the eager tables built in the graph, so the graph gives eager's exact outputs (timm
        checks FX against eager bit for bit). A proxy has no dtype or device: those of the q projection's weight are
        the ones q has."""
        weight = next(self.q.parameters())
        return self._rotate_with(q, k, self._eager_tables(height, width, weight.dtype, weight.device))

    def rotate_qk(self, q: torch.Tensor, k: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """GridPE on q (the height x width grid, after any prefix tokens) and k (the reduced positions)."""
        grid_pe = self.grid_pe
        assert grid_pe is not None
        if not torch.jit.is_scripting():
            if can_cache():
                return self._rotate_cached(q, k, height, width)
            if is_fx_tracing():
                return self._rotate_fx(q, k, height, width)
        # scripting, tracing, exporting, compiling: real tables built from the (possibly symbolic) size every call
        q_cos, q_sin, k_cos, k_sin = self._make_tables(height, width, q.dtype, q.device)
        return grid_pe.rotate(q, q_cos, q_sin), grid_pe.rotate(k, k_cos, k_sin)

    def reduce(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The spatial reduction: (B, N, C) tokens -> (B, M, C) tokens the keys and values are projected from."""
        if self.pool is None and self.sr is None:
            return x
        B, N, C = x.shape
        x = x.permute(0, 2, 1).reshape(B, C, height, width)
        if self.pool is not None:  # linear SRA: pool to 7x7, 1x1 conv, norm, GELU
            x = self.sr(self._reduce_pool(x)).flatten(2).permute(0, 2, 1)
            return self.act(self.norm(x))
        x = self.sr(pad_to_min_size(x, self.sr_ratio)).flatten(2).permute(0, 2, 1)
        return self.norm(x)

    @torch.jit.unused
    def export_form(self, target: str) -> Optional[nn.Module]:
        """For ExecuTorch: attention as explicit 3-D matmuls (SDPA and 4-D matmuls export ops XNNPACK lacks)."""
        return without_fused_attention(self) if target == 'executorch' else None

    def forward(self, x: torch.Tensor, feat_size: List[int]) -> torch.Tensor:
        B, N, C = x.shape
        H, W = feat_size[0], feat_size[1]
        # explicit sizes (no -1), so an empty batch reshapes too
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        x = self.reduce(x, H, W)
        if self.fused_attn:
            k, v = self.kv(x).reshape(B, x.shape[1], 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        else:  # the ExecuTorch form: no split/squeeze
            k, v = sliced_heads(self.kv(x), self.num_heads, self.head_dim)

        if self.grid_pe is not None:
            q, k = self.rotate_qk(q, k, H, W)

        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.)
        else:
            x = explicit_attention(q, k, v, self.scale, self.attn_drop.p, self.training)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))
