"""GridPE-PVT v2: Pyramid Vision Transformer v2 with grid-cell positional encoding in its attention.

GridPE (Li et al., "GridPE: Unifying Positional Encoding in Transformers with a Grid Cell-Inspired Framework",
arXiv:2406.07049) rotates queries and keys by phases ``|w_s| <omega_j, x>`` along three directions 120 degrees
apart (see :mod:`modzoo.layers.grid_pe`), so attention logits depend on relative position only. Here it sits in
PVT v2's spatial-reduction attention (:class:`~modzoo.layers.grid_pe_attention.GridPEAttention`).

PVT v2 b0-b5 and b2_li (Wang et al., arXiv:2106.13797) reuse timm's ``pvt_v2`` building blocks. Their state_dict is
timm's ``pvt_v2_*`` layout plus one persistent buffer per GridPE block (``...attn.grid_pe.omegas``, the fixed seeded
rotations, no trainable parameter). :func:`checkpoint_filter_fn` fills those buffers in from the seed when a plain
PVT v2 checkpoint (timm's, or the official whai362 layout, which it converts) is loaded, so those load strictly
through ``pretrained=True`` / :func:`modzoo.load_checkpoint`; plain ``load_state_dict`` of a timm state dict needs
the filter (or ``strict=False``). A checkpoint trained with GridPE carries its rotations and refuses to load into a
model with other GridPE blocks, or none.

``gridpe=False`` gives the plain backbone (it then computes exactly what timm's ``pvt_v2_*`` does), ``gridpe_blocks=
'first'`` the paper's placement (first block of each stage), ``scale_mode='optimal'`` the paper's e^(1/p) scale ratio
with the coarsest wavelength spanning each stage's grid at ``img_size``.

Input sizes: the overlapping patch convs give ``ceil(H / stride)`` rows. The spatial-reduction conv (kernel = stride
= sr) pads an input smaller than its kernel to one cell (the official code and timm fail there) and otherwise
floors, as they do.

Export: ``zoo_gridpe_pvt_v2_b2_li`` pools its keys with ``AdaptiveAvgPool2d(7)``, which ONNX exporters bake to the
export resolution (a silently wrong model at any other size). While tracing or exporting, the attention computes the
same pooling as two averaging matmuls built from the traced input size, so the exported graph follows the input
size; eager mode keeps ``F.adaptive_avg_pool2d`` (numerically identical to timm).
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerNorm, trunc_normal_
from timm.models import checkpoint, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models.pvt_v2 import MlpWithDepthwiseConv, OverlapPatchEmbed
from timm.models.pvt_v2 import checkpoint_filter_fn as timm_pvt_v2_filter_fn

from modzoo.layers import check_image_input, drop_path_rates
from modzoo.layers.arg_check import check_model_args
from modzoo.layers.grid_pe_attention import GridPEAttention, grid_pe_block_cfgs
from ._builder import build_zoo_model
from ._checkpoint import register_checkpoint_family
from ._pvt_convert import from_mmdet_pvt, gridpe_hint, gridpe_new_layers

__all__ = ['GridPEPyramidVisionTransformerV2', 'GridPEBlock', 'GridPEStage', 'checkpoint_filter_fn']


class GridPEBlock(nn.Module):
    """Pre-norm transformer block: GridPE spatial-reduction attention, then PVT v2's depthwise-conv FFN."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            mlp_ratio: float = 4.,
            sr_ratio: int = 1,
            linear_attn: bool = False,
            qkv_bias: bool = True,
            proj_drop: float = 0.,
            attn_drop: float = 0.,
            drop_path: float = 0.,
            grid_pe: Optional[Dict] = None,
            norm_layer=LayerNorm,
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = GridPEAttention(
            dim,
            num_heads=num_heads,
            sr_ratio=sr_ratio,
            linear_attn=linear_attn,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            grid_pe=grid_pe,
        )
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = MlpWithDepthwiseConv(dim, int(dim * mlp_ratio), drop=proj_drop, extra_relu=linear_attn)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor, feat_size: List[int]) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), feat_size))
        x = x + self.drop_path2(self.mlp(self.norm2(x), feat_size))
        return x


