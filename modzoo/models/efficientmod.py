"""EfficientMod: Efficient Modulation for Vision Networks (Ma et al., ICLR 2024).

Paper: https://openreview.net/forum?id=ip5LHJs6QX, official code: https://github.com/ma-xu/EfficientMod.

The four released variants (xxs, xs, s and the pure-conv s_conv) with the official numerics: per-block expansion
ratios alternating 1 and r (no activation after ``fc1`` when r = 1), the modulation ``act(fc1(x)) * tile(ctx)`` with
*tile* semantics (hidden channel j times context channel j mod C), LayerScale 1e-4 on the modulation blocks, and the
plain pre-norm global-attention blocks appended to stages 3-4 of the hybrid variants (8 heads of width
``max(C // 8, 32)``, no LayerScale).

Layout: channels-last (B, H, W, C) inside the stages, with ``nn.Linear`` layers as in the official code, so official
weights load without reshapes. Between stages tensors are NCHW. The stride-2 downsample sits at the *start* of
stages 2-4 (the official code ends stages 1-3 with it), so stage outputs are the dense-task features "before each
downsample" and :meth:`EfficientMod.stage_transitions` names modules that take NCHW input.
:func:`checkpoint_filter_fn` converts official files (timm train-script containers, ``model`` or plain dicts, and the
official det/seg backbones' use of them).

Differences from the official factories, on purpose: ``num_classes``, ``in_chans``, ``drop_rate`` and
``drop_path_rate`` are honoured (the official factories drop their ``**kwargs``); attention dropout is only applied
in training (the official code passes its dropout probability to SDPA in eval too). The official ``drop_rate``
(dropout inside the blocks) is ``proj_drop_rate`` here; ``drop_rate`` is the head dropout, as everywhere in timm.

Input sizes: any H x W. The overlapping 7x7/s4/p3 stem and 3x3/s2/p1 downsamples give ``ceil(H / stride)`` rows.

TorchScript: ``torch.jit.script`` works (tested: logits and ``forward_intermediates`` match eager).
"""
import logging
import re
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, DropPath, LayerScale, Mlp, trunc_normal_
from timm.models import checkpoint, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from modzoo.kernels import dwconv_gelu, gelu_tile_mul  # Triton where validated, else their PyTorch reference
from modzoo.layers import check_image_input, drop_path_rates
from modzoo.layers.arg_check import check_model_args
from modzoo.layers.mobile_forms import (explicit_attention, sliced_heads, windowed_depthwise_form,
                                        without_fused_attention)
from ._builder import build_zoo_model
from ._checkpoint import register_checkpoint_family

__all__ = [
    'EfficientMod', 'EfficientModBlock', 'AttentionBlock', 'checkpoint_filter_fn', 'dwconv_gelu', 'gelu_tile_mul',
]

_logger = logging.getLogger(__name__)


class ContextLayer(nn.Module):
    """The context branch ``g(GELU(dwconv(f(x))))`` on a channels-last tensor (f, g: Linear C -> C); the depthwise
    conv and GELU are :func:`modzoo.kernels.dwconv_gelu`."""

    def __init__(self, dim: int, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f'context kernel size must be odd (same-size padding), got {kernel_size}')
        self.f = nn.Linear(dim, dim)
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.g = nn.Linear(dim, dim)

    def export_form(self, target: str) -> Optional[nn.Module]:
        """For ExecuTorch: the depthwise conv in 5x5 windows (XNNPACK runs a 7x7 depthwise conv as a grouped GEMM,
        ~17x slower than a 5x5; :class:`~modzoo.layers.mobile_forms.WindowedDepthwiseConv2d`)."""
        windowed = windowed_depthwise_form(self.dwconv) if target == 'executorch' else None
        return ContextLayerWindowed(self, windowed) if windowed is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = dwconv_gelu(self.f(x).permute(0, 3, 1, 2), self.dwconv.weight, self.dwconv.bias)
        return self.g(ctx.permute(0, 2, 3, 1))


