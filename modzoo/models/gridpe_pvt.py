"""GridPE-PVT: Pyramid Vision Transformers v1 and v2 with grid-cell positional encoding in their attention.

GridPE (Li et al., "GridPE: Unifying Positional Encoding in Transformers with a Grid Cell-Inspired Framework",
arXiv:2406.07049) rotates queries and keys by phases ``|w_s| <omega_j, x>`` along three directions 120 degrees
apart (see :mod:`modzoo.layers.grid_pe`), so attention logits depend on relative position only. Here it sits in
PVT's spatial-reduction attention (SRA): queries at the integer (row, col) positions of the stage's grid, keys at
the positions of what they were reduced from: the centres ``sr * i + sr // 2`` of the strided conv's cells, the
centres of the 7x7 adaptive pooling bins (linear SRA, ``b2_li``), or the query grid itself (``sr == 1``).
Positions and the rotation tables follow the input size (any H x W, non-square too). In eager mode the tables are
cached per input size, dtype and device, as complex tables, so the rotation is one complex multiply; while scripting,
tracing, exporting or compiling they are built in the graph from the (possibly symbolic) input size, in real form
(FX symbolic tracing builds eager's complex tables in the graph, so an FX graph gives eager's outputs exactly).

* PVT v2 b0-b5 and b2_li (Wang et al., arXiv:2106.13797) reuse timm's ``pvt_v2`` building blocks. Their state_dict
  is timm's ``pvt_v2_*`` layout plus one persistent buffer per GridPE block (``...attn.grid_pe.omegas``, the fixed
  seeded rotations, no trainable parameter). :func:`checkpoint_filter_fn` fills those buffers in from the seed when
  a plain PVT checkpoint (timm's, or the official whai362 layout, which it converts) is loaded, so those load strictly
  through ``pretrained=True`` / :func:`modzoo.load_checkpoint`; plain ``load_state_dict`` of a timm state dict needs
  the filter (or ``strict=False``). A checkpoint trained with GridPE carries its rotations and refuses to load into a
  model with other GridPE blocks, or none.
* PVT v1 tiny/small/medium/large (Wang et al., arXiv:2102.12122), the paper's GridPE setting: non-overlapping patch
  embeddings, a learned absolute position embedding per stage (resampled bilinearly at other input sizes; GridPE
  comes on top of it, as in the paper) and a plain MLP. The registered models classify from global average pooling,
  so ``forward_features`` is an NCHW map like every other modzoo backbone; ``class_token=True`` restores the
  official stage-4 class token (never rotated: it has no position), whose classifier the official ImageNet weights
  were trained with. With a class token ``forward_features`` returns the (B, 1 + N, C) token sequence, as timm's
  ViTs do.

``gridpe=False`` gives the plain backbone (PVT v2 then computes exactly what timm's ``pvt_v2_*`` does), ``gridpe_blocks=
'first'`` the paper's placement (first block of each stage), ``scale_mode='optimal'`` the paper's e^(1/p) scale ratio
with the coarsest wavelength spanning each stage's grid at ``img_size``.

Input sizes: PVT v2's overlapping convs give ``ceil(H / stride)`` rows; PVT v1's non-overlapping patch convs zero-pad
the bottom/right edge so they do the same instead of dropping pixels (the official code drops them). The
spatial-reduction conv (kernel = stride = sr) pads an input smaller than its kernel to one cell (the official code
and timm fail there) and otherwise floors, as they do.

Export: ``zoo_gridpe_pvt_v2_b2_li`` pools its keys with ``AdaptiveAvgPool2d(7)``, which ONNX exporters bake to the
export resolution (a silently wrong model at any other size). While tracing or exporting, this module computes the
same pooling as two averaging matmuls built from the traced input size, so the exported graph follows the input
size; eager mode keeps ``F.adaptive_avg_pool2d`` (numerically identical to timm).
"""
import logging
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerNorm, trunc_normal_
from timm.models import checkpoint, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models.pvt_v2 import Attention as PvtV2Attention
from timm.models.pvt_v2 import MlpWithDepthwiseConv, OverlapPatchEmbed
from timm.models.pvt_v2 import checkpoint_filter_fn as timm_pvt_v2_filter_fn

from modzoo.layers import (
    adaptive_avg_pool2d_traceable, check_image_input, drop_path_rates, pad_for_patches, pad_to_min_size)
from modzoo.layers.grid_pe import GridPE, adaptive_pool_centres, grid_positions
from modzoo.utils.tracing import can_cache, is_fx_tracing, is_graph_capture, is_tracing
from ._builder import build_zoo_model
from ._checkpoint import unwrap_state_dict, verify_state_dict

__all__ = ['GridPEPyramidVisionTransformer', 'GridPEAttention', 'GridPEBlock', 'checkpoint_filter_fn']

_logger = logging.getLogger(__name__)

