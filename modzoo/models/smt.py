"""SMT: Scale-Aware Modulation Meet Transformer (Lin et al., ICCV 2023, https://arxiv.org/abs/2307.08579).

SMT-T/S/B/L computed exactly as the official classification code (AFeng-x/SMT ``models/smt.py``): the conv+BN+ReLU
stem, overlapping 3x3/2 downsamples at the start of stages 2-4, scale-aware modulation (SAM) blocks in stages 1-2,
the "evolutionary hybrid" stage 3 (SAM and multi-head self-attention (MSA) blocks alternate), MSA in stage 4, the
ConvFFN with its residual inside the activation, LayerScale for SMT-L, LayerNorm eps 1e-6 in the blocks and stage
norms but 1e-5 in the patch-embed norms.

Layout: the parameter names are the official ones (``patch_embed{i}``, ``block{i}.{j}``, ``norm{i}``, ``head``,
i = 1..4), so official release files load with a trivial :func:`checkpoint_filter_fn`; the only rename is the MSA
local conv of the official det/seg backbones (``attn.dw_conv``), which the official loader silently leaves at random
init. Inside a stage the activations are channels-last ``(B, H, W, C)`` (the official ``(B, N, C)`` tokens with the
spatial shape kept), so the Linear layers apply directly and no reshape needs a batch size: every reshape is
``flatten``/``unflatten``/``reshape_as``, which keeps the batch (and H, W) symbolic for ONNX and ``torch.export``.
Stage outputs (features, ``forward_features``) are NCHW.

Fixed relative to the official code: ``reset_classifier`` (crashes there), gradient checkpointing (the official
``--use-checkpoint`` is swallowed by ``**kwargs``), batch-symbolic reshapes (the official ``reshape(B, H, W, ...)``
bakes the batch into dynamo ONNX exports), no ``self.modulator`` side effect. Input sizes: any H x W; the stem's
2x2/2 conv zero-pads an odd height/width at the bottom/right so stage i has ``ceil(H / 2**(i+2))`` rows (the official
code drops the last row and column there; for sizes divisible by 4 both are identical).

Deployment: :func:`fuse_bn` / ``SMT.fuse_bn()`` fold the stem BatchNorm into the first conv and the SAA BatchNorm into
the grouped 1x1 ``proj0`` (inference only; the fused model no longer takes unfused checkpoints).

TorchScript: ``torch.jit.script`` is not supported (stages and the mixed-conv heads are looked up by their official
attribute names), and raises a clear error; ``torch.jit.trace``, ``torch.compile``, ``torch.export`` and the ONNX
exporters work.
"""
import logging
import re
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, trunc_normal_, use_fused_attn
from timm.models import checkpoint, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models.pvt_v2 import OverlapPatchEmbed

from modzoo.kernels import mixed_dwconv_interleave  # Triton where validated, else its PyTorch reference
from modzoo.layers import check_image_input, drop_path_rates, fold_conv_bn, linear_as_conv1x1, pad_for_patches
from modzoo.layers.arg_check import check_model_args
from modzoo.layers.mobile_forms import explicit_attention, without_fused_attention
from modzoo.layers.onnx_forms import ONNX_TARGETS
from ._builder import build_zoo_model
from ._checkpoint import register_checkpoint_family

__all__ = [
    'SMT', 'ScaleAwareModulation', 'MultiHeadSelfAttention', 'SMTBlock', 'mixed_dwconv_interleave', 'fuse_bn',
    'checkpoint_filter_fn',
]

_logger = logging.getLogger(__name__)


class ChannelsLastDWConv(nn.Module):
    """3x3 depthwise conv with bias on a channels-last ``(B, H, W, C)`` map (key ``dwconv`` as in the official code)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class ConvFFN(nn.Module):
    """``fc2(drop(GELU(h + dwconv(h))))`` with ``h = fc1(x)``: the residual sits inside the activation."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = ChannelsLastDWConv(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        x = self.act(x + self.dwconv(x))
        x = self.drop(x)
        x = self.fc2(x)
        return self.drop(x)

    def export_form(self, target: str) -> Optional[nn.Module]:
        """For an ONNX graph (eval; ONNX Runtime's or OpenVINO's), :class:`ConvFFNNCHW`; see
        :func:`modzoo.export.deploy.prepare_for_export`."""
        return ConvFFNNCHW(self) if target in ONNX_TARGETS and not self.training else None


