"""GridPE-PVT v1: Pyramid Vision Transformer with grid-cell positional encoding in its attention.

GridPE (Li et al., "GridPE: Unifying Positional Encoding in Transformers with a Grid Cell-Inspired Framework",
arXiv:2406.07049) rotates queries and keys by phases ``|w_s| <omega_j, x>`` along three directions 120 degrees
apart (see :mod:`modzoo.layers.grid_pe`), so attention logits depend on relative position only. Here it sits in
PVT's spatial-reduction attention (:class:`~modzoo.layers.grid_pe_attention.GridPEAttention`).

PVT v1 tiny/small/medium/large (Wang et al., arXiv:2102.12122) is the paper's GridPE setting: non-overlapping patch
embeddings, a learned absolute position embedding per stage (resampled bilinearly at other input sizes; GridPE comes
on top of it, as in the paper) and a plain MLP. The registered models classify from global average pooling, so
``forward_features`` is an NCHW map like every other modzoo backbone; ``class_token=True`` restores the official
stage-4 class token (never rotated: it has no position), whose classifier the official ImageNet weights were trained
with. With a class token ``forward_features`` returns the (B, 1 + N, C) token sequence, as timm's ViTs do.

The state_dict holds one persistent buffer per GridPE block (``...attn.grid_pe.omegas``, the fixed seeded rotations,
no trainable parameter); :func:`checkpoint_filter_fn` fills them in from the seed when a plain PVT checkpoint (the
official whai362 layout, which it converts) is loaded.

``gridpe=False`` gives the plain backbone, ``gridpe_blocks='first'`` the paper's placement (first block of each
stage), ``scale_mode='optimal'`` the paper's e^(1/p) scale ratio with the coarsest wavelength spanning each stage's
grid at ``img_size``.

Input sizes: the non-overlapping patch convs zero-pad the bottom/right edge so they give ``ceil(H / stride)`` rows
instead of dropping pixels (the official code drops them). The spatial-reduction conv (kernel = stride = sr) pads an
input smaller than its kernel to one cell (the official code fails there) and otherwise floors, as it does.
"""
import logging
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerNorm, Mlp, trunc_normal_
from timm.models import checkpoint, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from modzoo.layers import check_image_input, drop_path_rates, pad_for_patches
from modzoo.layers.arg_check import check_model_args
from modzoo.layers.grid_pe_attention import GridPEAttention, grid_pe_block_cfgs
from modzoo.utils.tracing import is_graph_capture, is_tracing
from ._builder import build_zoo_model
from ._checkpoint import register_checkpoint_family
from ._pvt_convert import from_mmdet_pvt, gridpe_hint, gridpe_new_layers

__all__ = ['GridPEPyramidVisionTransformer', 'GridPEBlock', 'GridPEStage', 'checkpoint_filter_fn']

_logger = logging.getLogger(__name__)


