"""Segmentation decoders in plain PyTorch (the OpenMMLab heads in ``modzoo.mm`` wrap these)."""
from .macmd import MACMD, MACMDSegmenter, remap_official_keys as remap_official_macmd_keys

__all__ = ['MACMD', 'MACMDSegmenter', 'remap_official_macmd_keys']
