"""OpenMMLab (MMSegmentation 1.x / MMDetection 3.x) adapters for modzoo.

Never imported by ``import modzoo``. Configs enable it with::

    custom_imports = dict(imports=['modzoo.mm'], allow_failed_imports=False)

which registers :class:`ModzooBackbone` (type ``'ModzooBackbone'``) in ``mmseg.registry.MODELS`` and
``mmdet.registry.MODELS``, for every family registered with timm as ``zoo_<family>_<variant>``.

Layout, for modules added later:

* ``registry.py``: :func:`register_module` (register a class into the installed codebases' MODELS registries);
* ``backbone.py``: the generic backbone; ``pretrained.py``: checkpoint loading through each family's filter;
* ``runtime.py``: what the train/test tools need (their command lines, mmengine checkpoints under torch's
  weights_only default, the ``--tiny`` data overrides, ``--launcher pytorch`` without CUDA);
* ``smoke.py``: build a config's model on the CPU and run one training step (used by the tests);
  ``flops.py``: whole-config FLOP counting (``tools/analysis/get_flops.py``);
* task-specific modules go in subpackages, e.g. ``seg/heads.py`` (decode heads) and ``seg/segmentors.py``
  (segmentor wrappers), decorated with ``@register_module(scopes=('mmseg',))`` and imported below.
"""
from .registry import register_module, registered_scopes, unavailable_scopes
from .backbone import ModzooBackbone
from . import seg  # noqa: F401  (mmseg: SFMUPerHead, MACMDHead, ClasswiseDiceLoss)

__all__ = ['ModzooBackbone', 'register_module', 'registered_scopes', 'unavailable_scopes']
