"""MACMD: Multi-dilated Contextual Attention and Channel Mixer Decoding (Maurya et al., arXiv 2511.05803).

A segmentation decoder for any 4-level encoder (strides 4/8/16/32, e.g. ``timm.create_model('pvt_v2_b2',
features_only=True)``, the paper's encoder). The structure follows the released decoder (lalitmaurya47/MACMD @86df544):

* MCAG on every level: a self-gate ``r * sigmoid(BN(conv1x1(r)))`` with ``r = relu(BN(HDConv(x)))``, where HDConv is
  four grouped 3x3 convs with dilations 1/2/3/5 whose channel groups are mixed cyclically across the dilations;
* MEAB on the deepest level: two HDConv-BN-ReLU, then SE channel attention and CBAM-style spatial attention;
* APM: every gated level projected to ``C1`` channels and brought to the stride-4 size, softmax-pooled across levels,
  and each level modulated by the pooled map;
* MSCCM (``CrossChannelMix``): the raw encoder levels 1-3 projected, stacked and mixed by a Vision-RWKV channel mix;
* up-blocks (1x1 - depthwise 9x9 - 1x1, then x2) with skip concatenation, a fusion block, and three 1x1 heads
  for deep supervision.

Deviations from the released code, all on purpose (each fixes a bug of the released code):

* APM's up-sampling blocks are registered sub-modules (``apm.upsample``), so they are in the ``state_dict`` and are
  trained; the released code creates them inside ``forward`` with fresh random weights on every call.
* No hard-coded ``.cuda()``, and every size is taken from the inputs (any encoder, non-square inputs), not from a fixed
  ``img_size``; up-sampling goes to the size of the skip it is joined with, so odd feature sizes work too.
* The decoder returns **logits**; losses apply softmax/sigmoid (the released forward returns sigmoid outputs and then
  applies cross-entropy to them).
* The unused ``ln1`` LayerNorm of every released ``UpBlock`` is dropped (:func:`remap_official_keys` skips it).

Parameter names are ours; :func:`remap_official_keys` converts the released module-level names (it is what the golden
tests use). The decoder returns ``[main, aux_stride4, aux_stride8]`` logits: ``main`` at half the stride of the first
level (stride 2 for a stride-4 encoder), the auxiliaries at the first and second level's resolution; pass
``output_size`` to get all three at one size (the released code up-samples each to the image size).
"""
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath

__all__ = [
    'HDConv', 'MCAG', 'MEAB', 'AttentionPoolingModulation', 'CrossChannelMix', 'UpBlock', 'FeatureFusionBlock',
    'MACMD', 'MACMDSegmenter', 'remap_official_keys',
]


class ConvNormAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> optional activation, with the names ``conv``/``norm``/``act``."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            kernel_size: int = 1,
            groups: int = 1,
            act_layer: Optional[type] = nn.ReLU,
            bn_eps: float = 1e-5,
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, padding=kernel_size // 2, groups=groups, bias=False)
        self.norm = nn.BatchNorm2d(out_chs, eps=bn_eps)
        self.act = act_layer() if act_layer is not None else nn.Identity()


