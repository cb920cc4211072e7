"""FocalNet: Focal Modulation Networks (Yang et al., NeurIPS 2022, https://arxiv.org/abs/2203.11926).

Every official variant (tiny/small/base x srf/lrf, large/xlarge/huge x fl3/fl4, and the isotropic tiny/small/base
that timm lacks) with every numerics flag of the official configs: post-LN, LayerScale, the conv stem, LN inside the
modulation (huge) and ``normalize_modulator`` (large_fl4 and xlarge_fl4; timm's registrations leave it off).

Layout: NCHW throughout with 1x1 convolutions, and the downsample at the *start* of stages 2-4. The state_dict is
therefore key-for-key the layout of timm's ``focalnet_*`` models, so timm's published weights load unchanged;
:func:`checkpoint_filter_fn` converts official Microsoft files (``{'model': sd}`` with Linear layers and the
downsample at the end of each stage) and the official det/seg backbones (``backbone.``, per-stage ``norm{i}``).

Input sizes: any H x W. Non-overlapping patch convolutions (the 4x4 / 16x16 stems and the 2x2 downsamples) zero-pad
the bottom/right edge to a multiple of their stride, as the official dense-task backbones do, so features have
``ceil(H / stride)`` rows instead of silently dropping pixels.

ONNX export: each stage's export form (:mod:`modzoo.models.focalnet_onnx`) keeps the residual stream channels-last,
which ONNX Runtime runs with fewer layout changes; the eager model stays as written here.
"""
import logging
import re
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, DropPath, LayerNorm2d, LayerScale2d, Mlp, trunc_normal_
from timm.models import checkpoint, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from modzoo.kernels import focal_context
from modzoo.layers import check_image_input, drop_path_rates, pad_for_patches, pad_to_min_size
from modzoo.layers.arg_check import check_model_args
from ._builder import build_zoo_model
from ._checkpoint import register_checkpoint_family

__all__ = ['FocalNet', 'FocalModulation', 'FocalNetBlock', 'checkpoint_filter_fn']

_logger = logging.getLogger(__name__)

torch.fx.wrap('pad_to_min_size')  # FX records the call: the padding depends on the real input size


class FocalModulation(nn.Module):
    """Focal modulation: ``proj(q * h(ctx_all))`` with ``q, ctx, gates = split(f(x))`` and the focal context
    ``ctx_all`` of :func:`modzoo.kernels.focal_context` (hierarchical contextualization by ``L`` depthwise conv + GELU
    levels and a global level, then gated aggregation; its reference is the written-out algorithm).
    """

    def __init__(
            self,
            dim: int,
            focal_window: int,
            focal_level: int,
            focal_factor: int = 2,
            bias: bool = True,
            use_postln_in_modulation: bool = False,
            normalize_modulator: bool = False,
            proj_drop: float = 0.,
            norm_layer=LayerNorm2d,
    ):
        super().__init__()
        self.dim = dim
        self.focal_level = focal_level
        self.normalize_modulator = normalize_modulator
        self.split_sizes = [dim, dim, focal_level + 1]
        self.kernel_sizes = [focal_factor * level + focal_window for level in range(focal_level)]

        self.f = nn.Conv2d(dim, 2 * dim + focal_level + 1, kernel_size=1, bias=bias)
        self.h = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        # Sequential(conv, GELU) keeps the official/timm key `focal_layers.{l}.0.weight`; the forward hands the conv
        # weights to focal_context, which applies the GELU itself
        self.focal_layers = nn.ModuleList([
            nn.Sequential(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim, bias=False), nn.GELU())
            for k in self.kernel_sizes
        ])
        self.norm = norm_layer(dim) if use_postln_in_modulation else nn.Identity()
        self.proj = nn.Conv2d(dim, dim, kernel_size=1)
        self.proj_drop = nn.Dropout(proj_drop)

    def focal_kernels(self) -> List[torch.Tensor]:
        return [layer[0].weight for layer in self.focal_layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, ctx, gates = torch.split(self.f(x), self.split_sizes, 1)
        ctx_all = focal_context(ctx, gates, self.focal_kernels(), self.normalize_modulator)
        x = q * self.h(ctx_all)
        x = self.norm(x)
        return self.proj_drop(self.proj(x))


class FocalNetBlock(nn.Module):
    """Pre-norm ``x + ls(FM(LN(x)))``, or with ``use_postln`` the post-norm ``x + ls(LN(FM(x)))``; same for the MLP."""

    def __init__(
            self,
            dim: int,
            mlp_ratio: float = 4.,
            focal_level: int = 2,
            focal_window: int = 3,
            use_postln: bool = False,
            use_postln_in_modulation: bool = False,
            normalize_modulator: bool = False,
            layerscale_value: Optional[float] = None,
            proj_drop: float = 0.,
            drop_path: float = 0.,
            norm_layer=LayerNorm2d,
    ):
        super().__init__()
        pre_norm = (lambda: nn.Identity()) if use_postln else (lambda: norm_layer(dim))
        post_norm = (lambda: norm_layer(dim)) if use_postln else (lambda: nn.Identity())
        layer_scale = (lambda: LayerScale2d(dim, layerscale_value)) if layerscale_value is not None else nn.Identity

        self.norm1 = pre_norm()
        self.modulation = FocalModulation(
            dim,
            focal_window=focal_window,
            focal_level=focal_level,
            use_postln_in_modulation=use_postln_in_modulation,
            normalize_modulator=normalize_modulator,
            proj_drop=proj_drop,
            norm_layer=norm_layer,
        )
        self.norm1_post = post_norm()
        self.ls1 = layer_scale()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

        self.norm2 = pre_norm()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop, use_conv=True)
        self.norm2_post = post_norm()
        self.ls2 = layer_scale()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.norm1_post(self.modulation(self.norm1(x)))))
        x = x + self.drop_path2(self.ls2(self.norm2_post(self.mlp(self.norm2(x)))))
        return x


