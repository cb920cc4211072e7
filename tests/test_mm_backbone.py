"""modzoo.mm.ModzooBackbone: one OpenMMLab backbone for every family (features, freezing, checkpoints, registration)."""
import os
import pickle
import subprocess
import sys

import pytest
import timm
import torch

pytest.importorskip('mmseg')
pytest.importorskip('mmdet')
pytestmark = pytest.mark.mm

from modzoo import CheckpointMismatchError  # noqa: E402
from modzoo.models import UnknownModelError  # noqa: E402
from modzoo.mm import ModzooBackbone  # noqa: E402
from modzoo.mm.checkpoint_compat import mmengine_checkpoint_globals  # noqa: E402
from zoo_testing import random_checkpoint  # noqa: E402
from mm_testing import ROOT, one_thread_fast_parsing  # noqa: E402,F401  (autouse fixture)


def _official_like(layout: str, seed: int = 0):
    """An official-layout checkpoint with random values (BatchNorm variances kept positive)."""
    sd = random_checkpoint(layout, seed)
    for key in sd:
        if key.endswith('running_var'):
            sd[key] = sd[key].abs() + 0.5
    return sd


def _timm_pvt_v2_b0():
    return timm.create_model('pvt_v2_b0', pretrained=False).state_dict()


# family -> (small model, checkpoint as its publisher ships it)
CLASSIFICATION_FILES = {
    'focalnet': ('zoo_focalnet_tiny_srf', lambda: {'model': _official_like('focalnet_tiny_srf')}),
    'efficientmod': ('zoo_efficientmod_xxs', lambda: {'state_dict': _official_like('efficientmod_xxs')}),
    'smt': ('zoo_smt_tiny', lambda: {'model': _official_like('smt_t')}),
    'gridpe_pvt': ('zoo_gridpe_pvt_v2_b0', _timm_pvt_v2_b0),  # timm's PVTv2 weights load into GridPE-PVT
}


def _require(model_name: str):
    if model_name not in timm.list_models('zoo_*'):
        pytest.skip(f'{model_name} is not registered (family not landed)')