class ContextLayerWindowed(nn.Module):
    """Export form of :class:`ContextLayer` for ExecuTorch: the same branch with the depthwise conv as 5x5 windows
    and GELU after it (the fused kernel op would trace back to one large depthwise conv)."""

    def __init__(self, layer: ContextLayer, dwconv: nn.Module):
        super().__init__()
        self.f, self.dwconv, self.g = layer.f, dwconv, layer.g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g(F.gelu(self.dwconv(self.f(x).permute(0, 3, 1, 2))).permute(0, 2, 3, 1))


class EfficientModulation(nn.Module):
    """``fc2(act_r(fc1(x)) * tile_r(context(x)))``, the official ``Mlp`` with the modulation fused in.

    ``act_r`` (GELU, then dropout) only exists for an expansion ``r > 1``; with ``r == 1`` the value branch is the bare
    ``fc1`` output, as in the official code. ``tile_r``: hidden channel ``j`` is modulated by context channel
    ``j mod C``. ``act_r(v) * tile_r(ctx)`` is :func:`modzoo.kernels.gelu_tile_mul`; while the dropout is active
    (training with ``proj_drop > 0``) the GELU and dropout run first and the op only multiplies.
    """

    def __init__(self, dim: int, expansion: int, kernel_size: int = 7, proj_drop: float = 0.):
        super().__init__()
        if int(expansion) != expansion or expansion < 1:
            raise ValueError(f'EfficientMod expansion ratios must be positive integers, got {expansion}')
        self.dim = dim
        self.expansion = int(expansion)
        self.apply_gelu = self.expansion > 1
        self.drop_prob = proj_drop if self.apply_gelu else 0.
        self.fc1 = nn.Linear(dim, dim * self.expansion)
        self.drop = nn.Dropout(self.drop_prob)
        self.context_layer = ContextLayer(dim, kernel_size)
        self.fc2 = nn.Linear(dim * self.expansion, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.context_layer(x)
        v = self.fc1(x)
        apply_gelu = self.apply_gelu
        if apply_gelu and self.training and self.drop_prob > 0.:
            # the dropout sits between GELU and the modulation, so the op cannot apply the GELU while it is active
            v = self.drop(F.gelu(v))
            apply_gelu = False
        return self.fc2(gelu_tile_mul(v, ctx, apply_gelu, self.expansion))


class EfficientModBlock(nn.Module):
    """``x + drop_path(ls(modulation(LN(x))))`` on channels-last input."""

    def __init__(
            self,
            dim: int,
            expansion: int,
            kernel_size: int = 7,
            layerscale_value: Optional[float] = 1e-4,
            proj_drop: float = 0.,
            drop_path: float = 0.,
            norm_layer=nn.LayerNorm,
    ):
        super().__init__()
        self.norm = norm_layer(dim)
        self.mlp = EfficientModulation(dim, expansion, kernel_size, proj_drop)
        self.ls = LayerScale(dim, layerscale_value) if layerscale_value is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.ls(self.mlp(self.norm(x))))