class PatchEmbed(nn.Module):
    """Strided conv + LN, used as the stem (stride 4 or 16) and as the stride-2 downsample between stages.

    ``overlap`` selects the official ``use_conv_embed`` convs (7x7/4 pad 2 for the stem, 3x3/2 pad 1 between
    stages); otherwise the conv is a non-overlapping ``stride x stride`` patchify with bottom/right zero padding.
    Not timm's ``PatchEmbed``: that one drops (or, dynamically, pads by the remainder) what this pads constantly.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int, overlap: bool = False, norm_layer=LayerNorm2d):
        super().__init__()
        if overlap and stride not in (2, 4):
            raise ValueError(f'use_conv_embed supports strides 2 and 4, got {stride}')
        kernel_size, padding = {4: (7, 2), 2: (3, 1)}[stride] if overlap else (stride, 0)
        self.stride = stride
        self.pad = not overlap
        # the smallest input the overlapping conv takes (the 7x7/4 stem needs 3 rows); smaller ones are zero-padded
        self.min_size = kernel_size - 2 * padding
        self.proj = nn.Conv2d(in_chs, out_chs, kernel_size=kernel_size, stride=stride, padding=padding)
        self.norm = norm_layer(out_chs)

    def patch_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The padded strided conv, before the norm."""
        if self.pad:
            x = pad_for_patches(x, self.stride)
        elif self.min_size > 1:
            x = pad_to_min_size(x, self.min_size)
        return self.proj(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.patch_conv(x))


class FocalNetStage(nn.Module):
    """Optional stride-2 downsample followed by ``depth`` FocalNet blocks.

    ``out_norm`` is the extra per-stage LayerNorm the official det/seg backbones put on their outputs (keys
    ``norm{i}`` there); it is only applied to feature taps, never on the classification path.
    """

    def __init__(
            self,
            dim: int,
            out_dim: int,
            depth: int,
            downsample: bool,
            use_conv_embed: bool = False,
            out_norm: bool = False,
            drop_path: Sequence[float] = (),
            norm_layer=LayerNorm2d,
            **block_kwargs,
    ):
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = PatchEmbed(dim, out_dim, 2, use_conv_embed, norm_layer) if downsample else nn.Identity()
        self.blocks = nn.ModuleList([
            FocalNetBlock(out_dim, drop_path=drop_path[i] if drop_path else 0., norm_layer=norm_layer, **block_kwargs)
            for i in range(depth)
        ])
        self.out_norm = norm_layer(out_dim) if out_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x)
            else:
                x = block(x)
        return x

    def export_form(self, target: str) -> Optional[nn.Module]:
        """For ONNX Runtime (eval), :class:`~modzoo.models.focalnet_onnx.FocalNetStageNHWC`; see
        :func:`modzoo.export.deploy.prepare_for_export`. Not for OpenVINO, which runs the eager layout faster."""
        if target != 'onnx' or self.training:
            return None
        from .focalnet_onnx import stage_nhwc  # that module builds on this one
        return stage_nhwc(self)