def test_import_modzoo_does_not_import_mm():
    code = ("import sys, modzoo; bad = [m for m in ('modzoo.mm', 'mmseg', 'mmdet', 'mmengine') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT, timeout=300)


def test_registered_in_both_scopes():
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    assert SEG_MODELS.get('ModzooBackbone') is ModzooBackbone
    assert DET_MODELS.get('ModzooBackbone') is ModzooBackbone
    from modzoo.mm import registered_scopes
    assert {'mmseg', 'mmdet'} <= set(registered_scopes())


@pytest.mark.parametrize('family', sorted(CLASSIFICATION_FILES))
def test_init_cfg_features_equal_timm_features_only(family, tmp_path):
    """Classification weights through init_cfg == timm features_only + pretrained_cfg_overlay(file) from that file."""
    model_name, make_checkpoint = CLASSIFICATION_FILES[family]
    _require(model_name)
    path = str(tmp_path / 'classification.pth')
    torch.save(make_checkpoint(), path)

    backbone = ModzooBackbone(model_name, init_cfg=dict(type='Pretrained', checkpoint=path))
    backbone.init_weights()
    report = backbone._last_load_report
    # a plain PVT file has no GridPE rotations: the model's seeded ones are reported kept at initialisation
    assert not [k for k in report.missing if not k.endswith('.grid_pe.omegas')]
    assert not report.unexpected and not report.mismatched
    # only the classifier (and a final norm) may go unused: the features model pruned them (some family filters
    # drop them already, so the list may also be empty)
    assert all(k.startswith(('head.', 'norm.')) for k in report.unused), report.unused

    reference = timm.create_model(
        model_name, features_only=True, pretrained=True, pretrained_cfg_overlay=dict(file=path))
    x = torch.randn(2, 3, 64, 96)
    backbone.eval()
    reference.eval()
    with torch.no_grad():
        ours, theirs = backbone(x), reference(x)
    assert len(ours) == len(theirs) == 4
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    # and the weights really came from the file (not a coincidence of two random inits)
    fresh = ModzooBackbone(model_name).eval()
    with torch.no_grad():
        assert not torch.equal(fresh(x)[-1], ours[-1])


def test_official_dense_checkpoint_with_output_norms(tmp_path):
    """An official FocalNet detector checkpoint (backbone.* with norm{i}) loads into out_norms=True, window 9."""
    sd = _official_like('focalnet_tiny_srf')
    del sd['norm.weight'], sd['norm.bias'], sd['head.weight'], sd['head.bias']  # dense backbones have neither
    for i, c in enumerate((96, 192, 384, 768)):
        sd[f'norm{i}.weight'] = torch.rand(c) + 0.5
        sd[f'norm{i}.bias'] = torch.randn(c)
    detector = {f'backbone.{k}': v for k, v in sd.items()}
    detector['neck.lateral_convs.0.conv.weight'] = torch.randn(256, 96, 1, 1)
    path = str(tmp_path / 'maskrcnn.pth')
    torch.save({'state_dict': detector, 'meta': {'epoch': 12}}, path)

    backbone = ModzooBackbone('zoo_focalnet_tiny_srf', out_norms=True, focal_windows=(9, 9, 9, 9),
                              init_cfg=dict(type='Pretrained', checkpoint=path))
    backbone.init_weights()
    report = backbone._last_load_report
    assert not report.missing and not report.unexpected and not report.mismatched
    for i in range(4):
        assert torch.equal(backbone.model.layers[i].out_norm.weight, sd[f'norm{i}.weight'])
    kernel = backbone.model.layers[0].blocks[0].modulation.focal_layers[0][0].weight
    assert kernel.shape[-1] == 9  # window-3 weights zero-padded to the detection window
    assert torch.equal(kernel[..., 3:6, 3:6], sd['layers.0.blocks.0.modulation.focal_layers.0.0.weight'])

    without_norms = ModzooBackbone('zoo_focalnet_tiny_srf', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointMismatchError, match='out_norms=True'):
        without_norms.init_weights()


def test_adapter_checkpoint_roundtrip_with_adapter_norms(tmp_path):
    """A detector checkpoint written from the adapter (family without output norms + adapter norms) reloads."""
    _require('zoo_efficientmod_xxs')
    trained = ModzooBackbone('zoo_efficientmod_xxs', out_norms=True)
    assert trained.out_norms is not None  # EfficientMod has no output norms of its own
    with torch.no_grad():
        for p in trained.out_norms.parameters():
            p.add_(torch.randn_like(p))
    checkpoint = {'state_dict': {f'backbone.{k}': v for k, v in trained.state_dict().items()},
                  'meta': {'iter': 10}}
    checkpoint['state_dict']['decode_head.conv_seg.weight'] = torch.randn(150, 128, 1, 1)
    path = str(tmp_path / 'segmentor.pth')
    torch.save(checkpoint, path)

    loaded = ModzooBackbone('zoo_efficientmod_xxs', out_norms=True, init_cfg=dict(type='Pretrained', checkpoint=path))
    loaded.init_weights()
    assert not loaded._last_load_report.missing
    for (name, a), (_, b) in zip(trained.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_misfit_raises_nonstrict_reports(tmp_path):
    path = str(tmp_path / 'tiny.pth')
    torch.save({'model': _official_like('focalnet_tiny_srf')}, path)
    small = ModzooBackbone('zoo_focalnet_small_srf', depths=(2, 2, 8, 2),
                           init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(CheckpointMismatchError, match='missing'):
        small.init_weights()
    report = small.load_pretrained(path, strict=False)
    assert report.missing and all('layers.2.blocks.' in k for k in report.missing)
    assert torch.equal(small.model.stem.proj.weight, torch.load(path)['model']['patch_embed.proj.weight'])

    wider = ModzooBackbone('zoo_focalnet_base_srf', depths=(2, 2, 6, 2))
    with pytest.raises(CheckpointMismatchError, match='shape mismatch'):
        wider.load_pretrained(path)


def test_frozen_stages_and_norm_eval():
    """frozen_stages=2 freezes stem + stages 0-1 (no grads, eval mode, unchanged by a step); norm_eval fixes BN."""
    _require('zoo_smt_tiny')  # SMT has BatchNorms (stem and attention), so norm_eval is observable
    backbone = ModzooBackbone('zoo_smt_tiny', frozen_stages=2, norm_eval=True, drop_path_rate=0.1)
    frozen_names = set(backbone._stage_groups[0] + backbone._stage_groups[1] + backbone._stage_groups[2])
    for name, p in backbone.model.named_parameters():
        assert p.requires_grad == (name not in frozen_names), name
    assert any(n.startswith('patch_embed1.') for n in frozen_names)
    assert any(n.startswith('block2.') for n in frozen_names)
    assert not any(n.startswith('block3.') for n in frozen_names)

    backbone.train()
    assert all(not m.training for m in backbone._frozen)
    assert backbone.model.block3.training
    bns = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)

    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.1)
    out = backbone(torch.randn(2, 3, 64, 64))
    sum(o.float().pow(2).mean() for o in out).backward()
    optimizer.step()
    after = backbone.state_dict()
    for name in before:
        model_name = name[len('model.'):]
        changed = not torch.equal(before[name], after[name])
        if model_name in frozen_names or name.endswith(('running_mean', 'running_var', 'num_batches_tracked')):
            assert not changed, name  # frozen weights, and BN statistics under norm_eval
    assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith('model.block4.'))


