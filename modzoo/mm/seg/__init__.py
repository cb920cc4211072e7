"""MMSegmentation modules: SFM-aware UperNet head, MACMD decode head, class-wise Dice loss.

Registered into ``mmseg.registry.MODELS`` when MMSegmentation is installed (``custom_imports=['modzoo.mm']``):
``SFMUPerHead`` (UperNet demodulating an SFM backbone with MSAU), ``MACMDHead`` (MACMD decoder, main + two auxiliary
outputs) and ``ClasswiseDiceLoss``. The SFM resampling itself is a backbone option: ``ModzooBackbone(sfm=dict())``.
"""
try:
    import mmseg  # noqa: F401
except ImportError:  # an MMDetection-only install: nothing to register here
    __all__ = []
else:
    from .heads import MACMDHead, SFMUPerHead
    from .losses import ClasswiseDiceLoss

    __all__ = ['ClasswiseDiceLoss', 'MACMDHead', 'SFMUPerHead']