class FocalNet(nn.Module):
    """Focal Modulation Network, hierarchical (4 stages) or isotropic (``len(depths) == 1``, e.g. patch 16).

    Args:
        in_chans: input image channels.
        num_classes: classifier outputs (0 for no classifier).
        global_pool: 'avg' (default), 'max', 'avgmax' or '' (no pooling).
        embed_dim: channels of the first stage; stage i has ``embed_dim * 2**i``. A sequence sets them directly.
        depths: blocks per stage.
        mlp_ratio: MLP hidden width relative to the stage width.
        focal_levels / focal_windows: focal levels L and first kernel size per stage (kernels k + 2l).
        patch_size: stem stride (4 for hierarchical models, 16 for the isotropic ones).
        use_conv_embed: overlapping conv stem (7x7/4, pad 2) and downsamples (3x3/2) as in large/xlarge/huge.
        use_postln: post-norm blocks (base_iso, large and up).
        use_postln_in_modulation: LayerNorm on ``q * m`` inside the modulation (huge).
        use_layerscale / layerscale_value: LayerScale on both residual branches.
        normalize_modulator: divide the aggregated context by ``L + 1`` (large_fl4, xlarge_fl4).
        out_norms: add the per-stage output LayerNorms of the official dense-task backbones to feature taps.
        drop_rate / proj_drop_rate / drop_path_rate: head dropout, projection dropout, stochastic depth (linear rule).
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            embed_dim: Union[int, Sequence[int]] = 96,
            depths: Sequence[int] = (2, 2, 6, 2),
            mlp_ratio: float = 4.,
            focal_levels: Sequence[int] = (2, 2, 2, 2),
            focal_windows: Sequence[int] = (3, 3, 3, 3),
            patch_size: int = 4,
            use_conv_embed: bool = False,
            use_postln: bool = False,
            use_postln_in_modulation: bool = False,
            use_layerscale: bool = False,
            layerscale_value: float = 1e-4,
            normalize_modulator: bool = False,
            out_norms: bool = False,
            drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            norm_layer=None,
    ):
        super().__init__()
        check_model_args('FocalNet', in_chans=in_chans, num_classes=num_classes, embed_dim=embed_dim, depths=depths,
                         mlp_ratio=mlp_ratio, focal_levels=focal_levels, focal_windows=focal_windows,
                         patch_size=patch_size, drop_rate=drop_rate, proj_drop_rate=proj_drop_rate,
                         drop_path_rate=drop_path_rate)
        num_stages = len(depths)
        if len(focal_levels) < num_stages or len(focal_windows) < num_stages:
            raise ValueError(f'focal_levels/focal_windows need one entry per stage ({num_stages})')
        if isinstance(embed_dim, int):
            embed_dim = [embed_dim * 2 ** i for i in range(num_stages)]
        embed_dim = list(embed_dim)
        self.isotropic = num_stages == 1
        if self.isotropic and out_norms:
            raise ValueError('out_norms applies to hierarchical FocalNets; the isotropic model has a single stage')
        norm_layer = norm_layer or partial(LayerNorm2d, eps=1e-5)

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.num_features = self.head_hidden_size = embed_dim[-1]
        self.grad_checkpointing = False
        self.patch_size = patch_size

        self.stem = PatchEmbed(in_chans, embed_dim[0], patch_size, use_conv_embed, norm_layer)

        dpr = drop_path_rates(drop_path_rate, depths)
        stages = []
        self.feature_info = []
        in_dim = embed_dim[0]
        for i in range(num_stages):
            stages.append(FocalNetStage(
                in_dim,
                embed_dim[i],
                depth=depths[i],
                downsample=i > 0,
                use_conv_embed=use_conv_embed,
                out_norm=out_norms,
                drop_path=dpr[i],
                norm_layer=norm_layer,
                mlp_ratio=mlp_ratio,
                focal_level=focal_levels[i],
                focal_window=focal_windows[i],
                use_postln=use_postln,
                use_postln_in_modulation=use_postln_in_modulation,
                normalize_modulator=normalize_modulator,
                layerscale_value=layerscale_value if use_layerscale else None,
                proj_drop=proj_drop_rate,
            ))
            in_dim = embed_dim[i]
            if not self.isotropic:
                self.feature_info.append(
                    dict(num_chs=embed_dim[i], reduction=patch_size * 2 ** i, module=f'layers.{i}'))
        if self.isotropic:
            # a single stage: like timm's ViTs, every block is a feature tap at the patch stride
            self.feature_info = [
                dict(num_chs=embed_dim[0], reduction=patch_size, module=f'layers.0.blocks.{j}')
                for j in range(depths[0])
            ]
        self.num_taps = len(self.feature_info)  # an int for TorchScript, which cannot type feature_info
        self.layers = nn.Sequential(*stages)
        self.norm = norm_layer(self.num_features)
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate)

        self.apply(_init_weights)

    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(
            stem=r'^stem',
            blocks=[
                (r'^layers\.(\d+)', None),
                (r'^norm', (99999,)),
            ] if coarse else [
                (r'^layers\.(\d+)\.downsample', (0,)),
                (r'^layers\.(\d+)\.blocks\.(\d+)', None),
                (r'^layers\.(\d+)\.out_norm', (99998,)),
                (r'^norm', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable
        for stage in self.layers:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool)

    def stage_transitions(self) -> List[str]:
        """Names of the stride-2 modules between stages (they take NCHW input); used by the SFM add-on."""
        return [f'layers.{i}.downsample' for i in range(1, len(self.layers))]

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            check_image_input(x, self.in_chans, type(self).__name__)
        return self.stem(x)

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
        """Forward through the network, returning the feature taps listed in ``feature_info``.

        Args:
            indices: taps to return (None: all, int n: the last n, sequence: those indices).
            norm: apply the final norm to the last tap when it is the network's last output.
            stop_early: stop after the deepest requested tap.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the list of taps.
        """
        if output_fmt != 'NCHW':
            raise ValueError('FocalNet intermediates are NCHW only')
        intermediates: List[torch.Tensor] = []
        take_indices, max_index = feature_take_indices(self.num_taps, indices)
        x = self._embed(x)
        last_idx = self.num_taps - 1
        # TorchScript unrolls loops over module lists and allows no `break`: later layers are skipped instead
        if self.isotropic:
            stage = self.layers[0]
            for idx, block in enumerate(stage.blocks):
                if not stop_early or idx <= max_index:
                    if self.grad_checkpointing and not torch.jit.is_scripting():
                        x = checkpoint(block, x)
                    else:
                        x = block(x)
                    if idx in take_indices:
                        intermediates.append(self.norm(x) if norm and idx == last_idx else x)
        else:
            for idx, stage in enumerate(self.layers):
                if not stop_early or idx <= max_index:
                    x = stage(x)
                    if idx in take_indices:
                        intermediates.append(self.norm(x) if norm and idx == last_idx else stage.out_norm(x))
        if intermediates_only:
            return intermediates
        x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the layers after the deepest requested tap (and the norm/head when asked)."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        if self.isotropic:
            self.layers[0].blocks = self.layers[0].blocks[:max_index + 1]
        else:
            self.layers = self.layers[:max_index + 1]
        if prune_norm or max_index < len(self.feature_info) - 1:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._embed(x)
        x = self.layers(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=True) if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(module: nn.Module) -> None:
    # The official code trunc-normal-inits its Linear layers (our 1x1 convs) and leaves the patch and depthwise
    # convs at PyTorch's default init; we do the same so from-scratch training follows the paper's recipe.
    if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1:
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _remap_official_key(key: str, post_norm: bool) -> str:
    """One official (Microsoft classification or det/seg backbone) key -> modzoo/timm layout."""
    key = re.sub(r'^patch_embed\.', 'stem.', key)
    # the official downsample ends stage i; ours starts stage i + 1
    key = re.sub(r'^layers\.(\d+)\.downsample\.', lambda m: f'layers.{int(m.group(1)) + 1}.downsample.', key)
    key = re.sub(r'\.gamma_([12])$', r'.ls\1.gamma', key)
    if post_norm:
        key = re.sub(r'\.blocks\.(\d+)\.norm([12])\.', r'.blocks.\1.norm\2_post.', key)
    key = key.replace('.modulation.ln.', '.modulation.norm.')
    key = re.sub(r'^norm(\d)\.', r'layers.\1.out_norm.', key)  # det/seg per-output norms
    key = re.sub(r'^head\.', 'head.fc.', key)
    return key


def _resize_focal_kernel(weight: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad (grow) or centre-crop (shrink) a depthwise kernel, as the official dense-task loader does."""
    k = weight.shape[-1]
    if k < size:
        pad = (size - k) // 2
        return F.pad(weight, (pad, pad, pad, pad))
    start = (k - size) // 2
    return weight[..., start:start + size, start:start + size].contiguous()