def test_options_pass_through():
    backbone = ModzooBackbone('zoo_focalnet_tiny_srf', out_indices=(1, 3), drop_path_rate=0.25,
                              embed_dim=16, depths=(1, 1, 2, 1))
    assert backbone.out_channels == [32, 128] and backbone.strides == [8, 32]
    out = backbone(torch.randn(1, 3, 70, 90))  # not a multiple of 32: FocalNet pads
    assert [tuple(o.shape) for o in out] == [(1, 32, 9, 12), (1, 128, 3, 3)]
    rates = [m.drop_prob for m in backbone.modules() if type(m).__name__ == 'DropPath']
    assert rates and max(rates) == pytest.approx(0.25)
    pruned = ModzooBackbone('zoo_focalnet_tiny_srf', out_indices=(0, 1), embed_dim=16, depths=(1, 1, 2, 1))
    assert len(pruned.model.layers) == 2  # stages after the deepest tap are not built into the graph


def test_clear_errors(tmp_path):
    with pytest.raises(UnknownModelError, match='zoo_focalnet_tiny_srf'):
        ModzooBackbone('zoo_focalnet_tiny_sfr')
    with pytest.raises(TypeError, match='zoo_focalnet_tiny_srf'):
        ModzooBackbone('zoo_focalnet_tiny_srf', focal_window_size=9)
    with pytest.raises(ValueError, match='frozen_stages'):
        ModzooBackbone('zoo_focalnet_tiny_srf', frozen_stages=5, embed_dim=16, depths=(1, 1, 2, 1))
    with pytest.raises(ValueError, match='either pretrained or init_cfg'):
        ModzooBackbone('zoo_focalnet_tiny_srf', pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b'))
    backbone = ModzooBackbone('zoo_focalnet_tiny_srf', pretrained=str(tmp_path / 'missing.pth'),
                              embed_dim=16, depths=(1, 1, 2, 1))
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=str(tmp_path / 'missing.pth'))
    with pytest.raises(FileNotFoundError):
        backbone.init_weights()
    with pytest.raises(ValueError, match='no downloadable weights'):
        backbone.load_pretrained('timm:zoo_focalnet_tiny_iso')


def test_segmentor_level_pretrained_reaches_backbone(tmp_path):
    """EncoderDecoder hands a segmentor-level ``pretrained`` to the backbone, which loads it through the filter."""
    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    small = dict(embed_dim=16, depths=(1, 1, 2, 1))
    source = timm.create_model('zoo_focalnet_tiny_srf', **small)
    path = str(tmp_path / 'cls.pth')
    torch.save(source.state_dict(), path)
    cfg = ConfigDict(
        type='EncoderDecoder', pretrained=path,
        backbone=dict(type='ModzooBackbone', model_name='zoo_focalnet_tiny_srf', **small),
        decode_head=dict(type='FCNHead', in_channels=128, channels=16, num_convs=1, num_classes=3, in_index=3))
    with DefaultScope.overwrite_default_scope('mmseg'):
        segmentor = MODELS.build(cfg)
    segmentor.init_weights()
    assert torch.equal(segmentor.backbone.model.stem.proj.weight, source.stem.proj.weight)