class HDConv(nn.Module):
    """Hierarchical dilated conv: four grouped (g=4) 3x3 convs with dilations 1/2/3/5, mixed cyclically.

    Branch ``b`` produces four channel groups ``f[b][0..3]`` (group ``j`` sees input group ``j`` only, groups=4).
    Output group ``j`` is ``sum_b f[b][(j + b) % 4]``, so every output group combines all four input groups, each
    seen through a different dilation. Resolution is preserved.
    """

    def __init__(self, in_chs: int, out_chs: int, dilations: Sequence[int] = (1, 2, 3, 5), bias: bool = True):
        super().__init__()
        if in_chs % 4 or out_chs % 4:
            raise ValueError(f'HDConv needs channel counts divisible by 4, got {in_chs} -> {out_chs}')
        if len(dilations) != 4:
            raise ValueError(f'HDConv mixes four channel groups, so it takes four dilations, got {dilations}')
        self.branches = nn.ModuleList([
            nn.Conv2d(in_chs, out_chs, 3, padding=d, dilation=d, groups=4, bias=bias) for d in dilations
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        group = self.branches[0].out_channels // 4
        out = self.branches[0](x)
        for b in range(1, 4):
            # rolling the channels by -b groups puts f[b][(j + b) % 4] at output group j
            out = out + torch.roll(self.branches[b](x), shifts=-b * group, dims=1)
        return out


class ChannelAttention(nn.Module):
    """SE-style: global average pool -> Linear(C, C/r) -> ReLU -> Linear -> sigmoid, scaling the channels."""

    def __init__(self, chs: int, reduction: int = 16):
        super().__init__()
        hidden = max(chs // reduction, 1)
        self.fc1 = nn.Linear(chs, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, chs, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * w[:, :, None, None]


class SpatialAttention(nn.Module):
    """CBAM-style: [channel mean, channel max] -> 7x7 conv -> sigmoid, scaling every position."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class MCAG(nn.Module):
    """Multi-dilated contextual attention gate: ``r * sigmoid(BN(conv1x1(r)))`` with ``r = relu(BN(HDConv(x)))``.

    A self-gate, as in the released code (no gating signal from the decoder, no residual). The released forward
    applies an in-place ReLU to ``g`` before the gate, so the map it multiplies is ``relu(g)``; we keep that function
    (the golden outputs confirm it) but write it out-of-place.
    """

    def __init__(self, chs: int):
        super().__init__()
        self.conv = HDConv(chs, chs)
        self.norm = nn.BatchNorm2d(chs)
        self.gate_conv = nn.Conv2d(chs, 1, 1)
        self.gate_norm = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = F.relu(self.norm(self.conv(x)))
        return r * torch.sigmoid(self.gate_norm(self.gate_conv(r)))


class MEAB(nn.Module):
    """Two HDConv-BN-ReLU layers followed by channel attention and spatial attention (the deepest level)."""

    def __init__(self, in_chs: int, out_chs: Optional[int] = None, reduction: int = 16):
        super().__init__()
        out_chs = out_chs or in_chs
        self.conv1 = HDConv(in_chs, out_chs)
        self.norm1 = nn.BatchNorm2d(out_chs)
        self.conv2 = HDConv(out_chs, out_chs)
        self.norm2 = nn.BatchNorm2d(out_chs)
        self.channel_attn = ChannelAttention(out_chs, reduction)
        self.spatial_attn = SpatialAttention(7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        x = F.relu(self.norm2(self.conv2(x)))
        return self.spatial_attn(self.channel_attn(x))


class UpsampleConv(nn.Module):
    """Nearest up-sampling to a given size -> depthwise 3x3 -> BN -> ReLU -> 1x1 (APM's level alignment)."""

    def __init__(self, chs: int):
        super().__init__()
        self.conv_dw = ConvNormAct(chs, chs, 3, groups=chs)
        self.conv_pw = nn.Conv2d(chs, chs, 1)

    def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        return self.conv_pw(self.conv_dw(F.interpolate(x, size=size, mode='nearest')))


class AttentionPoolingModulation(nn.Module):
    """APM: align all levels to the first level's size, softmax-pool them, and modulate each level by the pool.

    For each level ``F_i`` (projected to ``out_chs`` channels and up-sampled): the score ``s_i`` comes from a shared
    1x1-ReLU-1x1 projection, ``w = softmax_i(s_i)`` per pixel and ``P = sum_i w_i F_i``. Each level is modulated as
    ``M_i = sigmoid(BN(conv1x1((sigmoid(F_i) P) (sigmoid(P) F_i)))) F_i`` (shared conv/BN) and the output is the mean
    of the ``M_i``. The up-sampling blocks of levels 2..n are registered modules (``upsample``); a level that already
    has the first level's size skips its block, as the released code does.
    """

    def __init__(self, in_chs: Sequence[int], out_chs: int):
        super().__init__()
        self.in_chs = tuple(in_chs)
        hidden = max(out_chs // 8, 1)
        self.proj = nn.ModuleList([ConvNormAct(c, out_chs, 1) for c in in_chs])
        self.upsample = nn.ModuleList([UpsampleConv(out_chs) for _ in in_chs[1:]])
        self.score_fc1 = nn.Conv2d(out_chs, hidden, 1)
        self.score_fc2 = nn.Conv2d(hidden, 1, 1)
        self.modulation = ConvNormAct(out_chs, out_chs, 1, act_layer=None)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.proj):
            raise ValueError(f'APM was built for {len(self.proj)} levels, got {len(features)}')
        size = features[0].shape[-2:]
        levels = []
        for i, (x, proj) in enumerate(zip(features, self.proj)):  # noqa: B905  TorchScript has no zip(strict=)
            x = proj(x)
            if i > 0 and x.shape[-2:] != size:
                x = self.upsample[i - 1](x, size)
            levels.append(x)
        scores = torch.stack([self.score_fc2(F.relu(self.score_fc1(x))) for x in levels], dim=1)
        weights = scores.softmax(dim=1)  # (N, L, 1, H, W): per-pixel weights over the levels
        stacked = torch.stack(levels, dim=1)
        pooled = (weights * stacked).sum(1)
        pooled_gate = torch.sigmoid(pooled)
        out = 0
        for x in levels:
            interaction = (torch.sigmoid(x) * pooled) * (pooled_gate * x)
            out = out + torch.sigmoid(self.modulation(interaction)) * x
        return out / len(levels)


def quarter_shift(x: torch.Tensor, shift: int = 1) -> torch.Tensor:
    """Vision-RWKV ``q_shift`` on NCHW: channel quarters shifted right/left/down/up by ``shift`` px, zero fill.

    Channels beyond ``4 * (C // 4)`` are zeroed, as in the original.
    """
    q = x.shape[1] // 4
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    out[:, 0 * q:1 * q, :, shift:] = x[:, 0 * q:1 * q, :, :w - shift]
    out[:, 1 * q:2 * q, :, :w - shift] = x[:, 1 * q:2 * q, :, shift:]
    out[:, 2 * q:3 * q, shift:, :] = x[:, 2 * q:3 * q, :h - shift, :]
    out[:, 3 * q:4 * q, :h - shift, :] = x[:, 3 * q:4 * q, shift:, :]
    return out


class ChannelMix(nn.Module):
    """Vision-RWKV channel mix on NCHW input, returning channels-last ``(N, H, W, C)``.

    ``x_k = mu_k x + (1 - mu_k) shift(x)``, same for ``x_r``; ``k = LN(relu(W_k x_k)^2)`` (hidden ``hidden_rate * C``);
    output ``sigmoid(W_r x_r) * W_v k``. All linears without bias; ``mu`` per channel, initialised to 0.5.
    """

    def __init__(self, chs: int, hidden_rate: int = 2):
        super().__init__()
        hidden = hidden_rate * chs
        self.mix_k = nn.Parameter(torch.full((chs,), 0.5))
        self.mix_r = nn.Parameter(torch.full((chs,), 0.5))
        self.key = nn.Linear(chs, hidden, bias=False)
        self.key_norm = nn.LayerNorm(hidden)
        self.receptance = nn.Linear(chs, chs, bias=False)
        self.value = nn.Linear(hidden, chs, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = quarter_shift(x).permute(0, 2, 3, 1)
        x = x.permute(0, 2, 3, 1)
        xk = torch.lerp(shifted, x, self.mix_k)  # = mu_k x + (1 - mu_k) shifted
        xr = torch.lerp(shifted, x, self.mix_r)
        k = self.key_norm(torch.square(F.relu(self.key(xk))))
        return torch.sigmoid(self.receptance(xr)) * self.value(k)


class CrossChannelMix(nn.Module):
    """MSCCM: project levels to ``chs`` channels at the largest level's size, mix channels jointly, project back.

    ``in_chs`` lists the levels deepest first, as the released ``CCMix([320, 128, 64], 64)``. The stacked map
    ``t`` (``len(in_chs) * chs`` channels) becomes ``t + DropPath(LN(ChannelMix(t)))`` (post-norm on the branch),
    is split per level, projected back to each level's channels and resized to that level's input size.

    1x1 convs and bilinear resizing (align_corners=False, whose weights sum to one) commute, so each level is
    projected at its own, smaller size before resizing; the released code resizes first (same result, more work).
    """

    def __init__(self, in_chs: Sequence[int], chs: int, drop_path: float = 0.05):
        super().__init__()
        self.in_chs = tuple(in_chs)
        mixed = chs * len(in_chs)
        self.in_proj = nn.ModuleList([nn.Conv2d(c, chs, 1) for c in in_chs])
        self.channel_mix = ChannelMix(mixed)
        self.norm = nn.LayerNorm(mixed)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.out_proj = nn.ModuleList([nn.Conv2d(chs, c, 1) for c in in_chs])

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        if len(features) != len(self.in_proj):
            raise ValueError(f'CrossChannelMix was built for {len(self.in_proj)} levels, got {len(features)}')
        size = max((f.shape[-2:] for f in features), key=lambda s: s[0] * s[1])
        t = torch.cat([_resize(proj(f), size) for f, proj in zip(features, self.in_proj)], dim=1)  # noqa: B905  TorchScript has no zip(strict=)
        mixed = self.drop_path(self.norm(self.channel_mix(t))).permute(0, 3, 1, 2)
        t = t + mixed
        chunks = t.chunk(len(features), dim=1)
        return [proj(_resize(c, f.shape[-2:])) for c, f, proj in zip(chunks, features, self.out_proj)]  # noqa: B905  TorchScript has no zip(strict=)


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=False)


class UpBlock(nn.Module):
    """1x1 ConvBN-ReLU -> depthwise ``dw_kernel`` ConvBN-SiLU -> 1x1 ConvBN-ReLU, then bilinear x2 (or to ``size``).

    The released ``UpBlock(dim_in, dim_out, exp_ratio=1, dw_ks=9, has_skip=False, se_ratio=0)`` with BN eps 1e-6.
    """

    def __init__(self, in_chs: int, out_chs: int, exp_ratio: float = 1.0, dw_kernel: int = 9, bn_eps: float = 1e-6):
        super().__init__()
        mid = int(in_chs * exp_ratio)
        self.conv_in = ConvNormAct(in_chs, mid, 1, bn_eps=bn_eps)
        self.conv_dw = ConvNormAct(mid, mid, dw_kernel, groups=mid, act_layer=nn.SiLU, bn_eps=bn_eps)
        self.conv_out = ConvNormAct(mid, out_chs, 1, bn_eps=bn_eps)

    def forward(self, x: torch.Tensor, size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        x = self.conv_out(self.conv_dw(self.conv_in(x)))
        if size is None:
            return F.interpolate(x, scale_factor=2., mode='bilinear', align_corners=False)
        return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=False)


class FeatureFusionBlock(nn.Module):
    """FFB: concat three ``chs`` maps -> 1x1 (no bias) to ``2 chs`` -> BN -> channel + spatial attention -> 1x1."""

    def __init__(self, chs: int, reduction: int = 16):
        super().__init__()
        out_chs = 2 * chs
        self.fuse = nn.Conv2d(3 * chs, out_chs, 1, bias=False)
        self.norm = nn.BatchNorm2d(out_chs)
        self.channel_attn = ChannelAttention(out_chs, reduction)
        self.spatial_attn = SpatialAttention(7)
        self.out = nn.Conv2d(out_chs, out_chs, 1, bias=False)

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.fuse(torch.cat([a, b, c], dim=1)))
        return self.out(self.spatial_attn(self.channel_attn(x)))


class MACMD(nn.Module):
    """The MACMD decoder on four encoder levels (strides s, 2s, 4s, 8s; channels ``in_chs``).

    Args:
        in_chs: channels of the four levels, shallowest first (PVT v2 b2: 64, 128, 320, 512).
        num_classes: output channels of the three heads.
        drop_path: stochastic depth on the channel-mix branch (0.05 in the released code).

    ``forward(features, output_size=None)`` returns ``[main, aux1, aux2]`` logits. Without ``output_size`` they are at
    their native sizes: ``main`` at twice the first level's resolution, ``aux1`` (from the stride-s decoder map) and
    ``aux2`` (stride 2s). With ``output_size`` all three are bilinearly resized to it (the released code's x2/x4/x8).
    """

    def __init__(self, in_chs: Sequence[int] = (64, 128, 320, 512), num_classes: int = 9, drop_path: float = 0.05):
        super().__init__()
        in_chs = tuple(int(c) for c in in_chs)
        if len(in_chs) != 4:
            raise ValueError(f'MACMD decodes exactly four encoder levels, got channels {in_chs}')
        if any(c % 4 for c in in_chs) or in_chs[0] % 8:
            raise ValueError(
                f'MACMD needs level channels divisible by 4 (HDConv groups) and the first divisible by 8, got {in_chs}')
        c1, c2, c3, c4 = in_chs
        self.in_chs = in_chs
        self.num_classes = num_classes
        self.gates = nn.ModuleList([MCAG(c) for c in in_chs])
        self.deep_block = MEAB(c4)
        self.apm = AttentionPoolingModulation(in_chs, c1)
        self.ccm = CrossChannelMix((c3, c2, c1), c1, drop_path=drop_path)
        self.up4 = UpBlock(c4, c3)
        self.up3 = UpBlock(2 * c3, c2)
        self.up2 = UpBlock(2 * c2, c1)
        self.fusion = FeatureFusionBlock(c1)
        self.up1 = UpBlock(2 * c1, c1 // 2)
        self.head = nn.Conv2d(c1 // 2, num_classes, 1)
        self.aux_head1 = nn.Conv2d(c1, num_classes, 1)
        self.aux_head2 = nn.Conv2d(c2, num_classes, 1)

    def forward(
            self,
            features: Sequence[torch.Tensor],
            output_size: Optional[Tuple[int, int]] = None,
    ) -> List[torch.Tensor]:
        if len(features) != 4:
            raise ValueError(f'MACMD expects a list of 4 feature maps (strides 4/8/16/32), got {len(features)}')
        chs = tuple(f.shape[1] for f in features)
        if chs != self.in_chs:
            raise ValueError(f'MACMD was built for level channels {self.in_chs}, got features with {chs}')
        x1, x2, x3, x4 = features
        g1, g2, g3, g4 = [gate(f) for gate, f in zip(self.gates, features)]  # noqa: B905  TorchScript has no zip(strict=)
        g4 = self.deep_block(g4)
        pooled = self.apm([g1, g2, g3, g4])
        e3, e2, e1 = self.ccm([x3, x2, x1])  # the channel mixer sees the raw encoder levels, as released

        d3 = self.up4(g4, size=x3.shape[-2:])
        d2 = self.up3(torch.cat([d3, e3], dim=1), size=x2.shape[-2:])
        d1 = self.up2(torch.cat([d2, e2], dim=1), size=x1.shape[-2:])
        d0 = self.up1(self.fusion(d1, e1, pooled))
        outs = [self.head(d0), self.aux_head1(d1), self.aux_head2(d2)]
        if output_size is not None:
            outs = [_resize(o, output_size) for o in outs]
        return outs


class MACMDSegmenter(nn.Module):
    """A timm ``features_only`` encoder (default ``pvt_v2_b2``, the paper's) followed by the MACMD decoder.

    ``forward(x)`` returns ``[main, aux1, aux2]`` logits, all at the input's size (deep supervision: the released
    recipe sums one loss per output with equal weights; at test time use ``main``).

    Args:
        encoder: a timm or modzoo model name (``zoo_*`` needs ``import modzoo``); it must give 4 levels.
        num_classes: segmentation classes (9 for Synapse: background + 8 organs).
        in_chans: input channels, passed to timm (which adapts a pretrained stem, e.g. for grayscale CT slices; the
            released code instead puts a 1x1 conv-BN-ReLU 1->3 in front of the encoder).
        pretrained: load the encoder's pretrained weights through timm.
        encoder_kwargs: extra ``timm.create_model`` arguments (``feature_cls``, ``pretrained_cfg_overlay``, ...).
        decoder_kwargs: extra :class:`MACMD` arguments.
    """

    def __init__(
            self,
            encoder: str = 'pvt_v2_b2',
            num_classes: int = 9,
            in_chans: int = 3,
            pretrained: bool = False,
            encoder_kwargs: Optional[Dict] = None,
            decoder_kwargs: Optional[Dict] = None,
    ):
        super().__init__()
        import timm
        kwargs = dict(out_indices=(0, 1, 2, 3))
        kwargs.update(encoder_kwargs or {})
        self.encoder = timm.create_model(
            encoder, pretrained=pretrained, features_only=True, in_chans=in_chans, **kwargs)
        info = self.encoder.feature_info
        reductions = info.reduction()
        if len(reductions) != 4 or any(b != 2 * a for a, b in zip(reductions, reductions[1:], strict=False)):
            raise ValueError(
                f'MACMD needs 4 encoder levels, each at twice the stride of the previous one; {encoder} gives '
                f'reductions {reductions}')
        self.decoder = MACMD(info.channels(), num_classes, **(decoder_kwargs or {}))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.decoder(self.encoder(x), output_size=x.shape[-2:])


# Released module-level names -> ours. Each rule is (regex on the official key, replacement); keys matching a
# pattern in _OFFICIAL_DROPPED are unused in the released code and are skipped.
_HDCONV_RULES = [(r'dilation_([1-4])\.', lambda m: f'branches.{int(m.group(1)) - 1}.')]
_CA_RULES = [(r'fc\.0\.', 'fc1.'), (r'fc\.2\.', 'fc2.')]
_OFFICIAL_RULES: Dict[str, List[Tuple[str, object]]] = {
    'hdconv': _HDCONV_RULES,
    'mcag': [(r'^W_g\.0\.', 'conv.'), (r'^W_g\.1\.', 'norm.'), (r'^psi\.0\.', 'gate_conv.'),
             (r'^psi\.1\.', 'gate_norm.')] + _HDCONV_RULES,
    'meab': [(r'^conv\.conv\.0\.', 'conv1.'), (r'^conv\.conv\.1\.', 'norm1.'), (r'^conv\.conv\.3\.', 'conv2.'),
             (r'^conv\.conv\.4\.', 'norm2.'), (r'^ca\.', 'channel_attn.'), (r'^sa\.', 'spatial_attn.')]
            + _HDCONV_RULES + _CA_RULES,
    'apm': [(r'^channel_proj\.(\d+)\.0\.', r'proj.\1.conv.'), (r'^channel_proj\.(\d+)\.1\.', r'proj.\1.norm.'),
            (r'^attention_proj\.0\.', 'score_fc1.'), (r'^attention_proj\.2\.', 'score_fc2.'),
            (r'^modulation_proj\.0\.', 'modulation.conv.'), (r'^modulation_proj\.1\.', 'modulation.norm.')],
    'ccmix': [(r'^projections\.', 'in_proj.'), (r'^final_projections\.', 'out_proj.'), (r'^ln1\.', 'norm.'),
              (r'^channel\.spatial_mix_k$', 'channel_mix.mix_k'), (r'^channel\.spatial_mix_r$', 'channel_mix.mix_r'),
              (r'^channel\.', 'channel_mix.')],
    'upblock': [(r'^conv\.', 'conv_in.'), (r'^conv_local\.', 'conv_dw.'), (r'^proj\.', 'conv_out.')],
    'ffb': [(r'^fusion_conv\.', 'fuse.'), (r'^bn\.', 'norm.'), (r'^channel_attention\.', 'channel_attn.'),
            (r'^spatial_attention\.', 'spatial_attn.'), (r'^output_conv\.', 'out.')] + _CA_RULES,
}
_OFFICIAL_DROPPED = {'upblock': [r'^ln1\.']}


def remap_official_keys(state_dict: Mapping[str, torch.Tensor], block: str) -> Dict[str, torch.Tensor]:
    """Convert a released MACMD module's ``state_dict`` to our names.

    ``block`` is one of ``hdconv``, ``mcag`` (``Attention_block``), ``meab`` (``AttentionConvBlock``), ``apm``
    (``AttentionPoolingModulation``), ``ccmix`` (``CCMix``), ``upblock`` (``UpBlock``) and ``ffb``
    (``FeatureFusionBlock``). The channel-mix ``spatial_mix_*`` tensors of shape ``(1, 1, C)`` become ``(C,)``.
    """
    if block not in _OFFICIAL_RULES:
        raise KeyError(f'Unknown MACMD block {block!r}; expected one of {sorted(_OFFICIAL_RULES)}')
    out = {}
    for key, value in state_dict.items():
        if any(re.search(p, key) for p in _OFFICIAL_DROPPED.get(block, [])):
            continue
        new_key = key
        for pattern, repl in _OFFICIAL_RULES[block]:
            new_key = re.sub(pattern, repl, new_key)
        if new_key.endswith(('mix_k', 'mix_r')):
            value = value.reshape(-1)
        out[new_key] = value
    return out