def _adapt_focal_layout(
        state_dict: Dict[str, torch.Tensor], model_sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Fit a checkpoint trained with other focal windows/levels: resize kernels, add zero gate rows."""
    resized, grown = 0, 0
    for key, value in list(state_dict.items()):
        target = model_sd.get(key)
        if target is None or target.shape == value.shape:
            continue
        if '.focal_layers.' in key and value.dim() == 4 and value.shape[:2] == target.shape[:2]:
            state_dict[key] = _resize_focal_kernel(value, target.shape[-1])
            resized += 1
        elif key.endswith(('.modulation.f.weight', '.modulation.f.bias')):
            weight_key = key[:-len('bias')] + 'weight' if key.endswith('bias') else key
            ckpt_weight, model_weight = state_dict.get(weight_key), model_sd.get(weight_key)
            if ckpt_weight is None or model_weight is None or ckpt_weight.shape[1] != model_weight.shape[1]:
                continue  # a different width, not a different level count: left to the verification
            rows, want = value.shape[0], target.shape[0]
            if want < rows:
                raise ValueError(
                    f'{key}: the checkpoint has more focal levels ({rows} rows) than the model ({want} rows); '
                    f'only adding levels is supported')
            # rows are [q (C), ctx (C), level gates (L), global gate (1)]: new level gates start at zero
            new = value.new_zeros((want,) + tuple(value.shape[1:]))
            new[:rows - 1] = value[:rows - 1]
            new[-1] = value[-1]
            state_dict[key] = new
            grown += 1
    if resized or grown:
        _logger.info('Adapted focal layers to the model: %d kernels resized, %d gate projections grown', resized, grown)
    return state_dict


def checkpoint_filter_fn(state_dict, model: FocalNet) -> Dict[str, torch.Tensor]:
    """Convert a FocalNet state dict to this model's layout.

    Accepts modzoo/timm keys, official Microsoft classification keys (Linear layers), Hugging Face transformers'
    FocalNet keys and official det/seg backbone keys (``norm{i}``). When the model's focal windows/levels differ from
    the checkpoint's (e.g. window 9 for detection from window-3 ImageNet weights), kernels are zero-padded/centre-
    cropped and new gate rows start at zero. The containers are taken apart and the result matched against the model
    by :mod:`modzoo.models._checkpoint`; :func:`checkpoint_new_layers` names the layers a checkpoint cannot have.
    """
    state_dict = _from_hf_focalnet(state_dict)  # HF transformers' FocalNet classes
    model_sd = model.state_dict()
    if 'stem.proj.weight' not in state_dict:
        post_norm = any('norm1_post' in k for k in model_sd)
        state_dict = {_remap_official_key(k, post_norm): v for k, v in state_dict.items()}
    for key, value in list(state_dict.items()):
        target = model_sd.get(key)
        # official Linear weights (out, in) -> 1x1 conv weights (out, in, 1, 1)
        if target is not None and value.dim() == 2 and target.dim() == 4 and target.shape[2:] == (1, 1) \
                and target.shape[:2] == value.shape:
            state_dict[key] = value[:, :, None, None]
    return _adapt_focal_layout(state_dict, model_sd)


def checkpoint_new_layers(state_dict: Dict[str, torch.Tensor], model: FocalNet) -> List[str]:
    """Layers a checkpoint cannot have, which keep their initialisation: dense-task output norms, and focal levels
    beyond the checkpoint's."""
    return [key for key in model.state_dict() if key not in state_dict and (
        '.out_norm.' in key or (re.search(r'\.focal_layers\.(\d+)\.', key) and _has_fewer_levels(state_dict, key)))]


def _has_fewer_levels(state_dict: Dict[str, torch.Tensor], key: str) -> bool:
    prefix = key.split('.focal_layers.')[0] + '.focal_layers.0.'
    return any(k.startswith(prefix) for k in state_dict)


# focal windows are adapted by the filter (detection recipes widen them); output norms are new layers
register_checkpoint_family(FocalNet, checkpoint_filter_fn, checkpoint_new_layers,
                           adaptable=('focal_windows', 'out_norms'))


def _create_focalnet(variant: str, pretrained: bool = False, **kwargs) -> FocalNet:
    depths = kwargs.get('depths', (2, 2, 6, 2))
    # hierarchical: the four stages; isotropic: the last four blocks (all at stride 16)
    default_out_indices = tuple(range(len(depths))) if len(depths) > 1 else 4
    return build_zoo_model(FocalNet, variant, pretrained, checkpoint_filter_fn, default_out_indices, **kwargs)


_OFFICIAL_RELEASE = 'https://github.com/microsoft/FocalNet/releases/download/v1.0.0/'


def _cfg(url: str = '', **kwargs) -> Dict:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': .9, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.proj', 'classifier': 'head.fc',
        'license': 'mit', 'paper_ids': 'arXiv:2203.11926', 'paper_name': 'Focal Modulation Networks',
        'origin_url': 'https://github.com/microsoft/FocalNet',
        **kwargs,
    }