class Attention(nn.Module):
    """Global multi-head self-attention over tokens ``(B, N, C)`` with heads of width ``max(C // heads, min_head_dim)``
    (the inner width may exceed C); no qkv bias."""

    def __init__(
            self,
            dim: int,
            num_heads: int = 8,
            min_head_dim: int = 32,
            qkv_bias: bool = False,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = max(dim // num_heads, min_head_dim)
        inner = num_heads * self.head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.fused_attn = True  # False: explicit 3-D matmuls (the ExecuTorch export form)
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def export_form(self, target: str) -> Optional[nn.Module]:
        """For ExecuTorch: attention as explicit 3-D matmuls (SDPA exports masking ops XNNPACK lacks)."""
        return without_fused_attention(self) if target == 'executorch' else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # unflatten/flatten on the channel dim only: batch and token counts stay symbolic for export
        qkv = self.qkv(x)
        if self.fused_attn:
            q, k, v = qkv.unflatten(-1, (3, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4).unbind(0)
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        else:
            q, k, v = sliced_heads(qkv, self.num_heads, self.head_dim)
            x = explicit_attention(q, k, v, self.head_dim ** -0.5, self.attn_drop, self.training)
        x = x.transpose(1, 2).flatten(-2)
        return self.proj_drop(self.proj(x))


class AttentionBlock(nn.Module):
    """Pre-norm ViT block (attention + GELU MLP, no LayerScale) on channels-last ``(B, H, W, C)`` input."""

    def __init__(
            self,
            dim: int,
            mlp_ratio: float = 4.,
            num_heads: int = 8,
            min_head_dim: int = 32,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
            drop_path: float = 0.,
            norm_layer=nn.LayerNorm,
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, min_head_dim, attn_drop=attn_drop, proj_drop=proj_drop)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.flatten(1, 2)
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x.reshape(shape)


class PatchEmbed(nn.Module):
    """Overlapping strided conv + LayerNorm: NCHW in, channels-last (B, H', W', C) out.

    The stem (7x7, stride 4, pad 3) and the stride-2 downsamples between stages (3x3, pad 1). Not timm's
    ``OverlapPatchEmbed`` (same keys and numerics): that one fixes its norm, this one takes the model's ``norm_layer``.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, padding: int, norm_layer=nn.LayerNorm):
        super().__init__()
        self.proj = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=padding)
        self.norm = norm_layer(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class EfficientModStage(nn.Module):
    """Optional stride-2 downsample, ``len(expansions)`` modulation blocks, then ``attention_depth`` attention blocks.

    Takes and returns NCHW; the blocks run channels-last in between (the permutes are views, no copies).
    """

    def __init__(
            self,
            in_dim: int,
            dim: int,
            expansions: Sequence[int],
            attention_depth: int = 0,
            att_ratio: float = 4.,
            downsample: bool = True,
            kernel_size: int = 7,
            layerscale_value: Optional[float] = 1e-4,
            num_heads: int = 8,
            min_head_dim: int = 32,
            proj_drop: float = 0.,
            attn_drop: float = 0.,
            drop_path: Sequence[float] = (),
            norm_layer=nn.LayerNorm,
    ):
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = PatchEmbed(in_dim, dim, 3, 2, 1, norm_layer) if downsample else None
        depth = len(expansions)
        dpr = list(drop_path) or [0.] * (depth + attention_depth)
        blocks: List[nn.Module] = [
            EfficientModBlock(dim, r, kernel_size, layerscale_value, proj_drop, dpr[j], norm_layer)
            for j, r in enumerate(expansions)
        ]
        # the official code appends the attention blocks to the same list: keys share the `blocks.{j}` index space
        blocks += [
            AttentionBlock(dim, att_ratio, num_heads, min_head_dim, attn_drop, proj_drop, dpr[depth + j], norm_layer)
            for j in range(attention_depth)
        ]
        self.blocks = nn.ModuleList(blocks)

    def export_form(self, target: str) -> Optional[nn.Module]:
        """For ONNX Runtime: the stage channels-first (:mod:`modzoo.models.efficientmod_onnx`; None where it does not
        apply). Not for OpenVINO, which runs the channels-last stage faster."""
        if target != 'onnx':
            return None
        from .efficientmod_onnx import stage_nchw  # the form's file imports this one
        return stage_nchw(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        else:
            x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x)
            else:
                x = block(x)
        return x.permute(0, 3, 1, 2)


def _block_expansions(mlp_ratio, depth: int, stage: int) -> List[int]:
    """Per-block expansion ratios of a stage: an int r means the official alternation 1, r, 1, r, ...; a sequence
    gives them explicitly (longer sequences are cut to ``depth`` like the official configs)."""
    if isinstance(mlp_ratio, (int, float)):
        return [1 if j % 2 == 0 else int(mlp_ratio) for j in range(depth)]
    ratios = list(mlp_ratio)
    if len(ratios) < depth:
        raise ValueError(f'stage {stage}: {len(ratios)} mlp ratios for {depth} blocks')
    return [int(r) for r in ratios[:depth]]


class EfficientMod(nn.Module):
    """EfficientMod, a 4-stage hierarchical network of efficient-modulation blocks (plus optional attention blocks).

    Args:
        in_chans: input image channels.
        num_classes: classifier outputs (0 for no classifier).
        global_pool: 'avg' (default), 'max', 'avgmax' or '' (no pooling).
        embed_dim: channels per stage.
        depths: modulation blocks per stage.
        attention_depth: attention blocks appended to each stage.
        mlp_ratio: per stage, an int r (blocks alternate expansion 1 and r, starting with 1) or the per-block ratios.
        att_ratio: MLP ratio of each stage's attention blocks.
        context_size: kernel of the depthwise context conv.
        layerscale_value: LayerScale init on the modulation blocks (None: no LayerScale).
        num_heads / min_head_dim: attention heads and the smallest head width (head width ``max(C // heads, min)``).
        drop_rate: head dropout. proj_drop_rate: dropout inside the blocks (the official ``drop_rate``).
        attn_drop_rate: attention-probability dropout (training only). drop_path_rate: stochastic depth, rising
            linearly over all blocks (modulation blocks before the attention blocks of the same stage).
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            embed_dim: Sequence[int] = (32, 64, 128, 256),
            depths: Sequence[int] = (2, 2, 6, 2),
            attention_depth: Sequence[int] = (0, 0, 0, 0),
            mlp_ratio: Sequence[Union[int, Sequence[int]]] = (6, 6, 6, 6),
            att_ratio: Sequence[float] = (4, 4, 4, 4),
            context_size: int = 7,
            layerscale_value: Optional[float] = 1e-4,
            num_heads: int = 8,
            min_head_dim: int = 32,
            drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            norm_layer=None,
    ):
        super().__init__()
        check_model_args('EfficientMod', in_chans=in_chans, num_classes=num_classes, embed_dim=embed_dim,
                         depths=depths, context_size=context_size, num_heads=num_heads, drop_rate=drop_rate,
                         proj_drop_rate=proj_drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate)
        num_stages = len(depths)
        for name, value in (('embed_dim', embed_dim), ('attention_depth', attention_depth),
                            ('mlp_ratio', mlp_ratio), ('att_ratio', att_ratio)):
            if len(value) != num_stages:
                raise ValueError(f'{name} needs one entry per stage ({num_stages}), got {list(value)}')
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-5)
        embed_dim = [int(c) for c in embed_dim]

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.num_features = self.head_hidden_size = embed_dim[-1]
        self.grad_checkpointing = False

        self.stem = PatchEmbed(in_chans, embed_dim[0], 7, 4, 3, norm_layer)

        blocks_per_stage = [d + a for d, a in zip(depths, attention_depth, strict=True)]
        dpr = drop_path_rates(drop_path_rate, blocks_per_stage)
        stages = []
        self.feature_info = []
        in_dim = embed_dim[0]
        for i in range(num_stages):
            stages.append(EfficientModStage(
                in_dim,
                embed_dim[i],
                expansions=_block_expansions(mlp_ratio[i], depths[i], i),
                attention_depth=attention_depth[i],
                att_ratio=att_ratio[i],
                downsample=i > 0,
                kernel_size=context_size,
                layerscale_value=layerscale_value,
                num_heads=num_heads,
                min_head_dim=min_head_dim,
                proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[i],
                norm_layer=norm_layer,
            ))
            in_dim = embed_dim[i]
            self.feature_info.append(dict(num_chs=embed_dim[i], reduction=4 * 2 ** i, module=f'layers.{i}'))
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
        """Names of the stride-2 downsamples between stages (they take NCHW input); used by the SFM add-on."""
        return [f'layers.{i}.downsample' for i in range(1, len(self.layers))]

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            check_image_input(x, self.in_chans, type(self).__name__)
        return self.stem(x).permute(0, 3, 1, 2)

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
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
        """Forward through the network, returning the stage outputs (NCHW, strides 4/8/16/32) listed in
        ``feature_info``: the features before each downsample, as the official det/seg backbones return them.

        Args:
            indices: taps to return (None: all, int n: the last n, sequence: those indices).
            norm: apply the final norm to the last tap when it is the network's last output.
            stop_early: stop after the deepest requested tap.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the list of taps.
        """
        if output_fmt != 'NCHW':
            raise ValueError('EfficientMod intermediates are NCHW only')
        intermediates: List[torch.Tensor] = []
        take_indices, max_index = feature_take_indices(self.num_taps, indices)
        x = self._embed(x)
        last_idx = self.num_taps - 1
        # TorchScript unrolls loops over module lists and allows no `break`: later stages are skipped instead
        for idx, stage in enumerate(self.layers):
            if not stop_early or idx <= max_index:
                x = stage(x)
                if idx in take_indices:
                    intermediates.append(self._final_norm(x) if norm and idx == last_idx else x)
        if intermediates_only:
            return intermediates
        return self._final_norm(x), intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the deepest requested tap (and the norm/head when asked)."""
        take_indices, max_index = feature_take_indices(len(self.feature_info), indices)
        self.layers = self.layers[:max_index + 1]
        if prune_norm or max_index < len(self.feature_info) - 1:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._embed(x)
        x = self.layers(x)
        return self._final_norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=True) if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(module: nn.Module) -> None:
    # The official init trunc-normal-inits Linear layers only (its `isinstance(m, nn.Linear or nn.Conv2d)` is
    # `isinstance(m, nn.Linear)`); the stem, downsample and depthwise convs keep PyTorch's default init.
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _remap_official_key(key: str) -> str:
    """One official (classification or det/seg backbone) key -> modzoo layout."""
    key = re.sub(r'^patch_embed\.', 'stem.', key)
    # the official downsample ends stage i; ours starts stage i + 1
    key = re.sub(r'^layers\.(\d+)\.downsample\.', lambda m: f'layers.{int(m.group(1)) + 1}.downsample.', key)
    key = re.sub(r'\.gamma_1$', '.ls.gamma', key)
    key = key.replace('.context_layer.context_list.0.', '.context_layer.dwconv.')
    key = re.sub(r'^head\.', 'head.fc.', key)
    return key


def checkpoint_filter_fn(state_dict, model: EfficientMod) -> Dict[str, torch.Tensor]:
    """Convert an EfficientMod state dict to this model's layout.

    Accepts modzoo keys and the official ones (``patch_embed``, downsample at the end of stages 1-3, ``gamma_1``,
    ``context_list.0``, ``head``). An official det/seg backbone has no final ``norm``: load it into a full model with
    ``allow_missing=('norm.',)`` (that norm, unused by the features, keeps its initialisation).
    """
    if 'stem.proj.weight' not in state_dict:
        state_dict = {_remap_official_key(k): v for k, v in state_dict.items()}
    return state_dict


register_checkpoint_family(EfficientMod, checkpoint_filter_fn)


def _create_efficientmod(variant: str, pretrained: bool = False, **kwargs) -> EfficientMod:
    return build_zoo_model(EfficientMod, variant, pretrained, checkpoint_filter_fn, **kwargs)


_ORIGIN = 'https://github.com/ma-xu/EfficientMod'
_DRIVE = 'https://drive.google.com/drive/folders/'


def _cfg(drive_folder: str, distilled: bool = True, **kwargs) -> Dict:
    # The official files are in Google Drive folders, which timm cannot download: no url/hf_hub_id, so
    # pretrained=True raises timm's "No pretrained weights exist" error. Load a downloaded file with
    # pretrained_cfg_overlay=dict(file=...); checkpoint_filter_fn converts it.
    notes = (
        f'official checkpoint: Google Drive folder {_DRIVE}{drive_folder} (not downloadable by timm; '
        f'load the file with pretrained_cfg_overlay=dict(file=...))',
        'ImageNet-1k, soft distillation from RegNetY-16GF' if distilled else 'ImageNet-1k, no distillation',
    )
    return {
        'url': '',
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': .9, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.proj', 'classifier': 'head.fc',
        # the official repository has no LICENSE file and its README names none: no license is granted
        'license': 'unknown',
        'paper_ids': 'openreview:ip5LHJs6QX', 'paper_name': 'Efficient Modulation for Vision Networks',
        'origin_url': _ORIGIN,
        'notes': notes,
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'zoo_efficientmod_xxs.dist_in1k': _cfg('1c0dlnN7w1bHlAsKcJFhGVA2mIhoA6ZHz'),
    'zoo_efficientmod_xs.dist_in1k': _cfg('1PPQFO891WfJRUiH58NlWOgHDEzDnwC0_'),
    'zoo_efficientmod_s.dist_in1k': _cfg('1rJs8LcWmdTFmj-IJ0cmlVp_MxGfZFsFk'),
    'zoo_efficientmod_s_conv.in1k': _cfg('1EY637XRiDPL4AwrVGESJWsK-ZP2GhnaI', distilled=False),
})


# Per-block expansion ratios of the official factories (their lists are longer than the depths; these are the
# entries used). The official drop_path_rate defaults (0.02 for s and s_conv) are kept as defaults here.

@register_model
def zoo_efficientmod_xxs(pretrained: bool = False, **kwargs) -> EfficientMod:
    """EfficientMod-xxs: 4.7M params, attention blocks in stages 3 (1) and 4 (2)."""
    model_args = dict(
        embed_dim=(32, 64, 128, 256), depths=(2, 2, 6, 2), attention_depth=(0, 0, 1, 2),
        mlp_ratio=((1, 6), (1, 6), (1, 6, 1, 6, 1, 6), (1, 6)), att_ratio=(0, 0, 4, 4),
    )
    return _create_efficientmod('zoo_efficientmod_xxs', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_efficientmod_xs(pretrained: bool = False, **kwargs) -> EfficientMod:
    """EfficientMod-xs: 6.6M params, 3 attention blocks in stages 3 and 4."""
    model_args = dict(
        embed_dim=(32, 64, 144, 288), depths=(3, 3, 4, 2), attention_depth=(0, 0, 3, 3),
        mlp_ratio=((1, 4, 1), (1, 4, 1), (1, 4, 1, 4), (1, 4)), att_ratio=(4, 4, 4, 4),
    )
    return _create_efficientmod('zoo_efficientmod_xs', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_efficientmod_s(pretrained: bool = False, **kwargs) -> EfficientMod:
    """EfficientMod-s: 12.9M params, 4 attention blocks in stages 3 and 4 (MLP ratio 5 in stage 4)."""
    model_args = dict(
        embed_dim=(32, 64, 144, 312), depths=(4, 4, 8, 4), attention_depth=(0, 0, 4, 4),
        mlp_ratio=(6, 6, 6, 6), att_ratio=(4, 4, 4, 5), drop_path_rate=0.02,
    )
    return _create_efficientmod('zoo_efficientmod_s', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_efficientmod_s_conv(pretrained: bool = False, **kwargs) -> EfficientMod:
    """EfficientMod-s-Conv: the pure-conv 12.9M model (no attention blocks)."""
    model_args = dict(
        embed_dim=(40, 80, 160, 344), depths=(4, 4, 12, 8), attention_depth=(0, 0, 0, 0),
        mlp_ratio=(6, 6, 6, 6), att_ratio=(4, 4, 4, 4), drop_path_rate=0.02,
    )
    return _create_efficientmod('zoo_efficientmod_s_conv', pretrained=pretrained, **dict(model_args, **kwargs))