class GridPEStage(nn.Module):
    """Optional stride-2 overlapping patch embedding (NCHW in), blocks, norm; NCHW out.

    Stage 1 takes the stem's NHWC output instead.
    """

    def __init__(
            self,
            dim_out: int,
            depth: int,
            downsample: Optional[nn.Module],
            drop_path: Sequence[float] = (),
            grid_pe: Sequence[Optional[Dict]] = (),
            norm_layer=LayerNorm,
            **block_kwargs,
    ):
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = downsample
        self.blocks = nn.ModuleList([
            GridPEBlock(
                dim_out,
                drop_path=drop_path[i] if drop_path else 0.,
                grid_pe=grid_pe[i] if grid_pe else None,
                norm_layer=norm_layer,
                **block_kwargs,
            )
            for i in range(depth)
        ])
        self.norm = norm_layer(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)  # NCHW -> NHWC
        B, H, W, C = x.shape
        x = x.flatten(1, 2)
        feat_size = [H, W]
        for block in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x, feat_size)
            else:
                x = block(x, feat_size)
        x = self.norm(x)
        return x.reshape(x.shape[0], H, W, x.shape[-1]).permute(0, 3, 1, 2).contiguous()


class GridPEPyramidVisionTransformerV2(nn.Module):
    """Pyramid Vision Transformer v2 with GridPE in its spatial-reduction attention.

    Args:
        in_chans: input image channels.
        num_classes: classifier outputs (0 for no classifier).
        global_pool: 'avg' (default) or '' (no pooling).
        depths / embed_dims / num_heads / sr_ratios / mlp_ratios: per-stage configuration.
        qkv_bias: biases on the q and kv projections.
        linear: linear SRA (7x7 adaptive pooling + 1x1 conv before kv, ReLU in the FFN).
        img_size: training resolution: the 'optimal' GridPE wavelengths.
        gridpe: put GridPE in the attention (False: the plain PVT v2).
        gridpe_blocks: 'all' blocks (default) or the 'first' block of each stage (the paper's placement).
        scale_mode: 'rope' (released code) or 'optimal' (ratio e^(1/2), coarsest wavelength = the stage's grid).
        gridpe_base: the RoPE base of scale_mode 'rope'.
        gridpe_seed: seed of block 0's rotations; block i (counted over all stages) uses ``gridpe_seed + i``.
        drop_rate / proj_drop_rate / attn_drop_rate / drop_path_rate: head dropout, projection dropout, attention
            dropout, stochastic depth (linear rule).
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: Optional[str] = 'avg',
            depths: Sequence[int] = (3, 4, 6, 3),
            embed_dims: Sequence[int] = (64, 128, 320, 512),
            num_heads: Sequence[int] = (1, 2, 5, 8),
            sr_ratios: Sequence[int] = (8, 4, 2, 1),
            mlp_ratios: Sequence[float] = (8., 8., 4., 4.),
            qkv_bias: bool = True,
            linear: bool = False,
            img_size: Union[int, Tuple[int, int]] = 224,
            gridpe: bool = True,
            gridpe_blocks: str = 'all',
            scale_mode: str = 'rope',
            gridpe_base: float = 10000.,
            gridpe_seed: int = 0,
            drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            norm_layer=None,
    ):
        super().__init__()
        check_model_args('GridPE-PVT v2', in_chans=in_chans, num_classes=num_classes, depths=depths,
                         embed_dims=embed_dims, num_heads=num_heads, sr_ratios=sr_ratios, mlp_ratios=mlp_ratios,
                         img_size=img_size, drop_rate=drop_rate, proj_drop_rate=proj_drop_rate,
                         attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate)
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
        norm_layer = norm_layer or LayerNorm  # eps 1e-6 in the blocks and stage norms, as in the official code
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.embed_dims = list(embed_dims)
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.grad_checkpointing = False

        self.patch_embed = OverlapPatchEmbed(patch_size=7, stride=4, in_chans=in_chans, embed_dim=embed_dims[0])

        dpr = drop_path_rates(drop_path_rate, depths)
        stages = []
        self.feature_info = []
        prev_dim = embed_dims[0]
        for i in range(num_stages):
            if i == 0:
                downsample = None
            else:
                downsample = OverlapPatchEmbed(patch_size=3, stride=2, in_chans=prev_dim, embed_dim=embed_dims[i])
            stages.append(GridPEStage(
                embed_dims[i],
                depth=depths[i],
                downsample=downsample,
                drop_path=dpr[i],
                grid_pe=grid_pe_cfgs[i],
                norm_layer=norm_layer,
                num_heads=num_heads[i],
                mlp_ratio=mlp_ratios[i],
                sr_ratio=sr_ratios[i],
                linear_attn=linear,
                qkv_bias=qkv_bias,
                proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate,
            ))
            prev_dim = embed_dims[i]
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=strides[i], module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.Identity()  # the stages end in their own norms

        self.global_pool = self._check_pool('avg' if global_pool is None else global_pool)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

        self.apply(_init_weights)

    @staticmethod
    def _check_pool(global_pool: str) -> str:
        allowed = ('avg', '')
        if global_pool not in allowed:
            raise ValueError(f'global_pool must be one of {allowed} for this model, got {global_pool!r}')
        return global_pool

    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(
            stem=r'^patch_embed',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.downsample', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^stages\.(\d+)\.norm', (99998,)),
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
            norm: accepted for timm's interface; PVT v2's stage outputs are always normalised.
            stop_early: stop after the deepest requested tap.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the list of taps.
        """
        if output_fmt != 'NCHW':
            raise ValueError('GridPE-PVT intermediates are NCHW only')
        intermediates: List[torch.Tensor] = []
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        if not torch.jit.is_scripting():
            check_image_input(x, self.in_chans, type(self).__name__)
        x = self.patch_embed(x)  # NHWC
        # TorchScript unrolls loops over module lists and allows no `break`: later stages are skipped instead
        for idx, stage in enumerate(self.stages):
            if not stop_early or idx <= max_index:
                x = stage(x)
                if idx in take_indices:
                    intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the deepest requested tap (and the head when asked)."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:  # features now end at the last kept tap
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW features of the last stage (after its norm)."""
        if not torch.jit.is_scripting():
            check_image_input(x, self.in_chans, type(self).__name__)
        x = self.patch_embed(x)  # NHWC
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean(dim=(-2, -1), keepdim=True).flatten(1)  # keepdim: XNNPACK's global average pool takes this form
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(module: nn.Module) -> None:
    # as the official code and timm: trunc-normal Linear, fan-out normal convs
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0., math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def checkpoint_filter_fn(
        state_dict, model: GridPEPyramidVisionTransformerV2) -> Dict[str, torch.Tensor]:
    """Convert any PVT v2 / GridPE-PVT v2 checkpoint to this model's layout.

    Accepts modzoo and timm ``pvt_v2_*`` state dicts and the official whai362 layout (``patch_embed{i}``,
    ``block{i}``, ``norm{i}``, ``dwconv.dwconv``), or mmdet's ``PyramidVisionTransformerV2``. A plain PVT checkpoint
    in a GridPE model keeps the model's seeded GridPE rotations (a fine-tuning start: the outputs are not the plain
    model's).
    """
    state_dict = from_mmdet_pvt(state_dict)
    if 'patch_embed1.proj.weight' in state_dict:  # official whai362 layout
        state_dict = timm_pvt_v2_filter_fn(state_dict, model)
    return state_dict


register_checkpoint_family(GridPEPyramidVisionTransformerV2, checkpoint_filter_fn, gridpe_new_layers, gridpe_hint)


def _create_gridpe_pvt_v2(variant: str, pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformerV2:
    if kwargs.get('class_token'):
        raise ValueError('class_token exists in PVT v1 only (PVT v2 classifies by average pooling)')
    kwargs.pop('class_token', None)
    return build_zoo_model(GridPEPyramidVisionTransformerV2, variant, pretrained, checkpoint_filter_fn, **kwargs)


def _cfg(name: str, **kwargs) -> Dict:
    return {
        'url': f'https://github.com/whai362/PVT/releases/download/v2/{name}.pth',
        'hf_hub_id': f'timm/{name}.in1k',
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': .9, 'interpolation': 'bicubic', 'fixed_input_size': False,
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj', 'classifier': 'head',
        'license': 'apache-2.0', 'paper_ids': 'arXiv:2406.07049',
        'paper_name': 'GridPE: Unifying Positional Encoding in Transformers with a Grid Cell-Inspired Framework',
        'origin_url': 'https://github.com/whai362/PVT',
        'notes': ('ImageNet-1k weights of the plain PVT v2 (timm hub copy, or the official whai362 file): they load '
                  'strictly, and with gridpe=True they are a fine-tuning start, not a GridPE-trained model',),
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'zoo_gridpe_pvt_v2_b0.in1k': _cfg('pvt_v2_b0'),
    'zoo_gridpe_pvt_v2_b1.in1k': _cfg('pvt_v2_b1'),
    'zoo_gridpe_pvt_v2_b2.in1k': _cfg('pvt_v2_b2'),
    'zoo_gridpe_pvt_v2_b2_li.in1k': _cfg('pvt_v2_b2_li'),
    'zoo_gridpe_pvt_v2_b3.in1k': _cfg('pvt_v2_b3'),
    'zoo_gridpe_pvt_v2_b4.in1k': _cfg('pvt_v2_b4'),
    'zoo_gridpe_pvt_v2_b5.in1k': _cfg('pvt_v2_b5'),
})


@register_model
def zoo_gridpe_pvt_v2_b0(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformerV2:
    """GridPE-PVT v2-B0 (head_dim 32: 30 channels rotate, 2 pass through)."""
    model_args = dict(
        depths=(2, 2, 2, 2), embed_dims=(32, 64, 160, 256), num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1),
        mlp_ratios=(8, 8, 4, 4))
    return _create_gridpe_pvt_v2('zoo_gridpe_pvt_v2_b0', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_gridpe_pvt_v2_b1(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformerV2:
    """GridPE-PVT v2-B1 (head_dim 64: 60 channels rotate, 4 pass through)."""
    model_args = dict(
        depths=(2, 2, 2, 2), embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1),
        mlp_ratios=(8, 8, 4, 4))
    return _create_gridpe_pvt_v2('zoo_gridpe_pvt_v2_b1', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_gridpe_pvt_v2_b2(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformerV2:
    """GridPE-PVT v2-B2."""
    model_args = dict(
        depths=(3, 4, 6, 3), embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1),
        mlp_ratios=(8, 8, 4, 4))
    return _create_gridpe_pvt_v2('zoo_gridpe_pvt_v2_b2', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_gridpe_pvt_v2_b2_li(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformerV2:
    """GridPE-PVT v2-B2-Li: linear SRA, keys pooled to 7x7 cells (positions: the bins' centres).

    ONNX: exported through this module, the pooling follows the input size (see the module docstring); timm's own
    ``pvt_v2_b2_li`` exports with the 7x7 pooling baked to the export resolution.
    """
    model_args = dict(
        depths=(3, 4, 6, 3), embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1),
        mlp_ratios=(8, 8, 4, 4), linear=True)
    return _create_gridpe_pvt_v2('zoo_gridpe_pvt_v2_b2_li', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_gridpe_pvt_v2_b3(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformerV2:
    """GridPE-PVT v2-B3."""
    model_args = dict(
        depths=(3, 4, 18, 3), embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1),
        mlp_ratios=(8, 8, 4, 4))
    return _create_gridpe_pvt_v2('zoo_gridpe_pvt_v2_b3', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_gridpe_pvt_v2_b4(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformerV2:
    """GridPE-PVT v2-B4."""
    model_args = dict(
        depths=(3, 8, 27, 3), embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1),
        mlp_ratios=(8, 8, 4, 4))
    return _create_gridpe_pvt_v2('zoo_gridpe_pvt_v2_b4', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_gridpe_pvt_v2_b5(pretrained: bool = False, **kwargs) -> GridPEPyramidVisionTransformerV2:
    """GridPE-PVT v2-B5: MLP ratio 4 in every stage."""
    model_args = dict(
        depths=(3, 6, 40, 3), embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1),
        mlp_ratios=(4, 4, 4, 4))
    return _create_gridpe_pvt_v2('zoo_gridpe_pvt_v2_b5', pretrained=pretrained, **dict(model_args, **kwargs))