def _in22k_cfg(hub: str, official_file: str, size: int, num_classes: int = 21842, **kwargs) -> Dict:
    return _cfg(
        url=_OFFICIAL_RELEASE + official_file if official_file else '',
        hf_hub_id=hub,
        input_size=(3, size, size), pool_size=(size // 32, size // 32), crop_pct=1.0, num_classes=num_classes,
        notes=('ImageNet-22k (21842 classes, first 1000 logits are IN-1k in reordered label map; '
               'official labelmap_22k_reorder.txt)',),
        **kwargs,
    )


default_cfgs = generate_default_cfgs({
    'zoo_focalnet_tiny_srf.ms_in1k': _cfg(
        _OFFICIAL_RELEASE + 'focalnet_tiny_srf.pth', hf_hub_id='timm/focalnet_tiny_srf.ms_in1k'),
    'zoo_focalnet_tiny_lrf.ms_in1k': _cfg(
        _OFFICIAL_RELEASE + 'focalnet_tiny_lrf.pth', hf_hub_id='timm/focalnet_tiny_lrf.ms_in1k'),
    'zoo_focalnet_small_srf.ms_in1k': _cfg(
        _OFFICIAL_RELEASE + 'focalnet_small_srf.pth', hf_hub_id='timm/focalnet_small_srf.ms_in1k'),
    'zoo_focalnet_small_lrf.ms_in1k': _cfg(
        _OFFICIAL_RELEASE + 'focalnet_small_lrf.pth', hf_hub_id='timm/focalnet_small_lrf.ms_in1k'),
    'zoo_focalnet_base_srf.ms_in1k': _cfg(
        _OFFICIAL_RELEASE + 'focalnet_base_srf.pth', hf_hub_id='timm/focalnet_base_srf.ms_in1k'),
    'zoo_focalnet_base_lrf.ms_in1k': _cfg(
        _OFFICIAL_RELEASE + 'focalnet_base_lrf.pth', hf_hub_id='timm/focalnet_base_lrf.ms_in1k'),
    # isotropic models: the official files were on projects4jw.blob.core.windows.net, which no longer serves them
    # (microsoft/FocalNet#43); load a local copy with pretrained_cfg_overlay=dict(file=...).
    'zoo_focalnet_tiny_iso.ms_in1k': _cfg(pool_size=(14, 14), notes=('official weights offline: dead blob link',)),
    'zoo_focalnet_small_iso.ms_in1k': _cfg(pool_size=(14, 14), notes=('official weights offline: dead blob link',)),
    'zoo_focalnet_base_iso.ms_in1k': _cfg(pool_size=(14, 14), notes=('official weights offline: dead blob link',)),
    'zoo_focalnet_large_fl3.ms_in22k': _in22k_cfg(
        'timm/focalnet_large_fl3.ms_in22k', 'focalnet_large_lrf_384.pth', 384),
    'zoo_focalnet_large_fl4.ms_in22k': _in22k_cfg(
        'timm/focalnet_large_fl4.ms_in22k', 'focalnet_large_lrf_384_fl4.pth', 384),
    'zoo_focalnet_xlarge_fl3.ms_in22k': _in22k_cfg(
        'timm/focalnet_xlarge_fl3.ms_in22k', 'focalnet_xlarge_lrf_384.pth', 384),
    'zoo_focalnet_xlarge_fl4.ms_in22k': _in22k_cfg(
        'timm/focalnet_xlarge_fl4.ms_in22k', 'focalnet_xlarge_lrf_384_fl4.pth', 384),
    # huge: the official blob files are offline; timm's hub copies remain (fl4 was published without its head)
    'zoo_focalnet_huge_fl3.ms_in22k': _in22k_cfg('timm/focalnet_huge_fl3.ms_in22k', '', 224),
    'zoo_focalnet_huge_fl4.ms_in22k': _in22k_cfg('timm/focalnet_huge_fl4.ms_in22k', '', 224, num_classes=0),
})


@register_model
def zoo_focalnet_tiny_srf(pretrained: bool = False, **kwargs) -> FocalNet:
    """FocalNet-T, small receptive field (kernels 3, 5)."""
    model_args = dict(
        depths=(2, 2, 6, 2), embed_dim=96, focal_levels=(2, 2, 2, 2), focal_windows=(3, 3, 3, 3))
    return _create_focalnet('zoo_focalnet_tiny_srf', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_focalnet_tiny_lrf(pretrained: bool = False, **kwargs) -> FocalNet:
    """FocalNet-T, large receptive field (kernels 3, 5, 7)."""
    model_args = dict(
        depths=(2, 2, 6, 2), embed_dim=96, focal_levels=(3, 3, 3, 3), focal_windows=(3, 3, 3, 3))
    return _create_focalnet('zoo_focalnet_tiny_lrf', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_focalnet_small_srf(pretrained: bool = False, **kwargs) -> FocalNet:
    """FocalNet-S, small receptive field."""
    model_args = dict(
        depths=(2, 2, 18, 2), embed_dim=96, focal_levels=(2, 2, 2, 2), focal_windows=(3, 3, 3, 3))
    return _create_focalnet('zoo_focalnet_small_srf', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_focalnet_small_lrf(pretrained: bool = False, **kwargs) -> FocalNet:
    """FocalNet-S, large receptive field."""
    model_args = dict(
        depths=(2, 2, 18, 2), embed_dim=96, focal_levels=(3, 3, 3, 3), focal_windows=(3, 3, 3, 3))
    return _create_focalnet('zoo_focalnet_small_lrf', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_focalnet_base_srf(pretrained: bool = False, **kwargs) -> FocalNet:
    """FocalNet-B, small receptive field."""
    model_args = dict(
        depths=(2, 2, 18, 2), embed_dim=128, focal_levels=(2, 2, 2, 2), focal_windows=(3, 3, 3, 3))
    return _create_focalnet('zoo_focalnet_base_srf', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_focalnet_base_lrf(pretrained: bool = False, **kwargs) -> FocalNet:
    """FocalNet-B, large receptive field."""
    model_args = dict(
        depths=(2, 2, 18, 2), embed_dim=128, focal_levels=(3, 3, 3, 3), focal_windows=(3, 3, 3, 3))
    return _create_focalnet('zoo_focalnet_base_lrf', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_focalnet_tiny_iso(pretrained: bool = False, **kwargs) -> FocalNet:
    """Isotropic FocalNet-T: 12 blocks at patch 16, C=192."""
    model_args = dict(
        depths=(12,), embed_dim=192, patch_size=16, focal_levels=(3,), focal_windows=(3,))
    return _create_focalnet('zoo_focalnet_tiny_iso', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_focalnet_small_iso(pretrained: bool = False, **kwargs) -> FocalNet:
    """Isotropic FocalNet-S: 12 blocks at patch 16, C=384."""
    model_args = dict(
        depths=(12,), embed_dim=384, patch_size=16, focal_levels=(3,), focal_windows=(3,))
    return _create_focalnet('zoo_focalnet_small_iso', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_focalnet_base_iso(pretrained: bool = False, **kwargs) -> FocalNet:
    """Isotropic FocalNet-B: C=768 with post-norm and LayerScale."""
    model_args = dict(
        depths=(12,), embed_dim=768, patch_size=16, focal_levels=(3,), focal_windows=(3,),
        use_postln=True, use_layerscale=True)
    return _create_focalnet('zoo_focalnet_base_iso', pretrained=pretrained, **dict(model_args, **kwargs))


# large / xlarge / huge: conv stem, post-norm and LayerScale, as the official configs build them
@register_model
def zoo_focalnet_large_fl3(pretrained: bool = False, **kwargs) -> FocalNet:
    """FocalNet-L, 3 levels, kernels 5/7/9 (ImageNet-22k)."""
    model_args = dict(
        depths=(2, 2, 18, 2), embed_dim=192, focal_levels=(3, 3, 3, 3), focal_windows=(5, 5, 5, 5),
        use_conv_embed=True, use_postln=True, use_layerscale=True)
    return _create_focalnet('zoo_focalnet_large_fl3', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_focalnet_large_fl4(pretrained: bool = False, **kwargs) -> FocalNet:
    """FocalNet-L, 4 levels, kernels 3/5/7/9, normalized modulator (official yaml; timm leaves it off)."""
    model_args = dict(
        depths=(2, 2, 18, 2), embed_dim=192, focal_levels=(4, 4, 4, 4), focal_windows=(3, 3, 3, 3),
        normalize_modulator=True, use_conv_embed=True, use_postln=True, use_layerscale=True)
    return _create_focalnet('zoo_focalnet_large_fl4', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_focalnet_xlarge_fl3(pretrained: bool = False, **kwargs) -> FocalNet:
    """FocalNet-XL, 3 levels, kernels 5/7/9 (ImageNet-22k)."""
    model_args = dict(
        depths=(2, 2, 18, 2), embed_dim=256, focal_levels=(3, 3, 3, 3), focal_windows=(5, 5, 5, 5),
        use_conv_embed=True, use_postln=True, use_layerscale=True)
    return _create_focalnet('zoo_focalnet_xlarge_fl3', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_focalnet_xlarge_fl4(pretrained: bool = False, **kwargs) -> FocalNet:
    """FocalNet-XL, 4 levels, normalized modulator as FocalNet-DINO builds it (timm leaves it off)."""
    model_args = dict(
        depths=(2, 2, 18, 2), embed_dim=256, focal_levels=(4, 4, 4, 4), focal_windows=(3, 3, 3, 3),
        normalize_modulator=True, use_conv_embed=True, use_postln=True, use_layerscale=True)
    return _create_focalnet('zoo_focalnet_xlarge_fl4', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_focalnet_huge_fl3(pretrained: bool = False, **kwargs) -> FocalNet:
    """FocalNet-H, 3 levels, LayerNorm inside the modulation (ImageNet-22k)."""
    model_args = dict(
        depths=(2, 2, 18, 2), embed_dim=352, focal_levels=(3, 3, 3, 3), focal_windows=(3, 3, 3, 3),
        use_postln_in_modulation=True, use_conv_embed=True, use_postln=True, use_layerscale=True)
    return _create_focalnet('zoo_focalnet_huge_fl3', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_focalnet_huge_fl4(pretrained: bool = False, **kwargs) -> FocalNet:
    """FocalNet-H, 4 levels, LayerNorm inside the modulation (ImageNet-22k)."""
    model_args = dict(
        depths=(2, 2, 18, 2), embed_dim=352, focal_levels=(4, 4, 4, 4), focal_windows=(3, 3, 3, 3),
        use_postln_in_modulation=True, use_conv_embed=True, use_postln=True, use_layerscale=True)
    return _create_focalnet('zoo_focalnet_huge_fl4', pretrained=pretrained, **dict(model_args, **kwargs))


# HF transformers FocalNet (FocalNetModel / FocalNetForImageClassification / FocalNetBackbone) -> official names
_HF_FOCALNET_RENAMES = (
    (r'^embeddings\.patch_embeddings\.projection\.', 'patch_embed.proj.'),
    (r'^embeddings\.norm\.', 'patch_embed.norm.'),
    (r'^encoder\.stages\.(\d+)\.layers\.(\d+)\.', r'layers.\1.blocks.\2.'),
    (r'^encoder\.stages\.(\d+)\.downsample\.projection\.', r'layers.\1.downsample.proj.'),
    (r'^encoder\.stages\.(\d+)\.downsample\.norm\.', r'layers.\1.downsample.norm.'),
    (r'\.modulation\.projection_in\.', '.modulation.f.'),
    (r'\.modulation\.projection_context\.', '.modulation.h.'),
    (r'\.modulation\.projection_out\.', '.modulation.proj.'),
    (r'\.modulation\.layernorm\.', '.modulation.ln.'),
    (r'^layernorm\.', 'norm.'),
    (r'^classifier\.', 'head.'),
)


def _from_hf_focalnet(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """HF transformers' FocalNet layout (``focalnet.`` prefix optional) -> the official Microsoft one.

    Both keep the downsampling at the end of a stage (``encoder.stages.{i}.downsample``, ``layers.{i}.downsample``),
    so only names change; the official layout then converts as usual. Other layouts pass through unchanged; tensors
    of other heads (``embeddings.mask_token``, a masked-image-modelling ``decoder``) keep their names and are reported
    as not fitting.
    """
    if not any(k.startswith(('embeddings.patch_embeddings.', 'focalnet.embeddings.')) for k in state_dict):
        return state_dict
    converted = {}
    for key, value in state_dict.items():
        key = key[len('focalnet.'):] if key.startswith('focalnet.') else key
        for pattern, replacement in _HF_FOCALNET_RENAMES:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    return converted
