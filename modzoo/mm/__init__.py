"""OpenMMLab (MMSegmentation 1.x / MMDetection 3.x) adapters for modzoo.

Never imported by ``import modzoo``. Configs enable it with::

    custom_imports = dict(imports=['modzoo.mm'], allow_failed_imports=False)

which registers :class:`ModzooBackbone` (type ``'ModzooBackbone'``) in ``mmseg.registry.MODELS`` and
``mmdet.registry.MODELS``, for every family registered with timm as ``zoo_<family>_<variant>``.

Layout, for modules added later:

* ``registry.py``: :func:`register_module` (register a class into the installed codebases' MODELS registries);
* ``backbone.py``: the generic backbone; ``pretrained.py``: checkpoint loading through each family's filter;
* ``checkpoint_compat.py``: applied on import, lets ``torch.load(weights_only=True)`` (hence the stock mmseg/mmdet
  tools, Runner resume, ``init_model(cfg, ckpt)``) read mmengine training checkpoints, allowing nothing broader;
* ``cli.py``: the train/test command lines (``modzoo-train-seg`` ... ``modzoo-test-det``, ``tools/{train,test}_
  {seg,det}.py``), with ``--launcher pytorch`` without CUDA;
* ``tiny.py``: the tiny synthetic datasets (``modzoo-make-tiny-datasets``) and the ``--tiny`` config rewrite;
* ``smoke.py``: build a config's model on the CPU and run one training step (used by the tests);
  ``flops.py``: whole-config FLOP counting (``tools/analysis/get_flops.py``);
* task-specific modules go in subpackages, e.g. ``seg/heads.py`` (decode heads) and ``seg/segmentors.py``
  (segmentor wrappers), decorated with ``@register_module(scopes=('mmseg',))`` and imported below.
"""
try:
    import mmcv  # noqa: F401
    import mmengine  # noqa: F401
except ImportError as _missing:
    raise ImportError(
        f'modzoo.mm needs OpenMMLab ({_missing.name} is not installed): run `tools/setup_env.sh --mm` in a modzoo '
        f'checkout, or install mmcv==2.1.0 (prebuilt wheel) and then `pip install "modzoo[mm]"`') from None

from .checkpoint_compat import allow_mmengine_checkpoints
from .registry import register_module, registered_scopes, unavailable_scopes
from .backbone import ModzooBackbone
from . import seg  # noqa: F401  (mmseg: SFMUPerHead, MACMDHead, ClasswiseDiceLoss)

allow_mmengine_checkpoints()

__all__ = ['ModzooBackbone', 'register_module', 'registered_scopes', 'unavailable_scopes']