class ConvFFNNCHW(nn.Module):
    """Export form of :class:`ConvFFN`: channels-last in and out, channels-first inside, the Linear layers as 1x1
    convolutions. The layout changes sit on the C-wide input and output, not on the 4C-wide hidden map around the
    depthwise conv, and ONNX Runtime runs fc1, dwconv and fc2 as one NCHWc chain."""

    def __init__(self, ffn: ConvFFN):
        super().__init__()
        self.fc1 = linear_as_conv1x1(ffn.fc1)
        self.dwconv = ffn.dwconv.dwconv
        self.act = ffn.act
        self.fc2 = linear_as_conv1x1(ffn.fc2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x.permute(0, 3, 1, 2))
        x = self.fc2(self.act(x + self.dwconv(x)))
        return x.permute(0, 2, 3, 1)


class ScaleAwareModulation(nn.Module):
    """SAM: ``proj(SAA(MHMC(s)) * v)`` with ``v = W_v x``, ``s = W_s x``.

    MHMC: head i (of ``num_heads``) runs a depthwise ``(3 + 2i)``-conv on the contiguous channel chunk i
    (``local_conv_{i+1}``). SAA: the heads are interleaved, mixed by the grouped 1x1 ``proj0`` (``C / h`` groups,
    one channel per scale each, ``expand_ratio`` x wider), then BN, GELU and the 1x1 ``proj1``. MHMC and the
    interleave are :func:`modzoo.kernels.mixed_dwconv_interleave`.
    """

    def __init__(
            self,
            dim: int,
            num_heads: int = 4,
            expand_ratio: int = 2,
            qkv_bias: bool = True,
            proj_drop: float = 0.,
    ):
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f'SAM needs dim ({dim}) divisible by a positive ca_num_heads, got {num_heads}')
        self.dim = dim
        self.num_heads = num_heads
        group_chs = dim // num_heads
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.s = nn.Linear(dim, dim, bias=qkv_bias)
        for i in range(num_heads):
            kernel_size = 3 + 2 * i
            setattr(self, f'local_conv_{i + 1}', nn.Conv2d(
                group_chs, group_chs, kernel_size, padding=kernel_size // 2, groups=group_chs))
        self.proj0 = nn.Conv2d(dim, dim * expand_ratio, 1, groups=group_chs)
        self.bn = nn.BatchNorm2d(dim * expand_ratio)
        self.act = nn.GELU()
        self.proj1 = nn.Conv2d(dim * expand_ratio, dim, 1)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def mixed_conv_params(self) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        convs = [getattr(self, f'local_conv_{i + 1}') for i in range(self.num_heads)]
        return [c.weight for c in convs], [c.bias for c in convs]

    def modulator(self, x: torch.Tensor) -> torch.Tensor:
        """The modulator ``SAA(MHMC(W_s x))`` (B, C, H, W) for a channels-last input (the official code keeps it as
        ``self.modulator`` after every forward; here it is computed on request)."""
        s = self.s(x).permute(0, 3, 1, 2)
        weights, biases = self.mixed_conv_params()
        s = mixed_dwconv_interleave(s, weights, biases)
        return self.proj1(self.act(self.bn(self.proj0(s))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.v(x)
        x = self.modulator(x).permute(0, 2, 3, 1) * v
        return self.proj_drop(self.proj(x))

    @torch.no_grad()
    def fuse_bn(self) -> None:
        if isinstance(self.bn, nn.BatchNorm2d):
            self.proj0 = fold_conv_bn(self.proj0, self.bn)
            self.bn = nn.Identity()


class MultiHeadSelfAttention(nn.Module):
    """Global MHSA (no spatial reduction) plus a 3x3 depthwise conv of ``v`` as a local term (key ``local_conv``)."""

    def __init__(
            self,
            dim: int,
            num_heads: int = 8,
            qkv_bias: bool = True,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
    ):
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f'MSA needs dim ({dim}) divisible by a positive sa_num_heads, got {num_heads}')
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = use_fused_attn()
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.local_conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def export_form(self, target: str) -> Optional[nn.Module]:
        """For ExecuTorch: attention as explicit 3-D matmuls (SDPA and 4-D matmuls export ops XNNPACK lacks)."""
        return without_fused_attention(self) if target == 'executorch' else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, H, W, C) -> (B, heads, N, head_dim); no reshape names the batch size
        q = self.q(x).flatten(1, 2).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
        kv = self.kv(x)
        k, v = kv.flatten(1, 2).unflatten(-1, (2, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.)
        else:
            out = explicit_attention(q, k, v, self.scale, self.attn_drop.p, self.training)
        out = out.transpose(1, 2).reshape_as(x)
        # the local term: v as an image (the second half of kv's channels, in head-major order)
        local = self.local_conv(kv[..., self.dim:].permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj_drop(self.proj(out + local))


class SMTBlock(nn.Module):
    """Pre-norm block ``x + dp(g1 * attn(LN(x)))``, ``x + dp(g2 * ConvFFN(LN(x)))`` on channels-last maps.

    ``attn`` is SAM (``ca_attention=True``) or MSA; ``gamma_1``/``gamma_2`` are the official LayerScale parameters.
    """

    def __init__(
            self,
            dim: int,
            ca_attention: bool,
            ca_num_heads: int = 4,
            sa_num_heads: int = 8,
            mlp_ratio: float = 4.,
            expand_ratio: int = 2,
            qkv_bias: bool = True,
            layerscale_value: Optional[float] = None,
            proj_drop: float = 0.,
            attn_drop: float = 0.,
            drop_path: float = 0.,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        if ca_attention:
            self.attn = ScaleAwareModulation(dim, ca_num_heads, expand_ratio, qkv_bias, proj_drop)
        else:
            self.attn = MultiHeadSelfAttention(dim, sa_num_heads, qkv_bias, attn_drop, proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio), proj_drop)
        if layerscale_value is not None:
            self.gamma_1 = nn.Parameter(torch.full((dim,), layerscale_value))
            self.gamma_2 = nn.Parameter(torch.full((dim,), layerscale_value))
        else:
            self.register_parameter('gamma_1', None)
            self.register_parameter('gamma_2', None)

    @property
    def block_type(self) -> str:
        return 'SAM' if isinstance(self.attn, ScaleAwareModulation) else 'MSA'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.norm1(x))
        if self.gamma_1 is not None:
            y = self.gamma_1 * y
        x = x + self.drop_path(y)
        y = self.mlp(self.norm2(x))
        if self.gamma_2 is not None:
            y = self.gamma_2 * y
        return x + self.drop_path(y)


class ConvStem(nn.Module):
    """Stride-4 stem: ``k x k``/2 conv (no bias), BN, ReLU, 2x2/2 conv, then LayerNorm (eps 1e-5) channels-last.

    Keys ``conv.{0,1,3}`` and ``norm`` as in the official ``Head``. Takes NCHW, returns (B, H/4, W/4, C).
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, norm_layer=partial(nn.LayerNorm, eps=1e-5)):
        super().__init__()
        if kernel_size not in (3, 7):
            raise ValueError(f'head_conv must be 3 (SMT-T/S) or 7 (SMT-B/L), got {kernel_size}')
        self.conv = nn.Sequential(
            nn.Conv2d(in_chs, out_chs, kernel_size, 2, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_chs, out_chs, 2, 2),
        )
        self.norm = norm_layer(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv[2](self.conv[1](self.conv[0](x)))
        # an odd height/width would silently lose its last row/column in the non-overlapping 2x2 conv
        x = self.conv[3](pad_for_patches(x, 2))
        return self.norm(x.permute(0, 2, 3, 1))

    @torch.no_grad()
    def fuse_bn(self) -> None:
        if isinstance(self.conv[1], nn.BatchNorm2d):
            self.conv[0] = fold_conv_bn(self.conv[0], self.conv[1])
            self.conv[1] = nn.Identity()


class ChannelsLastToNCHW(nn.Module):
    """(B, H, W, C) -> contiguous (B, C, H, W). A module, so the NCHW stage output has a name: the feature taps
    (``feature_cls='fx'``/``'hook'``, torchvision's ``create_feature_extractor``) return NCHW maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2).contiguous()


class SMT(nn.Module):
    """Scale-Aware Modulation Transformer (4 stages, strides 4/8/16/32).

    Args (official names where the official model has them):
        in_chans: input image channels.
        num_classes: classifier outputs (0 for no classifier).
        global_pool: 'avg' (default, the official token mean), 'max', 'avgmax' or '' (no pooling).
        embed_dims: channels per stage.
        ca_num_heads: SAM heads (mixed-conv scales, kernels 3, 5, 7, ...) per stage; -1 where a stage has no SAM.
        sa_num_heads: MSA heads per stage; -1 where a stage has no MSA.
        mlp_ratios: ConvFFN width per stage.
        qkv_bias: bias in ``v``/``s`` and ``q``/``kv``.
        use_layerscale / layerscale_value: LayerScale ``gamma_1``/``gamma_2`` (SMT-L).
        depths: blocks per stage.
        ca_attentions: 1 for SAM, 0 for MSA, per stage; in stage 3 every odd block is MSA regardless (the
            evolutionary hybrid stage).
        head_conv: stem kernel (3 for T/S, 7 for B/L).
        expand_ratio: SAA width of ``proj0``.
        drop_rate: dropout before the classifier (timm's meaning; the official ``drop_rate`` is ``proj_drop_rate``).
        proj_drop_rate / attn_drop_rate / drop_path_rate: in-block dropouts and stochastic depth (linear rule).
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            embed_dims: Sequence[int] = (64, 128, 256, 512),
            ca_num_heads: Sequence[int] = (4, 4, 4, -1),
            sa_num_heads: Sequence[int] = (-1, -1, 8, 16),
            mlp_ratios: Sequence[float] = (4, 4, 4, 2),
            qkv_bias: bool = True,
            use_layerscale: bool = False,
            layerscale_value: float = 1e-4,
            depths: Sequence[int] = (2, 2, 8, 1),
            ca_attentions: Sequence[int] = (1, 1, 1, 0),
            head_conv: int = 3,
            expand_ratio: int = 2,
            drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
    ):
        super().__init__()
        check_model_args('SMT', in_chans=in_chans, num_classes=num_classes, embed_dims=embed_dims, depths=depths,
                         mlp_ratios=mlp_ratios, drop_rate=drop_rate, proj_drop_rate=proj_drop_rate,
                         attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate)
        num_stages = 4
        for name, value in (('embed_dims', embed_dims), ('ca_num_heads', ca_num_heads),
                            ('sa_num_heads', sa_num_heads), ('mlp_ratios', mlp_ratios), ('depths', depths),
                            ('ca_attentions', ca_attentions)):
            if len(value) != num_stages:
                raise ValueError(f'SMT has {num_stages} stages: {name} needs {num_stages} entries, got {list(value)}')
        _check_pool(global_pool)
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.embed_dims = list(embed_dims)
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.num_stages = num_stages
        self.grad_checkpointing = False
        block_norm = partial(nn.LayerNorm, eps=1e-6)
        embed_norm = partial(nn.LayerNorm, eps=1e-5)

        dpr = drop_path_rates(drop_path_rate, depths)
        self.feature_info = []
        for i in range(num_stages):
            if i == 0:
                patch_embed = ConvStem(in_chans, embed_dims[0], head_conv, embed_norm)
            else:
                # timm's PVT v2 downsample is SMT's: 3x3/2 conv (padding 1), LayerNorm (eps 1e-5); NCHW in (the
                # SFM add-on resamples its input), channels-last (B, ceil(H/2), ceil(W/2), C) out
                patch_embed = OverlapPatchEmbed(3, 2, embed_dims[i - 1], embed_dims[i])
            blocks = nn.ModuleList([
                SMTBlock(
                    embed_dims[i],
                    ca_attention=_is_sam(i, j, ca_attentions),
                    ca_num_heads=ca_num_heads[i],
                    sa_num_heads=sa_num_heads[i],
                    mlp_ratio=mlp_ratios[i],
                    expand_ratio=expand_ratio,
                    qkv_bias=qkv_bias,
                    layerscale_value=layerscale_value if use_layerscale else None,
                    proj_drop=proj_drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=dpr[i][j],
                    norm_layer=block_norm,
                )
                for j in range(depths[i])
            ])
            setattr(self, f'patch_embed{i + 1}', patch_embed)
            setattr(self, f'block{i + 1}', blocks)
            setattr(self, f'norm{i + 1}', block_norm(embed_dims[i]))
            setattr(self, f'to_nchw{i + 1}', ChannelsLastToNCHW())
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=4 * 2 ** i, module=f'to_nchw{i + 1}'))

        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

        self.apply(_init_weights)

    def __prepare_scriptable__(self):
        raise RuntimeError(
            'SMT does not support torch.jit.script (its stages and mixed-conv heads are looked up by their official '
            'attribute names). Use torch.jit.trace, torch.compile, torch.export or ONNX export instead.')

    @torch.jit.ignore
    def no_weight_decay(self):
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict:
        return dict(
            stem=r'^patch_embed1\.',
            blocks=[
                (r'^(?:patch_embed|block|norm)(\d+)\.', None),
            ] if coarse else [
                (r'^patch_embed(\d+)\.', (-1,)),
                (r'^block(\d+)\.(\d+)\.', None),
                (r'^norm(\d+)\.', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        if global_pool is not None:
            _check_pool(global_pool)
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def stage_transitions(self) -> List[str]:
        """The stride-2 downsamples between stages (they take NCHW input); used by the SFM add-on."""
        return [f'patch_embed{i + 1}' for i in range(1, self.num_stages)]

    def block_types(self) -> List[List[str]]:
        """'SAM' or 'MSA' for every block, per stage."""
        return [[b.block_type for b in getattr(self, f'block{i + 1}')] for i in range(self.num_stages)]

    def fuse_bn(self) -> 'SMT':
        """Fold the stem and SAA BatchNorms into the preceding convs (inference; see :func:`fuse_bn`)."""
        return fuse_bn(self)

    def _forward_stage(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """NCHW in, NCHW out: downsample (or stem), blocks on channels-last maps, stage norm."""
        x = getattr(self, f'patch_embed{index + 1}')(x)
        for block in getattr(self, f'block{index + 1}'):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(block, x)
            else:
                x = block(x)
        x = getattr(self, f'norm{index + 1}')(x)
        return getattr(self, f'to_nchw{index + 1}')(x)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward through the network, returning the outputs of the stage norms (NCHW, strides 4/8/16/32).

        Args:
            indices: taps to return (None: all, int n: the last n, sequence: those indices).
            norm: unused: every tap is already the output of its pretrained stage norm (as in the official dense
                backbones), and the last one is ``forward_features``.
            stop_early: stop after the deepest requested tap.
            output_fmt: only 'NCHW'.
            intermediates_only: return only the list of taps.
        """
        if output_fmt != 'NCHW':
            raise ValueError('SMT intermediates are NCHW only')
        check_image_input(x, self.in_chans, type(self).__name__)
        take_indices, max_index = feature_take_indices(self.num_stages, indices)
        last = max_index + 1 if stop_early else self.num_stages
        intermediates = []
        for i in range(last):
            x = self._forward_stage(i, x)
            if i in take_indices:
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
        """Drop the stages after the deepest requested tap (the stage norms stay: the taps are their outputs)."""
        take_indices, max_index = feature_take_indices(self.num_stages, indices)
        for i in range(max_index + 1, self.num_stages):
            delattr(self, f'patch_embed{i + 1}')
            delattr(self, f'block{i + 1}')
            delattr(self, f'norm{i + 1}')
            delattr(self, f'to_nchw{i + 1}')
        self.num_stages = max_index + 1
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_chans, type(self).__name__)
        for i in range(self.num_stages):
            x = self._forward_stage(i, x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean((2, 3), keepdim=True).flatten(1)  # keepdim: XNNPACK's global average pool takes this form
        elif self.global_pool == 'max':
            x = x.amax((2, 3))
        elif self.global_pool == 'avgmax':
            x = 0.5 * (x.mean((2, 3)) + x.amax((2, 3)))
        x = self.head_drop(x)
        if pre_logits:
            return x
        if not self.global_pool:
            # unpooled: per-location logits, NCHW
            return self.head(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_POOL_TYPES = ('avg', 'max', 'avgmax', '')


def _check_pool(global_pool: str) -> None:
    if global_pool not in _POOL_TYPES:
        raise ValueError(f'global_pool must be one of {_POOL_TYPES}, got {global_pool!r}')


def _is_sam(stage: int, index: int, ca_attentions: Sequence[int]) -> bool:
    """The official placement: stage 3 (index 2) puts MSA at every odd block, else the stage's ``ca_attentions``."""
    if stage == 2 and index % 2 == 1:
        return False
    return bool(ca_attentions[stage])


def _init_weights(module: nn.Module) -> None:
    # the official init: trunc-normal Linear, unit LayerNorm, He-style normal(0, sqrt(2 / fan_out)) convs
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0., (2. / fan_out) ** 0.5)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


@torch.no_grad()
def fuse_bn(model: nn.Module) -> nn.Module:
    """Fold every SMT BatchNorm into the conv before it, in place, and return ``model``.

    The stem BN goes into ``patch_embed1.conv.0`` (which gains a bias), each SAA BN into its grouped 1x1 ``proj0``;
    the BNs become ``nn.Identity``. Uses the running statistics, i.e. the eval-mode function: call it on a trained
    model for inference/export. Works on an :class:`SMT` and on anything containing one (a timm ``features_only``
    wrapper, a detector). A no-op on an already fused model.
    """
    for module in model.modules():
        if isinstance(module, (ConvStem, ScaleAwareModulation)):
            module.fuse_bn()
    return model


def checkpoint_filter_fn(state_dict, model: SMT) -> Dict[str, torch.Tensor]:
    """Convert an SMT state dict to this model's layout (which is the official one).

    The official det/seg backbones name the MSA local conv ``attn.dw_conv`` instead of the classification
    ``attn.local_conv``: renamed here, so nothing is left at random init.
    """
    return {re.sub(r'\.attn\.dw_conv\.', '.attn.local_conv.', k): v for k, v in state_dict.items()}


register_checkpoint_family(SMT, checkpoint_filter_fn)


def _create_smt(variant: str, pretrained: bool = False, **kwargs) -> SMT:
    return build_zoo_model(SMT, variant, pretrained, checkpoint_filter_fn, **kwargs)


_OFFICIAL_RELEASE = 'https://github.com/AFeng-x/SMT/releases/download/v1.0.0/'


def _cfg(url: str = '', **kwargs) -> Dict:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': .875, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed1.conv.0', 'classifier': 'head',
        # the official repository has no LICENSE file and its README names none: no license is granted
        'license': 'unknown',
        'paper_ids': 'arXiv:2307.08579', 'paper_name': 'Scale-Aware Modulation Meet Transformer',
        'origin_url': 'https://github.com/AFeng-x/SMT',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'zoo_smt_tiny.in1k': _cfg(_OFFICIAL_RELEASE + 'smt_tiny.pth'),
    'zoo_smt_small.in1k': _cfg(_OFFICIAL_RELEASE + 'smt_small.pth'),
    'zoo_smt_base.in1k': _cfg(_OFFICIAL_RELEASE + 'smt_base.pth'),
    'zoo_smt_large.in22k_ft_in1k': _cfg(_OFFICIAL_RELEASE + 'smt_large_22k_224_ft.pth'),
    # official 384 fine-tune evaluation: plain resize to 384 without a centre crop (TEST.CROP False)
    'zoo_smt_large.in22k_ft_in1k_384': _cfg(
        _OFFICIAL_RELEASE + 'smt_large_22k_384_ft.pth',
        input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0, crop_mode='squash'),
    # the ImageNet-22k pre-training checkpoint; 21841 classes in the Swin trainer's order (the official
    # utils.load_pretrained maps a 21841-class head to ImageNet-1k)
    'zoo_smt_large.in22k': _cfg(
        _OFFICIAL_RELEASE + 'smt_large_22k.pth', num_classes=21841,
        notes=('ImageNet-22k pre-training (21841 classes, Swin order); head size inferred from the official loader',)),
})


@register_model
def zoo_smt_tiny(pretrained: bool = False, **kwargs) -> SMT:
    """SMT-T: 64-512 channels, depths 2/2/8/1, 3x3 stem (official yaml trains with drop_path_rate 0.1)."""
    model_args = dict(depths=(2, 2, 8, 1), mlp_ratios=(4, 4, 4, 2), head_conv=3)
    return _create_smt('zoo_smt_tiny', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_smt_small(pretrained: bool = False, **kwargs) -> SMT:
    """SMT-S: depths 3/4/18/2 (official yaml drop_path_rate 0.2)."""
    model_args = dict(depths=(3, 4, 18, 2), mlp_ratios=(4, 4, 4, 2), head_conv=3)
    return _create_smt('zoo_smt_small', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_smt_base(pretrained: bool = False, **kwargs) -> SMT:
    """SMT-B: depths 4/6/28/2, MLP ratios 8/6/4/2, 7x7 stem (official yaml drop_path_rate 0.3)."""
    model_args = dict(depths=(4, 6, 28, 2), mlp_ratios=(8, 6, 4, 2), head_conv=7)
    return _create_smt('zoo_smt_base', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def zoo_smt_large(pretrained: bool = False, **kwargs) -> SMT:
    """SMT-L: 96-768 channels, depths 4/6/28/4, LayerScale (official yamls: drop_path_rate 0.1 for 22k
    pre-training and fine-tuning, 0.4 for 1k-only training)."""
    model_args = dict(
        embed_dims=(96, 192, 384, 768), depths=(4, 6, 28, 4), mlp_ratios=(8, 6, 4, 2), head_conv=7,
        use_layerscale=True)
    return _create_smt('zoo_smt_large', pretrained=pretrained, **dict(model_args, **kwargs))
