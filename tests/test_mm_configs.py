"""Every config in configs/ (except configs/imagenet/, and configs/own_config_examples/, which test_mm_own_configs.py
runs through the stock tools) parses, carries its paper's recipe, builds and trains a step.

The models are the configs' real, full-size models (no width/depth override), built on the CPU with BN for SyncBN,
without the pretrained download and with capped proposal counts (modzoo.mm.smoke.cheapen_model_cfg); one training
step (losses + backward) runs on a 32x32 batch.
"""
import copy
import glob
import os

import pytest
import timm
import torch

pytest.importorskip('mmseg')
pytest.importorskip('mmdet')
pytestmark = pytest.mark.mm

from modzoo.mm.tiny import apply_tiny  # noqa: E402
from modzoo.mm.smoke import build_model, cached_package_config_index, dummy_batch, load_config, train_step  # noqa
from zoo_testing import fast_init  # noqa: E402
from mm_testing import ROOT, one_thread_fast_parsing  # noqa: E402,F401  (autouse fixture)

CONFIG_DIR = os.path.join(ROOT, 'configs')
CONFIGS = sorted(
    os.path.relpath(p, CONFIG_DIR) for p in glob.glob(os.path.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if '_base_' not in p.split(os.sep)
    # digits_dense: short from-scratch recipes on the dense digits, checked by tests/test_mm_dense_digits.py
    and os.path.relpath(p, CONFIG_DIR).split(os.sep)[0] not in ('imagenet', 'own_config_examples', 'digits_dense'))

# The issue's list: (config, model, recipe) where recipe = (lr, weight decay, drop path, schedule, decay steps).
# Sources are cited in each config file.
EXPECTED = {}
_FN = {'t': 'tiny', 's': 'small', 'b': 'base'}
_FN_DET_DPR = {('t', '1x'): 0.1, ('t', '3x'): 0.3, ('s', '1x'): 0.2, ('s', '3x'): 0.5,
               ('b', '1x'): 0.3, ('b', '3x'): 0.5}
for _v, _name in _FN.items():
    for _rf in ('srf', 'lrf'):
        EXPECTED[f'focalnet/upernet_focalnet-{_v}-{_rf}_8xb2-160k_ade20k-512x512.py'] = (
            f'zoo_focalnet_{_name}_{_rf}', (6e-5, 0.01, 0.3, '160k', None))
        for _s, _steps in (('1x', [9, 11]), ('3x', [27, 33])):
            EXPECTED[f'focalnet/mask-rcnn_focalnet-{_v}-{_rf}_fpn_ms-crop-{_s}_coco.py'] = (
                f'zoo_focalnet_{_name}_{_rf}', (1e-4, 0.05, _FN_DET_DPR[(_v, _s)], _s, _steps))
EXPECTED.update({
    'smt/upernet_smt-s_8xb2-160k_ade20k-512x512.py': ('zoo_smt_small', (6e-5, 0.01, 0.2, '160k', None)),
    'smt/upernet_smt-b_8xb2-160k_ade20k-512x512.py': ('zoo_smt_base', (6e-5, 0.01, 0.3, '160k', None)),
    'smt/mask-rcnn_smt-s_fpn_1x_coco.py': ('zoo_smt_small', (2e-4, 0.05, 0.2, '1x', [8, 11])),
    'smt/mask-rcnn_smt-b_fpn_1x_coco.py': ('zoo_smt_base', (2e-4, 0.05, 0.2, '1x', [8, 11])),
    'smt/mask-rcnn_smt-s_fpn_ms-crop-3x_coco.py': ('zoo_smt_small', (2e-4, 0.05, 0.2, '3x', [27, 33])),
    'smt/mask-rcnn_smt-b_fpn_ms-crop-3x_coco.py': ('zoo_smt_base', (2e-4, 0.05, 0.3, '3x', [27, 33])),
    'smt/retinanet_smt-s_fpn_1x_coco.py': ('zoo_smt_small', (1e-4, 0.05, 0.2, '1x', [8, 11])),
    'efficientmod/fpn_efficientmod-s_8xb4-40k_ade20k-512x512.py': (
        'zoo_efficientmod_s', (2e-4, 1e-4, None, '40k', None)),
    'efficientmod/mask-rcnn_efficientmod-s_fpn_1x_coco.py': ('zoo_efficientmod_s', (2e-4, 0.05, None, '1x', [8, 11])),
    'efficientmod/mask-rcnn_efficientmod-s_fpn_ms-crop-3x_coco.py': (
        'zoo_efficientmod_s', (2e-4, 0.05, None, '3x', [27, 33])),
    'gridpe_pvt/upernet_gridpe-pvt-v2-b2_8xb2-160k_ade20k-512x512.py': (
        'zoo_gridpe_pvt_v2_b2', (6e-5, 0.01, 0.1, '160k', None)),
    'gridpe_pvt/mask-rcnn_gridpe-pvt-v2-b2_fpn_1x_coco.py': ('zoo_gridpe_pvt_v2_b2', (2e-4, 1e-4, 0.1, '1x', [8, 11])),
    'gridpe_pvt/mask-rcnn_gridpe-pvt-v2-b2_fpn_ms-crop-3x_coco.py': (
        'zoo_gridpe_pvt_v2_b2', (1e-4, 0.05, 0.1, '3x', [27, 33])),
    'gridpe_pvt/retinanet_gridpe-pvt-v2-b2_fpn_1x_coco.py': ('zoo_gridpe_pvt_v2_b2', (1e-4, 1e-4, 0.1, '1x', [8, 11])),
})
# issue 7: SFM (the base config's UperNet recipe, ARS + MSAU added) and MACMD on Synapse (the released recipe)
EXPECTED.update({
    'sfm/upernet_focalnet-t-srf_sfm_8xb2-160k_ade20k-512x512.py': (
        'zoo_focalnet_tiny_srf', (6e-5, 0.01, 0.3, '160k', None)),
    'sfm/upernet_smt-s_sfm_8xb2-160k_ade20k-512x512.py': ('zoo_smt_small', (6e-5, 0.01, 0.2, '160k', None)),
    'macmd/macmd_pvt-v2-b2_1xb16-150e_synapse-224x224.py': ('zoo_gridpe_pvt_v2_b2', (1e-3, 1e-3, 0.1, '150e', None)),
    'macmd/macmd_gridpe-pvt-v2-b2_1xb16-150e_synapse-224x224.py': (
        'zoo_gridpe_pvt_v2_b2', (1e-3, 1e-3, 0.1, '150e', None)),
})
# recipes that decay every parameter alike (the released MACMD training code has no norm rule)
DECAY_ALL = {c for c in EXPECTED if c.startswith('macmd/')}
_LENGTH = {'160k': ('max_iters', 160000), '40k': ('max_iters', 40000), '1x': ('max_epochs', 12),
           '3x': ('max_epochs', 36), '150e': ('max_epochs', 150)}


_PARSED = {}


def _load(config: str):
    """Each config parsed once per session (a deep copy per use: tests modify them)."""
    if config not in _PARSED:
        with cached_package_config_index():
            _PARSED[config] = load_config(os.path.join(CONFIG_DIR, config))
    return copy.deepcopy(_PARSED[config])


def test_every_config_of_the_issue_exists():
    assert set(EXPECTED) <= set(CONFIGS), sorted(set(EXPECTED) - set(CONFIGS))
    assert set(CONFIGS) <= set(EXPECTED), f'untested recipe for {sorted(set(CONFIGS) - set(EXPECTED))}'


def _backbone_channels(model_name: str, backbone_cfg) -> list:
    with torch.device('meta'):
        model = timm.create_model(model_name, features_only=True, **{
            k: v for k, v in backbone_cfg.items()
            if k not in ('type', 'model_name', 'init_cfg', 'out_norms', 'frozen_stages', 'norm_eval', 'with_cp',
                         'sfm')})
    return list(model.feature_info.channels())


@pytest.mark.parametrize('config', CONFIGS)
def test_config_recipe(config):
    """Parse, then check what the paper's recipe fixes and what the framework needs (cheap: no model build)."""
    cfg = _load(config)
    model_name, (lr, wd, drop_path, length, steps) = EXPECTED[config]
    assert cfg.custom_imports == dict(imports=['modzoo.mm'], allow_failed_imports=False)
    assert cfg.default_scope == ('mmseg' if 'ade20k' in config or 'synapse' in config else 'mmdet')
    backbone = cfg.model.backbone
    assert backbone.type == 'ModzooBackbone' and backbone.model_name == model_name
    assert cfg.model.get('pretrained') is None  # a segmentor-level pretrained would override init_cfg
    assert backbone.init_cfg.type == 'Pretrained' and backbone.init_cfg.checkpoint
    assert backbone.get('drop_path_rate') == drop_path

    optimizer = cfg.optim_wrapper.optimizer
    assert optimizer.type == 'AdamW' and optimizer.lr == lr and optimizer.weight_decay == wd
    if config in DECAY_ALL:
        assert 'paramwise_cfg' not in cfg.optim_wrapper
    else:
        assert cfg.optim_wrapper.paramwise_cfg.custom_keys['norm'] == dict(decay_mult=0.)
    key, value = _LENGTH[length]
    assert cfg.train_cfg[key] == value
    if steps is not None:
        multistep = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR']
        assert len(multistep) == 1 and multistep[0].milestones == steps

    if model_name not in timm.list_models('zoo_*'):
        pytest.skip(f'{model_name} not registered yet')
    channels = _backbone_channels(model_name, backbone)
    if 'neck' in cfg.model:
        assert cfg.model.neck.in_channels == channels
    else:
        assert cfg.model.decode_head.in_channels == channels
        if cfg.model.decode_head.type != 'MACMDHead':  # MACMD's deep supervision is inside its decode head
            assert cfg.model.auxiliary_head.in_channels == channels[cfg.model.auxiliary_head.in_index]

    # the tiny-dataset rewrite applies to every config (no files needed for the check)
    apply_tiny(cfg, root='data/tiny', write_missing=False)
    assert cfg.train_dataloader.num_workers == 0


@pytest.mark.parametrize('config', CONFIGS)
def test_config_builds_and_trains_one_step(config):
    cfg = _load(config)
    model_name = cfg.model.backbone.model_name
    if model_name not in timm.list_models('zoo_*'):
        pytest.skip(f'{model_name} not registered yet')
    seg = cfg.default_scope == 'mmseg'
    size = (32, 32)
    with fast_init():  # full-size models: weights need the right distribution, not independent draws
        model = build_model(cfg, input_size=size)
    losses = train_step(model, dummy_batch(cfg, size=size, batch_size=2 if seg else 1))
    values = [v for k, v in losses.items() if 'loss' in k]
    assert values and all(torch.isfinite(torch.as_tensor(sum(x.sum() for x in (v if isinstance(v, list) else [v]))))
                          for v in values)
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), 'every backbone parameter gets a gradient'

    # the optimizer's no-decay rule reaches the backbone's norm parameters under this family's naming
    from mmengine.optim import build_optim_wrapper
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay_of = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            decay_of[id(p)] = group['weight_decay']
    named = dict(model.backbone.model.named_parameters())
    norms = [n for n in named if '.norm' in n or n.startswith('norm')]
    assert norms and all(decay_of[id(named[n])] == (
        cfg.optim_wrapper.optimizer.weight_decay if config in DECAY_ALL else 0.) for n in norms)
    convs = [n for n, p in named.items() if p.dim() == 4 and 'norm' not in n]
    assert decay_of[id(named[convs[0]])] == cfg.optim_wrapper.optimizer.weight_decay
