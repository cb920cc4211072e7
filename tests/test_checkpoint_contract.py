"""The checkpoint contract: one reader/matcher for every load path, files that carry their model, Hub folders, and
checkpoints whose contents cannot be right (non-float, NaN/Inf, code-running pickles)."""
import json
import os
import subprocess
import sys

import pytest
import timm
import torch

import modzoo
from modzoo import hub
from modzoo.models import CheckpointFileError, CheckpointValueError, model_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# one small variant per family (the layout does not depend on the size)
SMALL = {
    'zoo_focalnet_tiny_srf': dict(depths=(1, 1, 1, 1), embed_dim=16),
    'zoo_efficientmod_xxs': dict(depths=(1, 1, 1, 1)),
    'zoo_smt_tiny': dict(depths=(1, 1, 1, 1)),
    'zoo_gridpe_pvt_v2_b0': dict(depths=(1, 1, 1, 1)),
}


def _small(name, **kwargs):
    torch.manual_seed(0)
    return modzoo.create_model(name, **dict(SMALL[name], **kwargs)).eval()


def test_model_record_names_the_kwarg_difference(tmp_path):
    trained = _small('zoo_focalnet_tiny_srf', focal_levels=(3, 3, 3, 3))
    record = model_record(trained, tag='my_run', source_sha256='0' * 64)
    assert record['architecture'] == 'zoo_focalnet_tiny_srf' and record['tag'] == 'my_run'
    assert record['kwargs']['focal_levels'] == [3, 3, 3, 3] and 'num_classes' not in record['kwargs']
    path = tmp_path / 'w.safetensors'
    hub.save_safetensors(dict(trained.state_dict()), str(path), {modzoo.models.RECORD_KEY: json.dumps(record)})
    other = _small('zoo_focalnet_tiny_srf')  # focal_levels (2, 2, 2, 2)
    with pytest.raises(modzoo.CheckpointMismatchError) as err:
        modzoo.load_checkpoint(other, str(path))
    message = str(err.value)
    assert len(message.splitlines()) == 1
    assert 'focal_levels [3,3,3,3] in the file, [2,2,2,2] in the model' in message
    same = _small('zoo_focalnet_tiny_srf', focal_levels=(3, 3, 3, 3))
    modzoo.load_checkpoint(same, str(path))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(same(x), trained(x))


def test_training_checkpoint_record_refuses_another_build(tmp_path):
    trained = _small('zoo_smt_tiny')
    path = tmp_path / 'best.pth'
    torch.save({'format': 'modzoo.train/1', 'model_name': 'zoo_smt_tiny', 'num_classes': 1000,
                'model_kwargs': dict(SMALL['zoo_smt_tiny'], mlp_ratios=(8, 6, 4, 2)),
                'state_dict': trained.state_dict()}, path)
    with pytest.raises(modzoo.CheckpointMismatchError, match='mlp_ratios .* in the file, .* in the model'):
        modzoo.load_checkpoint(_small('zoo_smt_tiny'), str(path))


def test_non_float_and_non_finite_tensors_are_refused(tmp_path):
    model = _small('zoo_efficientmod_xxs')
    sd = model.state_dict()
    ints = dict(sd, **{k: v.long() for k, v in sd.items() if v.is_floating_point()})
    with pytest.raises(CheckpointValueError, match='non-float tensors .*int64'):
        modzoo.load_checkpoint(model, ints)
    key = next(k for k, v in sd.items() if v.is_floating_point())
    nans = dict(sd, **{key: torch.full_like(sd[key], float('nan'))})
    with pytest.raises(CheckpointValueError, match=f'NaN/Inf .*{key}.*allow_non_finite'):
        modzoo.load_checkpoint(model, nans)
    modzoo.load_checkpoint(model, nans, allow_non_finite=True)  # said explicitly: loaded
    assert torch.isnan(model.state_dict()[key]).all()