class _Exploit:
    """Pickles to ``getattr(os, 'system')('...')``-style gadgets; must never run under weights_only."""

    def __reduce__(self):
        return getattr, (torch.Tensor, 'numpy')


def test_checkpoint_allowlist_is_narrow(tmp_path):
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    for v in (1.0, 2.0, 4.0):
        buffer.update(v)
    good = str(tmp_path / 'good.pth')
    torch.save({'message_hub': {'log_scalars': {'loss': buffer}}, 'state_dict': {'w': torch.ones(2)}}, good)
    bad = str(tmp_path / 'bad.pth')
    torch.save({'x': _Exploit()}, bad)

    # without modzoo.mm (a fresh process that imports only mmengine) torch's weights_only default refuses the file
    refused = subprocess.run(
        [sys.executable, '-c', 'import sys, torch, mmengine.logging\n'
         'try:\n    torch.load(sys.argv[1])\nexcept Exception as e:\n    print(type(e).__name__)', good],
        capture_output=True, text=True, timeout=120)
    assert refused.stdout.strip() == 'UnpicklingError', refused.stderr[-2000:]
    with mmengine_checkpoint_globals():
        loaded = torch.load(good)
        assert loaded['message_hub']['log_scalars']['loss'].mean() == pytest.approx(7 / 3)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(bad)
    # `import modzoo.mm` allow-lists the same types for the whole process (the stock tools read modzoo's files),
    # and still nothing that runs code
    assert torch.load(good)['message_hub']['log_scalars']['loss'].mean() == pytest.approx(7 / 3)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(bad)


def test_classification_file_into_dense_backbone_reports_new_output_norms(tmp_path):
    """Output norms a classification file cannot have: reported missing (kept at init), not as loaded; no error."""
    path = str(tmp_path / 'cls.pth')
    torch.save({'model': _official_like('focalnet_tiny_srf')}, path)
    backbone = ModzooBackbone('zoo_focalnet_tiny_srf', out_norms=True,
                              init_cfg=dict(type='Pretrained', checkpoint=path))
    init = backbone.model.layers[2].out_norm.weight.detach().clone()
    backbone.init_weights()
    report = backbone._last_load_report
    assert sorted(report.missing) == sorted(f'layers.{i}.out_norm.{p}' for i in range(4) for p in ('weight', 'bias'))
    assert not any('out_norm' in k for k in report.loaded)
    assert torch.equal(backbone.model.layers[2].out_norm.weight, init)
    assert 'missing (kept at initialisation)' in report.summary()


def test_import_without_openmmlab_says_how_to_get_it():
    code = ('import sys\nsys.modules["mmcv"] = None  # as if not installed\n'
            'try:\n    import modzoo.mm\nexcept ImportError as e:\n    print(e)\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and 'mmcv' in lines[0] and 'setup_env.sh --mm' in lines[0], result.stdout + result.stderr


def test_adapter_parts_go_through_the_one_reader_and_report(tmp_path):
    """The backbone's own layout (model.*, out_norms.*, resamplers.*) is read in one place; loaded adapter norms are
    reported loaded, and adapter norms a backbone was built without are refused, not silently dropped."""
    from modzoo.mm.pretrained import read_backbone_layout
    _require('zoo_efficientmod_xxs')
    trained = ModzooBackbone('zoo_efficientmod_xxs', out_norms=True)
    layout = read_backbone_layout(trained.state_dict())
    assert layout.network.keys() == trained.model.state_dict().keys() and not layout.resamplers
    assert layout.out_norms.keys() == trained.out_norms.state_dict().keys()
    assert read_backbone_layout({'stem.proj.weight': torch.zeros(1)}).network.keys() == {'stem.proj.weight'}
    path = str(tmp_path / 'segmentor.pth')
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in trained.state_dict().items()}}, path)

    loaded = ModzooBackbone('zoo_efficientmod_xxs', out_norms=True)
    report = loaded.load_pretrained(path)
    assert {f'out_norms.{k}' for k in trained.out_norms.state_dict()} <= set(report.loaded)
    plain = ModzooBackbone('zoo_efficientmod_xxs')
    with pytest.raises(CheckpointMismatchError, match='out_norms'):
        plain.load_pretrained(path)
    report = plain.load_pretrained(path, strict=False)
    assert report.unexpected and all(k.startswith('out_norms.') for k in report.unexpected)