_LINEAR_SRA_POOL = 7  # PVT v2-li's fixed key grid


def reduced_size(size: int, sr_ratio: int) -> int:
    """Cells of the spatial-reduction conv along one side (inputs smaller than the kernel are padded to one cell)."""
    return max(size // sr_ratio, 1)


# FX records calls to these instead of tracing into them: they branch on sizes, which a proxy does not have
torch.fx.wrap('pad_to_min_size')
torch.fx.wrap('reduced_size')


class GridPEAttention(PvtV2Attention):
    """timm's PVT spatial-reduction attention (strided-conv SRA, or linear SRA) with GridPE rotating q and k.

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
        self.pool_size = _LINEAR_SRA_POOL if linear_attn else 0
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
    def _eager_tables(self, height: int, width: int, dtype: torch.dtype, device: torch.device) -> Tuple[torch.Tensor, ...]:
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
    def _rotate_cached(self, q: torch.Tensor, k: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
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
    def _rotate_fx(self, q: torch.Tensor, k: torch.Tensor, height: int, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
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

    def forward(self, x: torch.Tensor, feat_size: List[int]) -> torch.Tensor:
        B, N, C = x.shape
        H, W = feat_size[0], feat_size[1]
        # explicit sizes (no -1), so an empty batch reshapes too
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

        if self.pool is not None:
            x = x.permute(0, 2, 1).reshape(B, C, H, W)
            x = self.sr(self._reduce_pool(x)).flatten(2).permute(0, 2, 1)
            x = self.act(self.norm(x))
        elif self.sr is not None:
            x = x.permute(0, 2, 1).reshape(B, C, H, W)
            x = self.sr(pad_to_min_size(x, self.sr_ratio)).flatten(2).permute(0, 2, 1)
            x = self.norm(x)
        k, v = self.kv(x).reshape(B, x.shape[1], 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

        if self.grid_pe is not None:
            q, k = self.rotate_qk(q, k, H, W)

        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class TokenMlp(nn.Module):
    """PVT v1's MLP (fc1 -> GELU -> fc2); ``feat_size`` only keeps the block interface of the conv FFN."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, feat_size: List[int]) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class GridPEBlock(nn.Module):
    """Pre-norm transformer block: GridPE-SRA, then the conv FFN (PVT v2) or the plain MLP (PVT v1)."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            mlp_ratio: float = 4.,
            sr_ratio: int = 1,
            linear_attn: bool = False,
            conv_ffn: bool = True,
            qkv_bias: bool = True,
            proj_drop: float = 0.,
            attn_drop: float = 0.,
            drop_path: float = 0.,
            num_prefix_tokens: int = 0,
            grid_pe: Optional[Dict] = None,
            norm_layer=LayerNorm,
    ):
        super().__init__()
        if num_prefix_tokens and conv_ffn:
            raise ValueError("prefix (class) tokens have no place in PVT v2's depthwise-conv FFN")
        self.norm1 = norm_layer(dim)
        self.attn = GridPEAttention(
            dim,
            num_heads=num_heads,
            sr_ratio=sr_ratio,
            linear_attn=linear_attn,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            num_prefix_tokens=num_prefix_tokens,
            grid_pe=grid_pe,
        )
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim)
        hidden = int(dim * mlp_ratio)
        if conv_ffn:
            self.mlp = MlpWithDepthwiseConv(dim, hidden, drop=proj_drop, extra_relu=linear_attn)
        else:
            self.mlp = TokenMlp(dim, hidden, drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor, feat_size: List[int]) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), feat_size))
        x = x + self.drop_path2(self.mlp(self.norm2(x), feat_size))
        return x


class PatchEmbed(nn.Module):
    """PVT v1 patch embedding: non-overlapping ``patch x patch`` conv (bottom/right zero padding) + LayerNorm, NHWC out."""

    def __init__(self, in_chs: int, out_chs: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chs, out_chs, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(pad_for_patches(x, self.patch_size))
        return self.norm(x.permute(0, 2, 3, 1))


class GridPEStage(nn.Module):
    """Optional stride-2 patch embedding (NCHW in), optional learned position embedding, blocks, optional norm.

    Stage 1 takes the stem's NHWC output instead. ``forward`` returns NCHW; :meth:`forward_tokens` returns the token
    sequence (with the prefix tokens it was given) and the grid size.
    """

    def __init__(
            self,
            dim_out: int,
            depth: int,
            downsample: Optional[nn.Module],
            pos_embed_grid: Optional[Tuple[int, int]] = None,
            num_prefix_tokens: int = 0,
            out_norm: bool = True,
            pos_drop: float = 0.,
            drop_path: Sequence[float] = (),
            grid_pe: Sequence[Optional[Dict]] = (),
            norm_layer=LayerNorm,
            **block_kwargs,
    ):
        super().__init__()
        self.grad_checkpointing = False
        self.num_prefix_tokens = num_prefix_tokens
        self.downsample = downsample
        if pos_embed_grid is not None:
            self.pos_embed_grid = (int(pos_embed_grid[0]), int(pos_embed_grid[1]))
            self.pos_embed = nn.Parameter(
                torch.zeros(1, num_prefix_tokens + self.pos_embed_grid[0] * self.pos_embed_grid[1], dim_out))
        else:
            self.pos_embed_grid = (0, 0)
            self.pos_embed = None
        self.pos_drop = nn.Dropout(pos_drop)
        self.blocks = nn.ModuleList([
            GridPEBlock(
                dim_out,
                drop_path=drop_path[i] if drop_path else 0.,
                num_prefix_tokens=num_prefix_tokens,
                grid_pe=grid_pe[i] if grid_pe else None,
                norm_layer=norm_layer,
                **block_kwargs,
            )
            for i in range(depth)
        ])
        self.norm = norm_layer(dim_out) if out_norm else nn.Identity()

    def _resized_pos_embed(self, pos_embed: torch.Tensor, height: int, width: int) -> torch.Tensor:
        prefix, grid = pos_embed[:, :self.num_prefix_tokens], pos_embed[:, self.num_prefix_tokens:]
        H0, W0 = self.pos_embed_grid
        exporting = False
        if not torch.jit.is_scripting():  # (an if statement: TorchScript compiles only the scripting branch)
            exporting = is_graph_capture()
        # exported graphs always resample (the identity at the training size), so they follow the input size
        if exporting or height != H0 or width != W0:
            grid = grid.reshape(1, H0, W0, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(height, width), mode='bilinear', align_corners=False)
            grid = grid.flatten(2).transpose(1, 2)
        return torch.cat((prefix, grid), dim=1) if self.num_prefix_tokens else grid

    def forward_tokens(
            self, x: torch.Tensor, prefix_tokens: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, List[int]]:
        if self.downsample is not None:
            x = self.downsample(x)  # NCHW -> NHWC
        B, H, W, C = x.shape
        x = x.flatten(1, 2)
        if prefix_tokens is not None:
            x = torch.cat((prefix_tokens.expand(B, -1, -1), x), dim=1)
        pos_embed = self.pos_embed
        if pos_embed is not None:
            x = self.pos_drop(x + self._resized_pos_embed(pos_embed, H, W))
        feat_size = [H, W]
        for block in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x, feat_size)
            else:
                x = block(x, feat_size)
        return self.norm(x), feat_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, feat_size = self.forward_tokens(x)
        return _tokens_to_nchw(x, feat_size, self.num_prefix_tokens)


def _tokens_to_nchw(x: torch.Tensor, feat_size: List[int], num_prefix_tokens: int = 0) -> torch.Tensor:
    x = x[:, num_prefix_tokens:]
    return x.reshape(x.shape[0], feat_size[0], feat_size[1], x.shape[-1]).permute(0, 3, 1, 2).contiguous()


class GridPEPyramidVisionTransformer(nn.Module):
    """Pyramid Vision Transformer (v1 or v2) with GridPE in its spatial-reduction attention.

    Args:
        in_chans: input image channels.
        num_classes: classifier outputs (0 for no classifier).
        global_pool: 'avg' (default without a class token), '' (no pooling) or 'token' (the class token's output,
            the default with ``class_token``).
        version: 2 (overlapping patch embeddings, conv FFN, per-stage norms) or 1 (non-overlapping patch
            embeddings, learned position embeddings, plain MLP, one final norm).
        depths / embed_dims / num_heads / sr_ratios / mlp_ratios: per-stage configuration.
        qkv_bias: biases on the q and kv projections.
        linear: linear SRA (7x7 adaptive pooling + 1x1 conv before kv, ReLU in the FFN), PVT v2 only.
        class_token: PVT v1's stage-4 class token (classifier on it; ``forward_features`` returns tokens).
        img_size: training resolution: PVT v1's position-embedding grids and the 'optimal' GridPE wavelengths.
        gridpe: put GridPE in the attention (False: the plain PVT).
        gridpe_blocks: 'all' blocks (default) or the 'first' block of each stage (the paper's placement).
        scale_mode: 'rope' (released code) or 'optimal' (ratio e^(1/2), coarsest wavelength = the stage's grid).
        gridpe_base: the RoPE base of scale_mode 'rope'.
        gridpe_seed: seed of block 0's rotations; block i (counted over all stages) uses ``gridpe_seed + i``.
        drop_rate / pos_drop_rate / proj_drop_rate / attn_drop_rate / drop_path_rate: head dropout, position
            embedding dropout (v1), projection dropout, attention dropout, stochastic depth (linear rule).
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: Optional[str] = None,
            version: int = 2,
            depths: Sequence[int] = (3, 4, 6, 3),
            embed_dims: Sequence[int] = (64, 128, 320, 512),
            num_heads: Sequence[int] = (1, 2, 5, 8),
            sr_ratios: Sequence[int] = (8, 4, 2, 1),
            mlp_ratios: Sequence[float] = (8., 8., 4., 4.),
            qkv_bias: bool = True,
            linear: bool = False,
            class_token: bool = False,
            img_size: Union[int, Tuple[int, int]] = 224,
            gridpe: bool = True,
            gridpe_blocks: str = 'all',
            scale_mode: str = 'rope',
            gridpe_base: float = 10000.,
            gridpe_seed: int = 0,
            drop_rate: float = 0.,
            pos_drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            norm_layer=None,
    ):
        super().__init__()
        num_stages = len(depths)
        for name, values in (('embed_dims', embed_dims), ('num_heads', num_heads), ('sr_ratios', sr_ratios),
                             ('mlp_ratios', mlp_ratios)):
            if len(values) != num_stages:
                raise ValueError(f'{name} needs one entry per stage ({num_stages}), got {list(values)}')
        if version not in (1, 2):
            raise ValueError(f'version must be 1 (PVT) or 2 (PVT v2), got {version}')
        if linear and version != 2:
            raise ValueError('linear SRA exists in PVT v2 only')
        if class_token and version != 1:
            raise ValueError('class_token exists in PVT v1 only (PVT v2 classifies by average pooling)')
        if gridpe_blocks not in ('all', 'first'):
            raise ValueError(f"gridpe_blocks must be 'all' or 'first', got {gridpe_blocks!r}")
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        norm_layer = norm_layer or LayerNorm  # eps 1e-6 in the blocks and stage norms, as in both official codes
        self.version = version
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.embed_dims = list(embed_dims)
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.num_prefix_tokens = 1 if class_token else 0
        self.grad_checkpointing = False

        if version == 2:
            self.patch_embed = OverlapPatchEmbed(patch_size=7, stride=4, in_chans=in_chans, embed_dim=embed_dims[0])
        else:
            self.patch_embed = PatchEmbed(in_chans, embed_dims[0], patch_size=4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims[-1])) if class_token else None

        dpr = drop_path_rates(drop_path_rate, depths)
        stages = []
        self.feature_info = []
        block_index = 0
        prev_dim = embed_dims[0]
        for i in range(num_stages):
            stride = 4 * 2 ** i
            stage_grid = (math.ceil(img_size[0] / stride), math.ceil(img_size[1] / stride))
            grid_pe_cfgs = []
            for j in range(depths[i]):
                use = gridpe and (gridpe_blocks == 'all' or j == 0)
                grid_pe_cfgs.append(dict(
                    scale_mode=scale_mode,
                    base=gridpe_base,
                    max_wavelength=float(max(stage_grid)) if scale_mode == 'optimal' else None,
                    seed=gridpe_seed + block_index + j,
                ) if use else None)
            block_index += depths[i]
            if i == 0:
                downsample = None
            elif version == 2:
                downsample = OverlapPatchEmbed(patch_size=3, stride=2, in_chans=prev_dim, embed_dim=embed_dims[i])
            else:
                downsample = PatchEmbed(prev_dim, embed_dims[i], patch_size=2)
            last = i == num_stages - 1
            stages.append(GridPEStage(
                embed_dims[i],
                depth=depths[i],
                downsample=downsample,
                pos_embed_grid=stage_grid if version == 1 else None,
                num_prefix_tokens=self.num_prefix_tokens if last else 0,
                out_norm=version == 2,
                pos_drop=pos_drop_rate,
                drop_path=dpr[i],
                grid_pe=grid_pe_cfgs,
                norm_layer=norm_layer,
                num_heads=num_heads[i],
                mlp_ratio=mlp_ratios[i],
                sr_ratio=sr_ratios[i],
                linear_attn=linear,
                conv_ffn=version == 2,
                qkv_bias=qkv_bias,
                proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate,
            ))
            prev_dim = embed_dims[i]
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=stride, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        # PVT v1 normalises the last stage's tokens once; PVT v2's stages end in their own norms
        self.norm = norm_layer(embed_dims[-1]) if version == 1 else nn.Identity()

        if global_pool is None:
            global_pool = 'token' if class_token else 'avg'
        self.global_pool = self._check_pool(global_pool)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

        if version == 2:
            self.apply(_init_weights_v2)
        else:
            self.apply(_init_weights_v1)
            for stage in self.stages:
                trunc_normal_(stage.pos_embed, std=.02)
            if self.cls_token is not None:
                trunc_normal_(self.cls_token, std=.02)

    def _check_pool(self, global_pool: str) -> str:
        allowed = ('avg', '', 'token') if self.cls_token is not None else ('avg', '')
        if global_pool not in allowed:
            raise ValueError(f'global_pool must be one of {allowed} for this model, got {global_pool!r}')
        return global_pool

    @torch.jit.ignore
    def no_weight_decay(self):
        return {'cls_token'} if self.cls_token is not None else set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(
            stem=r'^cls_token|^patch_embed',
            blocks=[
                (r'^stages\.(\d+)', None),
                (r'^norm', (99999,)),
            ] if coarse else [
                (r'^stages\.(\d+)\.(?:downsample|pos_embed)', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^stages\.(\d+)\.norm', (99998,)),
                (r'^norm', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = self._check_pool(global_pool)
        device = self.head.weight.device if isinstance(self.head, nn.Linear) else None
        self.head = nn.Linear(self.num_features, num_classes, device=device) if num_classes > 0 else nn.Identity()

    def stage_transitions(self) -> List[str]:
        """Names of the stride-2 patch embeddings of stages 2-4 (they take NCHW input); used by the SFM add-on."""
        return [f'stages.{i}.downsample' for i in range(1, len(self.stages))]

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            check_image_input(x, self.in_chans, type(self).__name__)
        return self.patch_embed(x)  # NHWC

    def _norm_nchw(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.norm, nn.Identity):
            return x
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    @torch.jit.export
    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward through the network, returning the stage outputs (NCHW, strides 4/8/16/32).

        Args:
            indices: taps to return (None: all, int n: the last n, sequence: those indices).
            norm: apply PVT v1's final norm to the last stage's tap (PVT v2's stages are always normalised).
            stop_early: stop after the deepest requested tap.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the list of taps.
        """
        if output_fmt != 'NCHW':
            raise ValueError('GridPE-PVT intermediates are NCHW only')
        intermediates: List[torch.Tensor] = []
        num_stages = len(self.stages)
        take_indices, max_index = feature_take_indices(num_stages, indices)
        last_idx = num_stages - 1
        x = self._embed(x)
        # TorchScript unrolls loops over module lists and allows no `break`: later stages are skipped instead
        for idx, stage in enumerate(self.stages):
            if not stop_early or idx <= max_index:
                if idx == last_idx and self.cls_token is not None:
                    tokens, feat_size = stage.forward_tokens(x, self.cls_token)
                    tokens_normed = self.norm(tokens)
                    x = _tokens_to_nchw(tokens_normed if norm else tokens, feat_size, self.num_prefix_tokens)
                    if idx in take_indices:
                        intermediates.append(x)
                    x = tokens_normed
                else:
                    x = stage(x)
                    if idx in take_indices:
                        intermediates.append(self._norm_nchw(x) if norm and idx == last_idx else x)
                    if idx == last_idx:
                        x = self._norm_nchw(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the deepest requested tap (and the norm/head when asked)."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:
            # features now end at the last kept tap; the class token and head belonged to the dropped last stage
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
            self.cls_token = None
            self.num_prefix_tokens = 0
            self.global_pool = 'avg' if self.global_pool == 'token' else self.global_pool
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW features after the final norm; (B, 1 + N, C) tokens for PVT v1 with ``class_token``."""
        x = self._embed(x)
        last_idx = len(self.stages) - 1
        for idx, stage in enumerate(self.stages):
            if idx == last_idx and self.cls_token is not None:
                tokens, _ = stage.forward_tokens(x, self.cls_token)
                x = self.norm(tokens)
            else:
                x = stage(x)
                if idx == last_idx:
                    x = self._norm_nchw(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        tokens = x.dim() == 3
        if not torch.jit.is_scripting():
            if is_tracing():  # an FX proxy has no rank: tokens are what forward_features gives with a class token
                tokens = self.cls_token is not None
        if self.global_pool == 'avg':
            x = x[:, self.num_prefix_tokens:].mean(dim=1) if tokens else x.mean(dim=(-2, -1))
        elif self.global_pool == 'token':
            x = x[:, 0]
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights_v2(module: nn.Module) -> None:
    # PVT v2 (official and timm): trunc-normal Linear, fan-out normal convs
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0., math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _init_weights_v1(module: nn.Module) -> None:
    # PVT v1 (official): trunc-normal Linear; the patch and SR convs keep PyTorch's default init
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _remap_official_v1_key(key: str) -> str:
    """One official PVT v1 (whai362 ``classification/pvt.py``) key -> modzoo layout."""
    key = re.sub(r'^patch_embed1\.', 'patch_embed.', key)
    key = re.sub(r'^patch_embed(\d)\.', lambda m: f'stages.{int(m.group(1)) - 1}.downsample.', key)
    key = re.sub(r'^pos_embed(\d)$', lambda m: f'stages.{int(m.group(1)) - 1}.pos_embed', key)
    key = re.sub(r'^block(\d)\.(\d+)\.', lambda m: f'stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.', key)
    return key


def _resample_pos_embed(pos_embed: torch.Tensor, num_prefix: int, grid: Tuple[int, int]) -> torch.Tensor:
    """Bilinearly resample a square position-embedding grid trained at another input size to ``grid``."""
    prefix, tokens = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    side = math.isqrt(tokens.shape[1])
    if side * side != tokens.shape[1]:
        raise ValueError(f'cannot resample a non-square position embedding of {tokens.shape[1]} tokens')
    tokens = tokens.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    tokens = F.interpolate(tokens.float(), size=grid, mode='bilinear', align_corners=False).to(pos_embed.dtype)
    return torch.cat((prefix, tokens.flatten(2).transpose(1, 2)), dim=1)


def _adapt_v1(state_dict: Dict[str, torch.Tensor], model: GridPEPyramidVisionTransformer) -> Dict[str, torch.Tensor]:
    """Fit a PVT v1 checkpoint's class token and position-embedding grids to the model."""
    last = len(model.stages) - 1
    last_pos = f'stages.{last}.pos_embed'
    if 'cls_token' in state_dict and model.cls_token is None:
        # the class token and its position-embedding row go, as in mmdet's pvt_convert: right for a backbone
        head = state_dict.get('head.weight')
        if model.num_classes > 0 and head is not None and head.shape[0] == model.num_classes:
            # the filter cannot tell a classifier from a features_only build (timm drops the head after it), so
            # a classifier that may be used gets a warning rather than an error
            _logger.warning(
                'This PVT v1 checkpoint classifies from its class token, but the model (class_token=False) averages '
                'patch tokens: its classifier output is not the checkpoint\'s. Build with class_token=True for the '
                'checkpoint\'s classifier; as a backbone (features_only, a new head) the weights are fine.')
        del state_dict['cls_token']
        if last_pos in state_dict:
            state_dict[last_pos] = state_dict[last_pos][:, 1:]
    for i, stage in enumerate(model.stages):
        key = f'stages.{i}.pos_embed'
        value, target = state_dict.get(key), stage.pos_embed
        if value is None or target is None or value.shape == target.shape or value.shape[-1] != target.shape[-1]:
            continue
        state_dict[key] = _resample_pos_embed(value, stage.num_prefix_tokens, stage.pos_embed_grid)
        _logger.info('Resampled %s from %s to %s', key, tuple(value.shape), tuple(target.shape))
    return state_dict


def checkpoint_filter_fn(state_dict, model: GridPEPyramidVisionTransformer, verify: bool = True) -> Dict[str, torch.Tensor]:
    """Convert any PVT / GridPE-PVT checkpoint to this model's layout.

    Accepts modzoo and timm ``pvt_v2_*`` state dicts, the official whai362 layouts of PVT v2 (``patch_embed{i}``,
    ``block{i}``, ``norm{i}``, ``dwconv.dwconv``) and PVT v1 (plus ``pos_embed{i}``, ``cls_token``), in any container
    (``model``/``state_dict``/EMA, ``module.``/``backbone.`` prefixes). PVT v1 position embeddings trained at another
    size are resampled. A plain PVT checkpoint in a GridPE model gets the model's seeded GridPE rotations (a fine-tuning
    start: the outputs are not the plain model's). Anything else that does not fit raises
    :class:`~modzoo.models.CheckpointMismatchError` listing the keys.
    """
    state_dict = unwrap_state_dict(state_dict)
    state_dict = _from_mmdet_pvt(state_dict)  # mmdet's own PVT / PVTv2 backbones
    if 'patch_embed1.proj.weight' in state_dict:  # official whai362 layout
        if model.version == 2:
            state_dict = timm_pvt_v2_filter_fn(state_dict, model)
        else:
            state_dict = {_remap_official_v1_key(k): v for k, v in state_dict.items()}
    if model.version == 1:
        state_dict = _adapt_v1(state_dict, model)

    model_sd = model.state_dict()
    model_pe = [k for k in model_sd if k.endswith('.grid_pe.omegas')]
    checkpoint_pe = [k for k in state_dict if k.endswith('.grid_pe.omegas')]
    hint = ''
    if model_pe and not checkpoint_pe:
        for key in model_pe:
            state_dict[key] = model_sd[key].clone()
        _logger.warning(
            'Loading a plain PVT checkpoint into a GridPE model: GridPE adds fixed rotations (seeded buffers) to %d '
            'attention blocks, so the outputs differ from the plain PVT until the model is fine-tuned.', len(model_pe))
    elif checkpoint_pe and set(checkpoint_pe) != set(model_pe):
        hint = ('The checkpoint was trained with GridPE in other blocks (its *.grid_pe.omegas buffers): build the '
                'model with the same gridpe / gridpe_blocks settings (gridpe=True, gridpe_blocks="all" or "first").')
    if verify:
        verify_state_dict(state_dict, model, hint=hint)
    return state_dict


def _create_gridpe_pvt(variant: str, pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    return build_zoo_model(GridPEPyramidVisionTransformer, variant, pretrained, checkpoint_filter_fn, **kwargs)


_PVT_RELEASE = 'https://github.com/whai362/PVT/releases/download/v2/'
_V2_NOTE = ('ImageNet-1k weights of the plain PVT v2 (timm hub copy, or the official whai362 file): they load '
            'strictly, and with gridpe=True they are a fine-tuning start, not a GridPE-trained model')
_V1_NOTE = ('ImageNet-1k weights of the plain PVT v1 (official whai362 file), trained with a class-token classifier: '
            'class_token=True reproduces it; the default (average-pooling) model takes them as a backbone (its '
            'classifier then warns). With gridpe=True they are a fine-tuning start')


def _cfg(url: str = '', **kwargs) -> Dict:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': .9, 'interpolation': 'bicubic', 'fixed_input_size': False,
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj', 'classifier': 'head',
        'license': 'apache-2.0', 'paper_ids': 'arXiv:2406.07049',
        'paper_name': 'GridPE: Unifying Positional Encoding in Transformers with a Grid Cell-Inspired Framework',
        'origin_url': 'https://github.com/whai362/PVT',
        **kwargs,
    }


def _v2_cfg(name: str) -> Dict:
    return _cfg(_PVT_RELEASE + name + '.pth', hf_hub_id=f'timm/{name}.in1k', notes=(_V2_NOTE,))


def _v1_cfg(name: str) -> Dict:
    return _cfg(_PVT_RELEASE + name + '.pth', notes=(_V1_NOTE,))


default_cfgs = generate_default_cfgs({
    'zoo_gridpe_pvt_v2_b0.in1k': _v2_cfg('pvt_v2_b0'),
    'zoo_gridpe_pvt_v2_b1.in1k': _v2_cfg('pvt_v2_b1'),
    'zoo_gridpe_pvt_v2_b2.in1k': _v2_cfg('pvt_v2_b2'),
    'zoo_gridpe_pvt_v2_b2_li.in1k': _v2_cfg('pvt_v2_b2_li'),
    'zoo_gridpe_pvt_v2_b3.in1k': _v2_cfg('pvt_v2_b3'),
    'zoo_gridpe_pvt_v2_b4.in1k': _v2_cfg('pvt_v2_b4'),
    'zoo_gridpe_pvt_v2_b5.in1k': _v2_cfg('pvt_v2_b5'),
    'zoo_gridpe_pvt_v1_tiny.in1k': _v1_cfg('pvt_tiny'),
    'zoo_gridpe_pvt_v1_small.in1k': _v1_cfg('pvt_small'),
    'zoo_gridpe_pvt_v1_medium.in1k': _v1_cfg('pvt_medium'),
    'zoo_gridpe_pvt_v1_large.in1k': _v1_cfg('pvt_large'),
})

_WIDE = (64, 128, 320, 512)


def _v2(depths, embed_dims=_WIDE, **kwargs) -> Dict:
    return dict(version=2, depths=depths, embed_dims=embed_dims, num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1),
                **{'mlp_ratios': (8, 8, 4, 4), **kwargs})


def _v1(depths) -> Dict:
    return dict(version=1, depths=depths, embed_dims=_WIDE, num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1),
                mlp_ratios=(8, 8, 4, 4))


@register_model
def zoo_gridpe_pvt_v2_b0(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT v2-B0: widths 32-256, depths 2-2-2-2 (head_dim 32: 30 channels rotate, 2 pass through)."""
    return _create_gridpe_pvt('zoo_gridpe_pvt_v2_b0', pretrained, **dict(_v2((2, 2, 2, 2), (32, 64, 160, 256)), **kwargs))


@register_model
def zoo_gridpe_pvt_v2_b1(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT v2-B1: widths 64-512, depths 2-2-2-2 (head_dim 64: 60 channels rotate, 4 pass through)."""
    return _create_gridpe_pvt('zoo_gridpe_pvt_v2_b1', pretrained, **dict(_v2((2, 2, 2, 2)), **kwargs))


@register_model
def zoo_gridpe_pvt_v2_b2(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT v2-B2: depths 3-4-6-3."""
    return _create_gridpe_pvt('zoo_gridpe_pvt_v2_b2', pretrained, **dict(_v2((3, 4, 6, 3)), **kwargs))


@register_model
def zoo_gridpe_pvt_v2_b2_li(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT v2-B2-Li: linear SRA, keys pooled to 7x7 cells (positions: the bins' centres).

    ONNX: exported through this module, the pooling follows the input size (see the module docstring); timm's own
    ``pvt_v2_b2_li`` exports with the 7x7 pooling baked to the export resolution.
    """
    return _create_gridpe_pvt('zoo_gridpe_pvt_v2_b2_li', pretrained, **dict(_v2((3, 4, 6, 3), linear=True), **kwargs))


@register_model
def zoo_gridpe_pvt_v2_b3(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT v2-B3: depths 3-4-18-3."""
    return _create_gridpe_pvt('zoo_gridpe_pvt_v2_b3', pretrained, **dict(_v2((3, 4, 18, 3)), **kwargs))


@register_model
def zoo_gridpe_pvt_v2_b4(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT v2-B4: depths 3-8-27-3."""
    return _create_gridpe_pvt('zoo_gridpe_pvt_v2_b4', pretrained, **dict(_v2((3, 8, 27, 3)), **kwargs))


@register_model
def zoo_gridpe_pvt_v2_b5(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT v2-B5: depths 3-6-40-3, MLP ratio 4 in every stage."""
    return _create_gridpe_pvt(
        'zoo_gridpe_pvt_v2_b5', pretrained, **dict(_v2((3, 6, 40, 3), mlp_ratios=(4, 4, 4, 4)), **kwargs))


@register_model
def zoo_gridpe_pvt_v1_tiny(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT-Tiny (PVT v1): depths 2-2-2-2."""
    return _create_gridpe_pvt('zoo_gridpe_pvt_v1_tiny', pretrained, **dict(_v1((2, 2, 2, 2)), **kwargs))


@register_model
def zoo_gridpe_pvt_v1_small(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT-Small (PVT v1, the configuration of the paper's PVT experiments): depths 3-4-6-3."""
    return _create_gridpe_pvt('zoo_gridpe_pvt_v1_small', pretrained, **dict(_v1((3, 4, 6, 3)), **kwargs))


@register_model
def zoo_gridpe_pvt_v1_medium(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT-Medium (PVT v1): depths 3-4-18-3."""
    return _create_gridpe_pvt('zoo_gridpe_pvt_v1_medium', pretrained, **dict(_v1((3, 4, 18, 3)), **kwargs))


@register_model
def zoo_gridpe_pvt_v1_large(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT-Large (PVT v1): depths 3-8-27-3."""
    return _create_gridpe_pvt('zoo_gridpe_pvt_v1_large', pretrained, **dict(_v1((3, 8, 27, 3)), **kwargs))


def _from_mmdet_pvt(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """MMDetection's ``PyramidVisionTransformer`` / ``PyramidVisionTransformerV2`` layout -> the official whai362 one.

    mmdet's layout (``layers.{i}.0`` patch embedding, ``layers.{i}.1.{j}`` blocks behind an optional position
    embedding module, ``layers.{i}.2`` stage norm, ``nn.MultiheadAttention`` q/k/v in one ``in_proj``, 1x1-conv FFN
    layers) is the inverse of mmdet's own ``pvt_convert``; the official layout then converts as usual. Other layouts
    pass through unchanged.
    """
    if 'layers.0.0.projection.weight' not in state_dict:
        return state_dict
    with_pos_embed = any(re.fullmatch(r'layers\.\d+\.1\.0\.pos_embed', k) for k in state_dict)
    conv_ffn = any(re.search(r'\.ffn\.layers\.4\.', k) for k in state_dict)
    converted = {}
    for key, value in state_dict.items():
        m = re.fullmatch(r'layers\.(\d+)\.(\d+)\.(.+)', key)
        if m is None:
            converted[key] = value
            continue
        stage, part, rest = int(m.group(1)) + 1, int(m.group(2)), m.group(3)
        if part == 0:  # patch embedding
            converted[f'patch_embed{stage}.' + rest.replace('projection.', 'proj.')] = value
        elif part == 2:  # stage norm (PVT v2)
            converted[f'norm{stage}.{rest}'] = value
        elif rest == '0.pos_embed' and with_pos_embed:
            converted[f'pos_embed{stage}'] = value
        else:
            index, _, name = rest.partition('.')
            block = f'block{stage}.{int(index) - with_pos_embed}.'
            attn = re.fullmatch(r'attn\.attn\.in_proj_(weight|bias)', name)
            if attn:  # q, then k and v: the official q and kv projections
                dim = value.shape[0] // 3
                converted[block + f'attn.q.{attn.group(1)}'] = value[:dim]
                converted[block + f'attn.kv.{attn.group(1)}'] = value[dim:]
                continue
            name = name.replace('attn.attn.out_proj.', 'attn.proj.')
            ffn = re.fullmatch(r'ffn\.layers\.(\d)\.(weight|bias)', name)
            if ffn:
                layer = {'0': 'fc1', '1': 'dwconv.dwconv', '4' if conv_ffn else '3': 'fc2'}[ffn.group(1)]
                if layer in ('fc1', 'fc2') and value.dim() == 4:
                    value = value.flatten(1)  # 1x1 conv -> linear
                name = f'mlp.{layer}.{ffn.group(2)}'
            converted[block + name] = value
    return converted
