"""MMSegmentation decode heads: UperNet for SFM backbones (MSAU demodulation) and the MACMD decoder.

SFM in MMSegmentation (the design)
----------------------------------
``ModzooBackbone(..., sfm=dict())`` puts an ARS in front of each stride-2 stage transition, so backbone level ``k``
is computed on a grid warped by the first ``k`` warps. Two ways to decode it:

* **any mmseg head** (FCN, UperNet, Semantic FPN, ...; also mmdet necks): the backbone returns every level already
  demodulated onto the uniform grid at its own size (exact inverse of the recorded warps, no parameters), so the
  maps are aligned as a head expects. This is how the auxiliary FCN head of the SFM configs is fed.
* **SFM-aware** (:class:`SFMUPerHead`, the SFM configs' decode head): the head reads the *modulated* levels and the
  warps (:class:`~modzoo.mm.backbone.SFMFeatures`) and demodulates while up-sampling, where the densely sampled
  regions keep their extra samples: every top-down step of the FPN is an MSAU step (exact inverse of that
  transition's warp onto the finer level's grid, then a content-aware reassembly guided by the finer lateral), and
  the fusion brings every FPN level to stride 4 through the exact inverse of all its warps. Demodulating at the
  coarse level's own size (the generic path) would throw the densely sampled detail away before the head sees it.

At initialisation the warps are the identity and MSAU's reassembly is gated off, so an SFM segmentor computes what
the plain one does (bilinear up-sampling with ``align_corners=False`` is what the identity warp's inverse is).
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
from mmseg.models.decode_heads import UPerHead
from mmseg.models.decode_heads.decode_head import BaseDecodeHead

from modzoo.decoders.macmd import MACMD
from modzoo.layers.sfm import AdaptiveUpsampler, demodulate
from ..registry import register_module

__all__ = ['SFMUPerHead', 'MACMDHead']


@register_module(scopes=('mmseg',))
class SFMUPerHead(UPerHead):
    """UperNet whose top-down path and fusion demodulate an SFM backbone's levels with MSAU.

    Needs the output of ``ModzooBackbone(..., sfm=dict(...))`` directly (no neck in between) with the levels
    0, 1, 2, ... in ``in_index`` order (UperNet's four). Everything else is UperNet's (mmseg ``UPerHead`` arguments).

    Args:
        msau_kernel_size: MSAU reassembly kernel (3 or 5).
        msau_hidden_channels: hidden channels of MSAU's kernel predictor.
    """

    def __init__(self, msau_kernel_size: int = 3, msau_hidden_channels: int = 32, **kwargs):
        super().__init__(**kwargs)
        if self.align_corners:
            raise ValueError('SFMUPerHead demodulates with align_corners=False sampling (pixel centres); set '
                             'align_corners=False')
        steps = len(self.in_channels) - 1
        # step k takes the FPN from level k + 1 to level k; the finer lateral guides its reassembly
        self.msau = AdaptiveUpsampler(
            self.channels, num_scales=steps, kernel_size=msau_kernel_size, guide_chs=[self.channels] * steps,
            hidden_chs=msau_hidden_channels)

    def _sfm_inputs(self, inputs) -> Tuple[List[torch.Tensor], list]:
        warps = getattr(inputs, 'warps', None)
        if warps is None:
            raise TypeError(
                f'SFMUPerHead needs the SFMFeatures of a ModzooBackbone built with sfm=dict(...), passed to the head '
                f'directly (no neck); got {type(inputs).__name__}. Use UPerHead for a backbone without SFM.')
        levels = [inputs.levels[i] for i in self.in_index]
        if levels != list(range(len(levels))):
            raise ValueError(f'SFMUPerHead needs the backbone levels 0..{len(levels) - 1} in order (in_index), '
                             f'got levels {levels}')
        if len(warps) < len(levels) - 1:
            raise ValueError(f'SFMUPerHead got {len(warps)} warps for {len(levels)} levels')
        return [inputs.modulated[i] for i in self.in_index], warps

    def _forward_feature(self, inputs):
        feats, warps = self._sfm_inputs(inputs)
        laterals = [conv(feats[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(feats))  # pooling on the modulated top level: its output lives there too

        # top-down: MSAU step k demodulates level k + 1 through warp k onto level k's grid (still in the domain of
        # warps[:k], where level k lives) and reassembles it with level k's lateral as the guide
        for k in range(len(laterals) - 2, -1, -1):
            if tuple(warps[k].size) != tuple(laterals[k].shape[2:]):
                raise ValueError(f'warp {k} was made at {warps[k].size}, level {k} is {tuple(laterals[k].shape[2:])}')
            laterals[k] = laterals[k] + self.msau.step(laterals[k + 1], warps, k, guide=laterals[k])

        fpn_outs = [self.fpn_convs[i](laterals[i]) for i in range(len(laterals) - 1)]
        fpn_outs.append(laterals[-1])
        # fusion at stride 4: every level onto the uniform grid of level 0 through the exact inverse of its warps
        size = tuple(fpn_outs[0].shape[2:])
        for k in range(1, len(fpn_outs)):
            fpn_outs[k] = demodulate(fpn_outs[k], warps[:k], size)
        return self.fpn_bottleneck(torch.cat(fpn_outs, dim=1))


@register_module(scopes=('mmseg',))
class MACMDHead(BaseDecodeHead):
    """The MACMD decoder (:class:`modzoo.decoders.MACMD`) as a decode head with deep supervision.

    The decoder gives three outputs: ``main`` (stride 2 for a stride-4 first level, classified by this head's
    ``conv_seg``) and two auxiliary ones at the first and second level's resolution. Training applies every
    ``loss_decode`` term (e.g. cross-entropy + :class:`~modzoo.mm.seg.losses.ClasswiseDiceLoss`) to each output
    (resized to the labels) and sums them with ``aux_loss_weights`` on the auxiliaries (1, 1: the released recipe's
    equal-weight deep supervision); the loss keys are ``loss_*`` (main), ``aux1.loss_*`` and ``aux2.loss_*``.
    Prediction (``forward``, ``predict``) uses ``main`` only.

    Args:
        in_channels: channels of the four encoder levels (PVT v2 b2: 64, 128, 320, 512).
        in_index: which backbone outputs they are.
        drop_path_rate: stochastic depth of the decoder's channel-mix branch (0.05 in the released code).
        aux_loss_weights: loss weights of the two auxiliary outputs, relative to ``main``.
        norm_cfg: None or ``dict(type='BN')``: the decoder's BatchNorms as released; ``dict(type='SyncBN')``
            converts them to SyncBatchNorm for multi-GPU training.
        channels: fixed by the decoder (half the first level's channels); may be omitted.
        **kwargs: the other ``BaseDecodeHead`` arguments (``num_classes``, ``loss_decode``, ``dropout_ratio`` before
            ``conv_seg``, default 0 as the released head, ``ignore_index``, ``align_corners``, ``init_cfg``).
    """

    def __init__(
            self,
            in_channels: Sequence[int] = (64, 128, 320, 512),
            in_index: Sequence[int] = (0, 1, 2, 3),
            drop_path_rate: float = 0.05,
            aux_loss_weights: Sequence[float] = (1.0, 1.0),
            dropout_ratio: float = 0.0,
            norm_cfg=None,
            channels=None,
            **kwargs,
    ):
        in_channels = [int(c) for c in in_channels]
        if len(in_channels) != 4 or len(in_index) != 4:
            raise ValueError(f'MACMDHead decodes four levels; got in_channels={in_channels}, in_index={in_index}')
        main_channels = in_channels[0] // 2
        if channels is not None and channels != main_channels:
            raise ValueError(f'MACMDHead: channels is fixed by the decoder to in_channels[0] // 2 = {main_channels}, '
                             f'got {channels}')
        if kwargs.pop('input_transform', 'multiple_select') != 'multiple_select':
            raise ValueError("MACMDHead takes its four levels with input_transform='multiple_select'")
        norm_type = (norm_cfg or {}).get('type', 'BN')
        if norm_type not in ('BN', 'SyncBN'):
            raise ValueError(f'MACMDHead uses BatchNorm (BN or SyncBN), got norm_cfg={norm_cfg}')
        if len(aux_loss_weights) != 2:
            raise ValueError(f'aux_loss_weights needs two weights (aux1, aux2), got {aux_loss_weights}')
        super().__init__(
            in_channels, main_channels, in_index=list(in_index), input_transform='multiple_select',
            dropout_ratio=dropout_ratio, norm_cfg=norm_cfg, **kwargs)
        self.aux_loss_weights = tuple(float(w) for w in aux_loss_weights)
        decoder = MACMD(in_channels, self.out_channels, drop_path=drop_path_rate)
        # the main classifier is mmseg's conv_seg (after the head's dropout), so the decoder's own is not kept
        decoder.head = nn.Identity()
        if norm_type == 'SyncBN':
            decoder = nn.SyncBatchNorm.convert_sync_batchnorm(decoder)
        self.decoder = decoder

    def forward_all(self, inputs) -> List[torch.Tensor]:
        """``[main, aux1, aux2]`` logits at their native sizes."""
        main, aux1, aux2 = self.decoder(self._transform_inputs(inputs))
        return [self.cls_seg(main), aux1, aux2]

    def forward(self, inputs) -> torch.Tensor:
        return self.forward_all(inputs)[0]

    def loss(self, inputs, batch_data_samples, train_cfg) -> dict:
        return self.loss_by_feat(self.forward_all(inputs), batch_data_samples)

    def loss_by_feat(self, seg_logits, batch_data_samples) -> dict:
        """Every ``loss_decode`` term on each output; ``seg_logits`` is ``[main, aux1, aux2]`` (or ``main`` alone)."""
        if isinstance(seg_logits, torch.Tensor):
            return super().loss_by_feat(seg_logits, batch_data_samples)
        if len(seg_logits) != 3:
            raise ValueError(f'MACMDHead.loss_by_feat expects [main, aux1, aux2], got {len(seg_logits)} outputs')
        losses = super().loss_by_feat(seg_logits[0], batch_data_samples)
        for name, logits, weight in zip(('aux1', 'aux2'), seg_logits[1:], self.aux_loss_weights, strict=True):
            for key, value in super().loss_by_feat(logits, batch_data_samples).items():
                losses[f'{name}.{key}'] = value * weight if key.startswith('loss') else value
        return losses