def test_get_checkpoint_refuses_nan_and_allows_it_with_the_flag(tmp_path, capsys):
    model = timm.create_model('zoo_efficientmod_xxs')
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd['head.fc.bias'][0] = float('inf')
    src = tmp_path / 'src.pth'
    torch.save({'state_dict': sd}, src)
    args = ['zoo_efficientmod_xxs', '--file', str(src), '--out-dir', str(tmp_path / 'out')]
    assert hub.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'NaN/Inf' in err and 'head.fc.bias' in err and len(err.splitlines()) == 1
    assert not (tmp_path / 'out').exists() or not os.listdir(tmp_path / 'out')
    assert hub.main(args + ['--allow-non-finite']) == 0


class _Evil:
    def __reduce__(self):
        return os.system, ('true',)


def test_code_running_pickle_is_unsafe_not_damaged(tmp_path, capsys):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'x': _Evil()}, path)
    with pytest.raises(CheckpointFileError) as err:
        modzoo.load_checkpoint(_small('zoo_smt_tiny'), str(path))
    message = str(err.value)
    assert 'unsafe' in message and 'system' in message and 'damaged' not in message
    assert hub.main(['zoo_smt_tiny', '--file', str(path), '--out-dir', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err
    assert 'unsafe' in err and 'damaged' not in err


def test_code_running_pickle_is_unsafe_on_every_load_path(tmp_path):
    from modzoo.train.checkpoint import ResumeError, read_training_checkpoint
    from modzoo.train.validate import read_weights
    from modzoo.export.segmentation import build_macmd_for_export
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'x': _Evil()}, path)
    loaders = [lambda: read_weights(str(path)), lambda: modzoo.models.read_checkpoint(str(path)),
               lambda: build_macmd_for_export('zoo_gridpe_pvt_v2_b0', num_classes=3, checkpoint=str(path))]
    for load in loaders:
        with pytest.raises(CheckpointFileError, match='unsafe'):
            load()
    with pytest.raises(ResumeError, match='unsafe'):
        read_training_checkpoint(str(path))