class GridPEBlock(nn.Module):
    """Pre-norm transformer block: GridPE spatial-reduction attention, then the plain MLP (fc1 -> GELU -> fc2)."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            mlp_ratio: float = 4.,
            sr_ratio: int = 1,
            qkv_bias: bool = True,
            proj_drop: float = 0.,
            attn_drop: float = 0.,
            drop_path: float = 0.,
            num_prefix_tokens: int = 0,
            grid_pe: Optional[Dict] = None,
            norm_layer=LayerNorm,
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = GridPEAttention(
            dim,
            num_heads=num_heads,
            sr_ratio=sr_ratio,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            num_prefix_tokens=num_prefix_tokens,
            grid_pe=grid_pe,
        )
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor, feat_size: List[int]) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), feat_size))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` conv + LayerNorm, NHWC out.

    Not timm's ``PatchEmbed``: its dynamic padding depends on the remainder, this one is constant
    (:func:`~modzoo.layers.pad_for_patches`), which keeps exported graphs right at every size.
    """

    def __init__(self, in_chs: int, out_chs: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chs, out_chs, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(pad_for_patches(x, self.patch_size))
        return self.norm(x.permute(0, 2, 3, 1))


class GridPEStage(nn.Module):
    """Optional stride-2 patch embedding (NCHW in), learned position embedding, blocks.

    Stage 1 takes the stem's NHWC output instead. ``forward`` returns NCHW; :meth:`forward_tokens` returns the token
    sequence (with the prefix tokens it was given) and the grid size.
    """

    def __init__(
            self,
            dim_out: int,
            depth: int,
            downsample: Optional[nn.Module],
            pos_embed_grid: Tuple[int, int],
            num_prefix_tokens: int = 0,
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
        self.pos_embed_grid = (int(pos_embed_grid[0]), int(pos_embed_grid[1]))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, num_prefix_tokens + self.pos_embed_grid[0] * self.pos_embed_grid[1], dim_out))
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
        self.norm = nn.Identity()  # PVT v1 normalises once, after the last stage

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
        x = self.pos_drop(x + self._resized_pos_embed(self.pos_embed, H, W))
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
    """Pyramid Vision Transformer (v1) with GridPE in its spatial-reduction attention.

    Args:
        in_chans: input image channels.
        num_classes: classifier outputs (0 for no classifier).
        global_pool: 'avg' (default without a class token), '' (no pooling) or 'token' (the class token's output,
            the default with ``class_token``).
        depths / embed_dims / num_heads / sr_ratios / mlp_ratios: per-stage configuration.
        qkv_bias: biases on the q and kv projections.
        class_token: the stage-4 class token (classifier on it; ``forward_features`` returns tokens).
        img_size: training resolution: the position-embedding grids and the 'optimal' GridPE wavelengths.
        gridpe: put GridPE in the attention (False: the plain PVT).
        gridpe_blocks: 'all' blocks (default) or the 'first' block of each stage (the paper's placement).
        scale_mode: 'rope' (released code) or 'optimal' (ratio e^(1/2), coarsest wavelength = the stage's grid).
        gridpe_base: the RoPE base of scale_mode 'rope'.
        gridpe_seed: seed of block 0's rotations; block i (counted over all stages) uses ``gridpe_seed + i``.
        drop_rate / pos_drop_rate / proj_drop_rate / attn_drop_rate / drop_path_rate: head dropout, position
            embedding dropout, projection dropout, attention dropout, stochastic depth (linear rule).
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: Optional[str] = None,
            depths: Sequence[int] = (3, 4, 6, 3),
            embed_dims: Sequence[int] = (64, 128, 320, 512),
            num_heads: Sequence[int] = (1, 2, 5, 8),
            sr_ratios: Sequence[int] = (8, 4, 2, 1),
            mlp_ratios: Sequence[float] = (8., 8., 4., 4.),
            qkv_bias: bool = True,
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
        check_model_args('GridPE-PVT', in_chans=in_chans, num_classes=num_classes, depths=depths,
                         embed_dims=embed_dims, num_heads=num_heads, sr_ratios=sr_ratios, mlp_ratios=mlp_ratios,
                         img_size=img_size, drop_rate=drop_rate, pos_drop_rate=pos_drop_rate,
                         proj_drop_rate=proj_drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate)
        num_stages = len(depths)
        for name, values in (('embed_dims', embed_dims), ('num_heads', num_heads), ('sr_ratios', sr_ratios),
                             ('mlp_ratios', mlp_ratios)):
            if len(values) != num_stages:
                raise ValueError(f'{name} needs one entry per stage ({num_stages}), got {list(values)}')
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        strides = [4 * 2 ** i for i in range(num_stages)]
        stage_grids = [(math.ceil(img_size[0] / s), math.ceil(img_size[1] / s)) for s in strides]
        grid_pe_cfgs = grid_pe_block_cfgs(
            depths, stage_grids, gridpe, gridpe_blocks, scale_mode, base=gridpe_base, seed=gridpe_seed)
        norm_layer = norm_layer or LayerNorm  # eps 1e-6 in the blocks and the final norm, as in the official code
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.embed_dims = list(embed_dims)
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.num_prefix_tokens = 1 if class_token else 0
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(in_chans, embed_dims[0], patch_size=4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims[-1])) if class_token else None

        dpr = drop_path_rates(drop_path_rate, depths)
        stages = []
        self.feature_info = []
        prev_dim = embed_dims[0]
        for i in range(num_stages):
            last = i == num_stages - 1
            stages.append(GridPEStage(
                embed_dims[i],
                depth=depths[i],
                downsample=PatchEmbed(prev_dim, embed_dims[i], patch_size=2) if i > 0 else None,
                pos_embed_grid=stage_grids[i],
                num_prefix_tokens=self.num_prefix_tokens if last else 0,
                pos_drop=pos_drop_rate,
                drop_path=dpr[i],
                grid_pe=grid_pe_cfgs[i],
                norm_layer=norm_layer,
                num_heads=num_heads[i],
                mlp_ratio=mlp_ratios[i],
                sr_ratio=sr_ratios[i],
                qkv_bias=qkv_bias,
                proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate,
            ))
            prev_dim = embed_dims[i]
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=strides[i], module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.norm = norm_layer(embed_dims[-1])

        if global_pool is None:
            global_pool = 'token' if class_token else 'avg'
        self.global_pool = self._check_pool(global_pool)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

        self.apply(_init_weights)
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
            norm: apply the final norm to the last stage's tap.
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
        """NCHW features after the final norm; (B, 1 + N, C) tokens with ``class_token``."""
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


def _init_weights(module: nn.Module) -> None:
    # as the official code: trunc-normal Linear; the patch and SR convs keep PyTorch's default init
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _remap_official_key(key: str) -> str:
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


def _adapt_class_token_and_pos_embed(
        state_dict: Dict[str, torch.Tensor], model: GridPEPyramidVisionTransformer) -> Dict[str, torch.Tensor]:
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


def checkpoint_filter_fn(
        state_dict, model: GridPEPyramidVisionTransformer) -> Dict[str, torch.Tensor]:
    """Convert any PVT v1 / GridPE-PVT v1 checkpoint to this model's layout.

    Accepts modzoo state dicts and the official whai362 layout (``patch_embed{i}``, ``block{i}``, ``pos_embed{i}``,
    ``cls_token``), or mmdet's ``PyramidVisionTransformer``. Position embeddings trained at another size are
    resampled. A plain PVT checkpoint in a GridPE model keeps the model's seeded GridPE rotations
    (:func:`~modzoo.models._pvt_convert.gridpe_new_layers`; a fine-tuning start: the outputs are not the plain model's).
    """
    state_dict = from_mmdet_pvt(state_dict)
    if 'patch_embed1.proj.weight' in state_dict:  # official whai362 layout
        state_dict = {_remap_official_key(k): v for k, v in state_dict.items()}
    state_dict = _adapt_class_token_and_pos_embed(state_dict, model)
    return state_dict


register_checkpoint_family(GridPEPyramidVisionTransformer, checkpoint_filter_fn, gridpe_new_layers, gridpe_hint)


def _create_gridpe_pvt_v1(variant: str, pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    if kwargs.get('linear'):
        raise ValueError('linear SRA exists in PVT v2 only')
    kwargs.pop('linear', None)
    return build_zoo_model(GridPEPyramidVisionTransformer, variant, pretrained, checkpoint_filter_fn, **kwargs)


def _cfg(name: str, **kwargs) -> Dict:
    return {
        'url': f'https://github.com/whai362/PVT/releases/download/v2/{name}.pth',
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': .9, 'interpolation': 'bicubic', 'fixed_input_size': False,
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj', 'classifier': 'head',
        'license': 'apache-2.0', 'paper_ids': 'arXiv:2406.07049',
        'paper_name': 'GridPE: Unifying Positional Encoding in Transformers with a Grid Cell-Inspired Framework',
        'origin_url': 'https://github.com/whai362/PVT',
        'notes': ('ImageNet-1k weights of the plain PVT v1 (official whai362 file), trained with a class-token '
                  'classifier: class_token=True reproduces it; the default (average-pooling) model takes them as a '
                  'backbone (its classifier then warns). With gridpe=True they are a fine-tuning start',),
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'zoo_gridpe_pvt_v1_tiny.in1k': _cfg('pvt_tiny'),
    'zoo_gridpe_pvt_v1_small.in1k': _cfg('pvt_small'),
    'zoo_gridpe_pvt_v1_medium.in1k': _cfg('pvt_medium'),
    'zoo_gridpe_pvt_v1_large.in1k': _cfg('pvt_large'),
})


@register_model
def zoo_gridpe_pvt_v1_tiny(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT-Tiny (PVT v1)."""
    model_args = dict(
        depths=(2, 2, 2, 2), embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1),
        mlp_ratios=(8, 8, 4, 4))
    return _create_gridpe_pvt_v1('zoo_gridpe_pvt_v1_tiny', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_gridpe_pvt_v1_small(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT-Small (PVT v1, the configuration of the paper's PVT experiments)."""
    model_args = dict(
        depths=(3, 4, 6, 3), embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1),
        mlp_ratios=(8, 8, 4, 4))
    return _create_gridpe_pvt_v1('zoo_gridpe_pvt_v1_small', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_gridpe_pvt_v1_medium(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT-Medium (PVT v1)."""
    model_args = dict(
        depths=(3, 4, 18, 3), embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1),
        mlp_ratios=(8, 8, 4, 4))
    return _create_gridpe_pvt_v1('zoo_gridpe_pvt_v1_medium', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_gridpe_pvt_v1_large(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformer:
    """GridPE-PVT-Large (PVT v1)."""
    model_args = dict(
        depths=(3, 8, 27, 3), embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1),
        mlp_ratios=(8, 8, 4, 4))
    return _create_gridpe_pvt_v1('zoo_gridpe_pvt_v1_large', pretrained=pretrained, **dict(model_args, **kwargs))
