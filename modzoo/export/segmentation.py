"""Segmentation models as one image -> logits graph for ONNX export.

Two sources:

* an MMSegmentation config (``EncoderDecoder`` with any head, e.g. UperNet + a modzoo backbone through
  ``modzoo.mm``): :func:`build_mmseg_for_export`;
* the plain-PyTorch MACMD segmenter (``modzoo.decoders.MACMDSegmenter``, e.g. on PVT v2 b2):
  :func:`build_macmd_for_export`.

Both are wrapped so the graph takes the normalised image batch ``(N, 3, H, W)`` and returns ``seg_logits``
``(N, classes, H, W)``: the decode head's logits resized to the input, as mmseg's ``predict`` does before its arg-max.
Training-only branches (mmseg's auxiliary head, MACMD's deep-supervision outputs) are not part of the graph.
SyncBN becomes BN, and ``AdaptiveAvgPool2d(k)`` (UperNet's pyramid pooling) becomes an exact matrix form that ONNX
can express for any input size.
"""
import os
from typing import Any, Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .deploy import replace_adaptive_avg_pools

__all__ = ['SegmentorLogits', 'MACMDLogits', 'build_mmseg_for_export', 'build_macmd_for_export']


def _input_cfg(mean: Sequence[float], std: Sequence[float], size: Sequence[int], in_chans: int = 3) -> Dict[str, Any]:
    return dict(mean=tuple(mean), std=tuple(std), input_size=(in_chans,) + tuple(size))


class SegmentorLogits(nn.Module):
    """An mmseg ``EncoderDecoder`` as ``image -> seg_logits`` at the image size."""

    def __init__(self, segmentor: nn.Module, pretrained_cfg: Dict[str, Any]):
        super().__init__()
        self.segmentor = segmentor
        self.align_corners = bool(getattr(segmentor.decode_head, 'align_corners', False))
        self.pretrained_cfg = pretrained_cfg
        self.in_chans = pretrained_cfg['input_size'][0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.segmentor(x, mode='tensor')  # backbone + neck + decode head, 1/4 of the input
        return F.interpolate(logits, size=x.shape[-2:], mode='bilinear', align_corners=self.align_corners)


class MACMDLogits(nn.Module):
    """``MACMDSegmenter`` without its deep-supervision outputs: ``image -> main logits`` at the image size."""

    def __init__(self, segmenter: nn.Module):
        super().__init__()
        self.segmenter = segmenter
        encoder_cfg = dict(getattr(segmenter.encoder, 'pretrained_cfg', None) or {})
        self.pretrained_cfg = _input_cfg(
            encoder_cfg.get('mean', (0.485, 0.456, 0.406)), encoder_cfg.get('std', (0.229, 0.224, 0.225)),
            encoder_cfg.get('input_size', (3, 224, 224))[1:])
        self.in_chans = getattr(segmenter.encoder, 'in_chans', None) or 3
        self.pretrained_cfg['input_size'] = (self.in_chans,) + self.pretrained_cfg['input_size'][1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmenter(x)[0]


def _load_strict(model: nn.Module, checkpoint: Union[str, os.PathLike], trusted: bool, name: str) -> None:
    """Load a full segmentor checkpoint (``state_dict``/``model`` container or flat): every key must fit."""
    from modzoo.models import load_checkpoint
    load_checkpoint(model, checkpoint, trusted=trusted, prefix='', model_name=name, non_finite_option=None)


def build_mmseg_for_export(
        config: Union[str, os.PathLike],
        checkpoint: Optional[Union[str, os.PathLike]] = None,
        trusted: bool = False,
        cfg_options: Optional[Dict[str, Any]] = None,
) -> SegmentorLogits:
    """Build the segmentor of an mmseg config (no pretrained download: the backbone's ``init_cfg`` is dropped, load a
    full ``checkpoint`` instead), in eval mode, ready for :func:`~modzoo.export.onnx.export_onnx`."""
    try:
        from mmengine import Config
        from mmengine.model import revert_sync_batchnorm
        from mmseg.apis import init_model
    except ImportError as e:
        raise ImportError('exporting an mmseg config needs the OpenMMLab extras: pip install -e .[mm]') from e
    cfg = Config.fromfile(os.fspath(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    backbone = cfg.model.get('backbone', {})
    if isinstance(backbone, dict) and 'init_cfg' in backbone:
        backbone['init_cfg'] = None
    cfg.model.pretrained = None
    segmentor = revert_sync_batchnorm(init_model(cfg, None, device='cpu'))
    if checkpoint is not None:
        _load_strict(segmentor, checkpoint, trusted, os.path.basename(os.fspath(config)))
    replace_adaptive_avg_pools(segmentor)
    preprocessor = cfg.model.get('data_preprocessor') or {}
    mean = [m / 255 for m in preprocessor.get('mean', (123.675, 116.28, 103.53))]
    std = [s / 255 for s in preprocessor.get('std', (58.395, 57.12, 57.375))]
    size = tuple(cfg.get('crop_size', (512, 512)))
    return SegmentorLogits(segmentor, _input_cfg(mean, std, size, len(mean))).eval()


def build_macmd_for_export(
        encoder: str,
        num_classes: int = 9,
        checkpoint: Optional[Union[str, os.PathLike]] = None,
        trusted: bool = False,
        encoder_kwargs: Optional[Dict[str, Any]] = None,
) -> MACMDLogits:
    """``MACMDSegmenter(encoder, num_classes)`` (built with timm's ``exportable=True``), optionally loaded strictly
    from a full segmenter ``checkpoint``, wrapped to return the main logits."""
    from modzoo.decoders import MACMDSegmenter
    kwargs = dict(exportable=True)
    kwargs.update(encoder_kwargs or {})
    segmenter = MACMDSegmenter(encoder, num_classes=num_classes, encoder_kwargs=kwargs)
    if checkpoint is not None:
        _load_strict(segmenter, checkpoint, trusted, f'MACMDSegmenter({encoder})')
    replace_adaptive_avg_pools(segmenter)
    return MACMDLogits(segmenter).eval()