@pytest.mark.parametrize('value', ['nan', 'inf', '-1'])
def test_timeout_must_be_finite(value, tmp_path, capsys):
    assert hub.main(['zoo_smt_tiny', '--timeout', value, '--out-dir', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: --timeout') and len(err.splitlines()) == 1


def test_broken_manifest_is_one_line(tmp_path, capsys):
    manifest = tmp_path / 'manifest'
    manifest.mkdir()
    (manifest / 'x.json').write_text('{"checkpoints": {')
    assert hub.main(['zoo_smt_tiny', '--manifest-dir', str(manifest), '--out-dir', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: manifest') and 'x.json' in err and len(err.splitlines()) == 1


def test_failed_download_leaves_no_empty_folders(tmp_path, capsys):
    downloads = tmp_path / 'a' / 'b'
    code = hub.main(['zoo_smt_tiny', '--url', f'file://{tmp_path}/missing.pth', '--download-dir', str(downloads),
                     '--out-dir', str(tmp_path / 'out')])
    assert code == 2 and not (tmp_path / 'a').exists()


def test_mm_prefix_on_a_runner_checkpoint(tmp_path):
    """mmengine's idiom prefix='backbone.' on a checkpoint saved the way its CheckpointHook saves one."""
    pytest.importorskip('mmdet')
    from mmengine.logging import MessageHub
    from modzoo.mm import ModzooBackbone
    kwargs = dict(SMALL['zoo_focalnet_tiny_srf'])
    trained = ModzooBackbone('zoo_focalnet_tiny_srf', **kwargs)
    for p in trained.parameters():
        torch.nn.init.normal_(p)
    message_hub = MessageHub.get_instance('ckpt_contract_test')
    message_hub.update_scalar('train/loss', 0.5)
    state = {f'backbone.{k}': v for k, v in trained.state_dict().items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.zeros(8, 16, 1, 1)
    checkpoint = {'meta': {'epoch': 1, 'iter': 10, 'mmengine_version': '0.10.7'}, 'state_dict': state,
                  'message_hub': message_hub.state_dict(), 'optimizer': {'state': {}, 'param_groups': []}}
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(checkpoint, path)
    backbone = ModzooBackbone('zoo_focalnet_tiny_srf', **kwargs,
                              init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    backbone.init_weights()
    for k, v in trained.state_dict().items():
        assert torch.equal(backbone.state_dict()[k], v), k
    with pytest.raises(modzoo.CheckpointMismatchError, match="no tensors under prefix 'head.'"):
        ModzooBackbone('zoo_focalnet_tiny_srf', **kwargs,
                       init_cfg=dict(type='Pretrained', checkpoint=path, prefix='head')).init_weights()


_LOAD = ('import sys, torch, timm, modzoo\n'
         'model = timm.create_model("local-dir:" + sys.argv[1], pretrained=True).eval()\n'
         'torch.manual_seed(0)\n'
         'with torch.no_grad():\n'
         '    torch.save(model(torch.randn(1, 3, 64, 64)), sys.argv[2])\n')


@pytest.mark.parametrize('name', sorted(SMALL))
def test_hub_folder_loads_with_plain_timm(name, tmp_path):
    model = _small(name, num_classes=7)
    record = model_record(model, tag='test', source_sha256='a' * 64)
    folder = str(tmp_path / 'hub')
    report = modzoo.models.fit_checkpoint(model.state_dict(), model)
    hub.write_hub_folder(folder, report, model, record, source='a test', license='mit')
    assert sorted(os.listdir(folder)) == ['README.md', 'config.json', 'model.safetensors']
    config = json.load(open(os.path.join(folder, 'config.json')))
    assert config['architecture'] == name and config['num_classes'] == 7 and 'pretrained_cfg' in config
    card = open(os.path.join(folder, 'README.md')).read()
    assert 'a' * 64 in card and 'license: mit' in card and 'a test' in card
    out = str(tmp_path / 'logits.pt')
    subprocess.run([sys.executable, '-c', _LOAD, folder, out], check=True, cwd=ROOT, timeout=300,
                   env=dict(os.environ, PYTHONPATH=ROOT))
    torch.manual_seed(0)
    with torch.no_grad():  # another process may pick other CPU kernels (thread count): rounding only
        torch.testing.assert_close(torch.load(out), model(torch.randn(1, 3, 64, 64)), rtol=1e-5, atol=1e-6)
    # timm's own export of the loaded model (what push_to_hf_hub uploads) describes the same model
    from timm.models import save_for_hf
    again = timm.create_model("local-dir:" + folder, pretrained=True)
    save_for_hf(again, str(tmp_path / 'again'), safe_serialization=True)
    config_again = json.load(open(tmp_path / 'again' / 'config.json'))
    assert {k: config_again[k] for k in ('architecture', 'num_classes', 'model_args')} == \
        {k: config[k] for k in ('architecture', 'num_classes', 'model_args')}


def test_get_checkpoint_hf_dir_refuses_a_non_empty_folder(tmp_path, capsys):
    model = timm.create_model('zoo_efficientmod_xxs')
    src = tmp_path / 'best.pth'
    torch.save({'state_dict': model.state_dict()}, src)
    folder = tmp_path / 'hub'
    folder.mkdir()
    (folder / 'notes.txt').write_text('mine')
    args = ['zoo_efficientmod_xxs', '--file', str(src), '--hf-dir', str(folder), '--out-dir', str(tmp_path)]
    assert hub.main(args) == 2
    assert 'not empty' in capsys.readouterr().err and (folder / 'notes.txt').read_text() == 'mine'
    assert hub.main(args + ['--overwrite']) == 0
    assert (folder / 'config.json').is_file() and (folder / 'model.safetensors').is_file()


def test_training_run_and_detector_backbone_to_hub_folders(tmp_path):
    """A training run's best.pth (it names its model and kwargs) and an mmdet checkpoint's backbone (--prefix)."""
    trained = _small('zoo_smt_tiny', num_classes=5)
    best = tmp_path / 'best.pth'
    torch.save({'format': 'modzoo.train/1', 'model_name': 'zoo_smt_tiny', 'num_classes': 5,
                'model_kwargs': SMALL['zoo_smt_tiny'], 'state_dict': trained.state_dict()}, best)
    folder = tmp_path / 'run'
    assert hub.main(['zoo_smt_tiny.my_run', '--file', str(best), '--hf-dir', str(folder)]) == 0
    loaded = timm.create_model(f'local-dir:{folder}', pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))

    det = {'meta': {'epoch': 12}, 'state_dict': dict(
        {f'backbone.{k}': v for k, v in trained.state_dict().items() if not k.startswith('head.')},
        **{'neck.conv.weight': torch.zeros(4, 4)})}
    det_path = tmp_path / 'epoch_12.pth'
    torch.save(det, det_path)
    folder = tmp_path / 'det'
    assert hub.main(['zoo_smt_tiny.my_det', '--file', str(det_path), '--prefix', 'backbone.', '--hf-dir',
                     str(folder)]) == 2  # the detector's file does not name the small build: the shapes differ
    small_record = {modzoo.models.RECORD_KEY: {'architecture': 'zoo_smt_tiny', 'kwargs': SMALL['zoo_smt_tiny']}}
    torch.save(dict(det, **small_record), det_path)
    assert hub.main(['zoo_smt_tiny.my_det', '--file', str(det_path), '--prefix', 'backbone.', '--hf-dir',
                     str(folder)]) == 0
    backbone = timm.create_model(f'local-dir:{folder}', pretrained=True).eval()
    assert backbone.num_classes == 0
    with torch.no_grad():
        assert torch.equal(backbone.forward_features(x), trained.forward_features(x))


def test_segmentation_export_reads_through_the_shared_loader(tmp_path):
    """A full segmenter checkpoint loads strictly for export; a damaged one is called damaged; NaN is refused."""
    from modzoo.export.segmentation import build_macmd_for_export
    torch.manual_seed(0)
    trained = build_macmd_for_export('zoo_gridpe_pvt_v2_b0', num_classes=3).segmenter
    path = tmp_path / 'seg.pth'
    torch.save({'meta': {}, 'state_dict': trained.state_dict()}, path)
    exported = build_macmd_for_export('zoo_gridpe_pvt_v2_b0', num_classes=3, checkpoint=str(path))
    for k, v in trained.state_dict().items():
        assert torch.equal(exported.segmenter.state_dict()[k], v), k
    damaged = tmp_path / 'damaged.pth'
    damaged.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(CheckpointFileError, match='damaged or truncated'):
        build_macmd_for_export('zoo_gridpe_pvt_v2_b0', num_classes=3, checkpoint=str(damaged))
    with pytest.raises(modzoo.CheckpointMismatchError, match=r'shape mismatch.*\n.*\(3, .*\) vs \(4, '):
        build_macmd_for_export('zoo_gridpe_pvt_v2_b0', num_classes=4, checkpoint=str(path))


# -- the one entry point: options every caller needs, one classifier rule --------------------------------------------

def test_classifier_policies_of_the_one_entry_point():
    from modzoo.models import fit_checkpoint, load_checkpoint
    src = _small('zoo_efficientmod_xxs', num_classes=7)
    dst = _small('zoo_efficientmod_xxs', num_classes=3)
    # strict (the default): one line naming both sizes and the misfit tensors
    with pytest.raises(modzoo.CheckpointMismatchError) as err:
        fit_checkpoint(src.state_dict(), dst)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and '7-class classifier' in message and '3 classes' in message, message
    assert "classifier='reinit'" in message and err.value.mismatched
    # reinit (fine-tuning): the misfit head keeps its init, everything else loads
    head = dst.head.fc.weight.detach().clone()
    report = load_checkpoint(dst, src.state_dict(), classifier='reinit').load_report
    assert report.dropped == ['head.fc.weight', 'head.fc.bias'] and report.classifier.startswith('dropped')
    assert torch.equal(dst.head.fc.weight, head)
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in dst.state_dict().items() if not k.startswith('head.'))
    # ignore (features_only): the head is reported unused, whatever its size
    report = fit_checkpoint(src.state_dict(), dst, classifier='ignore')
    assert report.unused == ['head.fc.weight', 'head.fc.bias'] and not report.mismatched and not report.dropped
    with pytest.raises(ValueError, match='classifier='):
        fit_checkpoint(src.state_dict(), dst, classifier='keep')


def test_entry_point_checks_a_given_record_and_takes_a_read_checkpoint(tmp_path):
    from modzoo.models import Checkpoint, fit_checkpoint
    trained = _small('zoo_focalnet_tiny_srf', focal_levels=(3, 3, 3, 3))
    record = model_record(trained)
    other = _small('zoo_focalnet_tiny_srf')
    # a dict read by someone else (timm) whose file recorded the model: the record is still checked
    with pytest.raises(modzoo.CheckpointMismatchError, match='focal_levels'):
        fit_checkpoint(trained.state_dict(), other, record=record)
    read = Checkpoint(dict(trained.state_dict()), record, 'my.pth')
    with pytest.raises(modzoo.CheckpointMismatchError, match='my.pth was built differently'):
        fit_checkpoint(read, other)
    assert fit_checkpoint(read, _small('zoo_focalnet_tiny_srf', focal_levels=(3, 3, 3, 3))).loaded


def test_a_filter_failure_is_a_checkpoint_error():
    model = _small('zoo_smt_tiny')

    def broken(state_dict, model):
        raise KeyError('patch_embed')
    with pytest.raises(modzoo.CheckpointMismatchError, match='converting it failed .KeyError'):
        modzoo.models.fit_checkpoint(model.state_dict(), model, filter_fn=broken)


def test_checkpoint_rules_live_in_the_entry_point_only():
    """Outside models/_checkpoint.py no module converts, matches or checks a record by hand: it calls
    fit_checkpoint/load_checkpoint (a git grep finds each rule once)."""
    import re
    by_hand = re.compile(r'\b(match_state_dict|convert_state_dict|check_model_record|_fit_classifier)\(')
    # modzoo/train/trainer.py: its load_initial_weights moves to load_checkpoint(classifier='reinit') when merged
    exempt = {os.path.join('modzoo', 'models', '_checkpoint.py')}
    offenders = []
    for folder, _, files in os.walk(os.path.join(ROOT, 'modzoo')):
        for name in files:
            path = os.path.relpath(os.path.join(folder, name), ROOT)
            if name.endswith('.py') and path not in exempt:
                offenders += [f'{path}: {m.group(0)}' for m in by_hand.finditer(open(os.path.join(ROOT, path)).read())]
    assert not offenders, offenders
    assert "'kernel_impl'" not in open(os.path.join(ROOT, 'modzoo', 'models', '_checkpoint.py')).read()


# -- every load path honours the model record (issue 35, item 5) ----------------------------------------------------

def _recorded_file(tmp_path, **kwargs):
    """A safetensors file of a small FocalNet whose record names ``kwargs`` beside the small build's."""
    trained = _small('zoo_focalnet_tiny_srf', **kwargs)
    record = dict(architecture='zoo_focalnet_tiny_srf', kwargs=dict(SMALL['zoo_focalnet_tiny_srf'], **kwargs))
    path = str(tmp_path / 'w.safetensors')
    hub.save_safetensors(dict(trained.state_dict()), path, {modzoo.models.RECORD_KEY: json.dumps(record)})
    return trained, path


def test_a_kwarg_recorded_at_its_default_is_no_difference(tmp_path):
    _, path = _recorded_file(tmp_path, normalize_modulator=False)
    modzoo.load_checkpoint(_small('zoo_focalnet_tiny_srf'), path)


def test_timm_overlay_file_checks_the_record_kwargs(tmp_path):
    _, path = _recorded_file(tmp_path, normalize_modulator=True)
    with pytest.raises(modzoo.CheckpointMismatchError) as err:
        timm.create_model('zoo_focalnet_tiny_srf', pretrained=True, pretrained_cfg_overlay=dict(file=path),
                          **SMALL['zoo_focalnet_tiny_srf'])
    assert len(str(err.value).splitlines()) == 1 and 'normalize_modulator true in the file' in str(err.value)
    timm.create_model('zoo_focalnet_tiny_srf', pretrained=True, pretrained_cfg_overlay=dict(file=path),
                      normalize_modulator=True, **SMALL['zoo_focalnet_tiny_srf'])


def test_validate_builds_the_recorded_model_or_refuses_other_kwargs(tmp_path):
    from modzoo.train.validate import load_model_for_inference
    trained, path = _recorded_file(tmp_path, normalize_modulator=True)
    model, _, _ = load_model_for_inference('zoo_focalnet_tiny_srf', checkpoint=path)
    assert model.zoo_build_kwargs['normalize_modulator'] is True
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), trained(x))
    with pytest.raises(modzoo.CheckpointMismatchError, match='normalize_modulator true in the file, false'):
        load_model_for_inference('zoo_focalnet_tiny_srf', checkpoint=path,
                                 model_kwargs=dict(SMALL['zoo_focalnet_tiny_srf'], normalize_modulator=False))


def test_hub_folder_config_that_contradicts_the_record_is_refused(tmp_path):
    model = _small('zoo_focalnet_tiny_srf', normalize_modulator=True)
    record = model_record(model)
    folder = str(tmp_path / 'hub')
    hub.write_hub_folder(folder, modzoo.models.fit_checkpoint(model.state_dict(), model), model, record)
    config_path = os.path.join(folder, 'config.json')
    config = json.load(open(config_path))
    config['model_args'].pop('normalize_modulator')  # config.json now builds the default modulator
    json.dump(config, open(config_path, 'w'))
    with pytest.raises(modzoo.CheckpointMismatchError, match='normalize_modulator'):
        timm.create_model('local-dir:' + folder, pretrained=True)


def test_export_builds_the_recorded_model_or_refuses_other_kwargs(tmp_path):
    from modzoo.export.onnx import build_export_model
    trained, path = _recorded_file(tmp_path, normalize_modulator=True)
    assert build_export_model('zoo_focalnet_tiny_srf', checkpoint=path).zoo_build_kwargs['normalize_modulator']
    with pytest.raises(modzoo.CheckpointMismatchError, match='normalize_modulator true in the file, false'):
        build_export_model('zoo_focalnet_tiny_srf', checkpoint=path,
                           model_kwargs=dict(SMALL['zoo_focalnet_tiny_srf'], normalize_modulator=False))


def test_a_training_checkpoint_record_is_honoured_by_validate_and_by_initial_weights(tmp_path):
    """A run's best.pth records model_name/model_kwargs: --model-kwargs that contradict it, or a fine-tuning run
    built differently (--initial-checkpoint), are refused in one line."""
    from modzoo.train.trainer import load_initial_weights
    from modzoo.train.validate import load_model_for_inference
    kwargs = dict(SMALL['zoo_focalnet_tiny_srf'], normalize_modulator=True)
    trained = _small('zoo_focalnet_tiny_srf', normalize_modulator=True)
    path = str(tmp_path / 'best.pth')
    torch.save({'model_name': 'zoo_focalnet_tiny_srf', 'model_kwargs': kwargs, 'state_dict': trained.state_dict()},
               path)
    model, _, _ = load_model_for_inference('zoo_focalnet_tiny_srf', checkpoint=path)
    assert model.zoo_build_kwargs['normalize_modulator'] is True
    other = dict(SMALL['zoo_focalnet_tiny_srf'], normalize_modulator=False)
    with pytest.raises(modzoo.CheckpointMismatchError, match='normalize_modulator true in the file, false'):
        load_model_for_inference('zoo_focalnet_tiny_srf', checkpoint=path, model_kwargs=other)
    with pytest.raises(modzoo.CheckpointMismatchError, match='normalize_modulator true in the file, false'):
        load_initial_weights(_small('zoo_focalnet_tiny_srf'), path)
    assert load_initial_weights(_small('zoo_focalnet_tiny_srf', normalize_modulator=True), path) == []
