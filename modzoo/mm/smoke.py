"""Check that a config's model builds and trains, on the CPU, in seconds: no dataset, no Runner.

    from modzoo.mm.smoke import load_config, build_model, dummy_batch, train_step
    cfg = load_config('configs/focalnet/upernet_focalnet-t-srf_8xb2-160k_ade20k-512x512.py')
    model = build_model(cfg, input_size=(64, 64))
    losses = train_step(model, dummy_batch(cfg, size=(64, 64)))

``build_model`` builds the real model of the config, made cheap where it does not change the architecture: BN for
SyncBN, no pretrained download, at most a few dozen proposals/detections (see :func:`cheapen_model_cfg`).
"""
import contextlib
import copy
from typing import Any, Dict, Iterator, Optional, Tuple

import torch

from .tiny import fewer_boxes, use_batchnorm

__all__ = [
    'load_config', 'cached_package_config_index', 'scope_of', 'models_registry', 'cheapen_model_cfg', 'build_model',
    'dummy_batch', 'train_step',
]


def load_config(path: str):
    """``Config.fromfile`` (which also imports the config's ``custom_imports``, i.e. ``modzoo.mm``)."""
    from mmengine.config import Config
    return Config.fromfile(path)


@contextlib.contextmanager
def cached_package_config_index() -> Iterator[None]:
    """Parse ``mmseg::``/``mmdet::`` bases without re-parsing the packages' ~400 metafiles for every base.

    mmengine 0.10 resolves each ``pkg::path`` by first looking ``path`` up in the package's model index (it loads
    ``model-index.yml`` and every metafile it lists, ~0.5 s per lookup for mmdet) and, for ``_base_`` files that are
    in no index, falls back to the plain path. Inside this block mmengine's YAML handler (``mmengine.fileio``'s
    public handler registry) parses each distinct file text once, so the index costs little after its first read;
    the resolved configs are identical. On exit mmengine's own :class:`~mmengine.fileio.YamlHandler` is registered
    again. What ``mmengine.fileio.load`` returns for a YAML file inside the block is shared between calls: read it,
    do not modify it.
    """
    from mmengine.fileio import YamlHandler, register_handler

    parsed: Dict[str, Any] = {}

    class CachedYamlHandler(YamlHandler):
        def load_from_fileobj(self, file, **kwargs):
            if kwargs:  # a non-default loader: no caching
                return super().load_from_fileobj(file, **kwargs)
            text = file.read()
            if text not in parsed:
                parsed[text] = super().load_from_fileobj(text)
            return parsed[text]

    formats = ['yaml', 'yml']
    register_handler(formats)(CachedYamlHandler)
    try:
        yield
    finally:
        register_handler(formats)(YamlHandler)


def scope_of(cfg) -> str:
    scope = cfg.get('default_scope')
    if scope not in ('mmseg', 'mmdet'):
        raise ValueError(f'Expected an mmseg or mmdet config, got default_scope={scope!r}')
    return scope


def models_registry(scope: str):
    """The ``MODELS`` registry of ``scope`` (mmseg or mmdet), with all of that codebase's modules registered."""
    if scope == 'mmseg':
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    else:
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    return MODELS


def cheapen_model_cfg(model_cfg: Dict[str, Any], few_boxes: bool = True) -> Dict[str, Any]:
    """A copy of ``model_cfg`` for CPU runs: BN for SyncBN, no pretrained weights, and (``few_boxes``) few boxes.

    FLOP counting keeps the config's proposal counts (``few_boxes=False``): they are part of what it measures.
    """
    model_cfg = copy.deepcopy(model_cfg)
    use_batchnorm(model_cfg)
    if 'pretrained' in model_cfg:
        model_cfg['pretrained'] = None
    backbone = model_cfg.get('backbone') or {}
    backbone.pop('init_cfg', None)
    if few_boxes:
        for name in ('train_cfg', 'test_cfg'):
            fewer_boxes(model_cfg.get(name) or {})
    return model_cfg


def build_model(cfg, input_size: Optional[Tuple[int, int]] = None, **backbone_overrides) -> torch.nn.Module:
    """Build the config's model (cheapened, see :func:`cheapen_model_cfg`) under the config's default scope.

    ``input_size`` replaces a fixed padding size of the data preprocessor (segmentation configs pad every batch to
    the 512x512 crop), so that a small dummy batch stays small.
    """
    from mmengine.registry import DefaultScope
    scope = scope_of(cfg)
    models = models_registry(scope)
    model_cfg = cheapen_model_cfg(cfg.model)
    model_cfg['backbone'].update(backbone_overrides)
    preprocessor = model_cfg.get('data_preprocessor') or {}
    if input_size is not None and preprocessor.get('size') is not None:
        preprocessor['size'] = tuple(input_size)
    with DefaultScope.overwrite_default_scope(scope):
        model = models.build(model_cfg)
    _quiet_init_weights(model)
    return model


def _quiet_init_weights(model: torch.nn.Module) -> None:
    """``init_weights`` without mmengine's per-parameter INFO report (thousands of lines for a big backbone)."""
    import logging
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def dummy_batch(cfg, size: Tuple[int, int] = (64, 64), batch_size: int = 2, seed: int = 0) -> Dict[str, Any]:
    """A random batch with ground truth in the layout the config's data preprocessor expects (uint8 images).

    Segmentation: a label map over ``num_classes`` classes plus ignored (255) pixels (batch >= 2: UperNet's global
    pooling branch has BatchNorm on 1x1 maps). Detection: a few random boxes (and masks) over the 80 COCO classes.
    """
    scope = scope_of(cfg)
    h, w = size
    gen = torch.Generator().manual_seed(seed)
    if scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        num_classes = cfg.model.decode_head['num_classes']
        inputs, samples = [], []
        for _ in range(batch_size):
            inputs.append(torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8))
            label = torch.randint(0, num_classes, (1, h, w), generator=gen)
            label[:, :, : w // 8] = 255
            sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
            sample.gt_sem_seg = PixelData(data=label)
            samples.append(sample)
        return dict(inputs=inputs, data_samples=samples)
    from mmdet.testing import demo_mm_inputs
    batch = demo_mm_inputs(batch_size, [(3, h, w)] * batch_size, num_items=[3] * batch_size, num_classes=80,
                           with_mask=True)
    batch['inputs'] = [x.to(torch.uint8) for x in batch['inputs']]
    return batch


def train_step(model: torch.nn.Module, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Preprocess, compute the losses in training mode and back-propagate their sum; returns the losses."""
    model.train()
    data = model.data_preprocessor(batch, True)
    losses = model.loss(data['inputs'], data['data_samples'])
    total = sum(_sum(v) for k, v in losses.items() if 'loss' in k)
    total.backward()
    return losses


def _sum(value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.sum()
    return sum(v.sum() for v in value)
