"""Issue 35 on get_checkpoint and the checkpoint reader: tags never leave --out-dir, Hub folders appear whole or not
at all (one writer at a time, --overwrite keeps the user's files and drops the old weights), pickles that can run
code are unsafe, malformed model records are one line, and NaN advice names a flag the running tool has."""
import builtins
import json
import os
import subprocess
import sys

import pytest
import timm
import torch

import modzoo
from modzoo import hub
from modzoo.models import RECORD_KEY, CheckpointFileError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH = 'zoo_efficientmod_xxs'
SMALL = dict(depths=(1, 1, 1, 1))


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """A training-style file of the small build (its record names the kwargs), and the model it holds."""
    torch.manual_seed(0)
    model = modzoo.create_model(ARCH, **SMALL).eval()
    path = tmp_path_factory.mktemp('src') / 'best.pth'
    torch.save({'model_name': ARCH, 'model_kwargs': SMALL, 'state_dict': model.state_dict()}, path)
    return str(path), model


def _one_line(capsys):
    err = capsys.readouterr().err
    assert err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    return err


# --- 4: tags ------------------------------------------------------------------------------------------------------

def test_a_tag_cannot_write_outside_the_out_dir(weights, tmp_path, capsys):
    out, outside = tmp_path / 'out', tmp_path / 'outside'
    outside.mkdir()
    tag = f'./../../../../../../../..{outside}/NAME'
    assert hub.main([f'{ARCH}.{tag}', '--file', weights[0], '--out-dir', str(out)]) == 2
    assert 'not a plain name' in _one_line(capsys)
    assert not os.listdir(outside) and not out.exists()
    for bad in ('a/b', '.hidden', 'x..y', '..'):
        with pytest.raises(hub.CheckpointToolError, match='not a plain name'):
            hub.resolve_name(f'{ARCH}.{bad}', own_file=True)
    with pytest.raises(hub.CheckpointToolError, match='not a registered checkpoint.*dist_in1k'):
        hub.resolve_name(f'{ARCH}.my_run', hub.load_manifest())  # a tag of one's own needs --file
    assert hub.resolve_name(f'{ARCH}.my_run.v2', own_file=True) == (ARCH, 'my_run.v2')
    assert hub.main([f'{ARCH}.my_run', '--file', weights[0], '--out-dir', str(out)]) == 0
    assert os.listdir(out) == [f'{ARCH}.my_run.safetensors']


# --- 6: Hub folders -----------------------------------------------------------------------------------------------

def _snapshot(folder):
    return {name: open(os.path.join(folder, name), 'rb').read() for name in sorted(os.listdir(folder))}


def _die_after_the_weights(monkeypatch):
    import safetensors.torch
    real = safetensors.torch.save_file

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError('killed after writing the weights')
    monkeypatch.setattr(safetensors.torch, 'save_file', save_then_die)


def test_a_write_killed_part_way_leaves_the_old_folder_or_none(weights, tmp_path, monkeypatch):
    folder = tmp_path / 'hub'
    args = [f'{ARCH}.first', '--file', weights[0], '--hf-dir', str(folder)]
    assert hub.main(args) == 0
    before = _snapshot(folder)
    with monkeypatch.context() as patch:
        _die_after_the_weights(patch)
        assert hub.main([f'{ARCH}.second', '--file', weights[0], '--hf-dir', str(folder), '--overwrite']) == 2
        assert hub.main([f'{ARCH}.first', '--file', weights[0], '--hf-dir', str(tmp_path / 'new')]) == 2
    assert _snapshot(folder) == before  # the old model, whole
    assert sorted(os.listdir(tmp_path)) == ['hub']  # no new folder, no half-written or lock file left
    assert timm.create_model(f'local-dir:{folder}', pretrained=True).pretrained_cfg['tag'] == 'first'


def test_a_second_writer_is_refused_and_the_first_wins_whole(weights, tmp_path, monkeypatch, capsys):
    import safetensors.torch
    folder = tmp_path / 'hub'
    real, refusals = safetensors.torch.save_file, []

    def save_while_another_writes(*args, **kwargs):
        real(*args, **kwargs)
        if not refusals:
            refusals.append(hub.main([f'{ARCH}.second', '--file', weights[0], '--hf-dir', str(folder)]))
            refusals.append(capsys.readouterr().err)
    monkeypatch.setattr(safetensors.torch, 'save_file', save_while_another_writes)
    assert hub.main([f'{ARCH}.first', '--file', weights[0], '--hf-dir', str(folder)]) == 0
    assert refusals[0] == 2 and 'being written by another process' in refusals[1]
    assert len(refusals[1].strip().splitlines()) == 1
    loaded = timm.create_model(f'local-dir:{folder}', pretrained=True)
    assert loaded.pretrained_cfg['tag'] == 'first' and '# zoo_efficientmod_xxs.first' in \
        (folder / 'README.md').read_text()
    # once the first has finished, a second writer without --overwrite still finds the folder taken
    assert hub.main([f'{ARCH}.second', '--file', weights[0], '--hf-dir', str(folder)]) == 2
    assert 'not empty' in _one_line(capsys)


def test_overwrite_replaces_the_model_and_keeps_the_users_files(weights, tmp_path, capsys):
    folder = tmp_path / 'hub'
    assert hub.main([f'{ARCH}.first', '--file', weights[0], '--hf-dir', str(folder)]) == 0
    torch.save({'stale': torch.zeros(1)}, folder / 'pytorch_model.bin')
    (folder / 'notes.txt').write_text('mine')
    (folder / 'extra').mkdir()
    (folder / 'extra' / 'plot.png').write_bytes(b'png')
    assert hub.main([f'{ARCH}.second', '--file', weights[0], '--hf-dir', str(folder), '--overwrite']) == 0
    assert sorted(os.listdir(folder)) == ['README.md', 'config.json', 'extra', 'model.safetensors', 'notes.txt']
    assert (folder / 'notes.txt').read_text() == 'mine' and (folder / 'extra' / 'plot.png').read_bytes() == b'png'
    assert '# zoo_efficientmod_xxs.second' in (folder / 'README.md').read_text()  # its own card: replaced
    (folder / 'README.md').write_text('# my own words')
    assert hub.main([f'{ARCH}.third', '--file', weights[0], '--hf-dir', str(folder), '--overwrite']) == 0
    assert 'kept your README.md' in capsys.readouterr().out
    assert (folder / 'README.md').read_text() == '# my own words'
    assert json.load(open(folder / 'config.json'))['pretrained_cfg']['tag'] == 'third'


def test_overwrite_without_an_atomic_exchange_swaps_by_two_renames(weights, tmp_path, monkeypatch):
    folder = tmp_path / 'hub'
    assert hub.main([f'{ARCH}.first', '--file', weights[0], '--hf-dir', str(folder)]) == 0
    monkeypatch.setattr(hub, '_exchange', lambda a, b: False)  # a system without renameat2
    assert hub.main([f'{ARCH}.second', '--file', weights[0], '--hf-dir', str(folder), '--overwrite']) == 0
    assert sorted(os.listdir(tmp_path)) == ['hub']
    assert timm.create_model(f'local-dir:{folder}', pretrained=True).pretrained_cfg['tag'] == 'second'


def test_an_unwritable_hub_folder_is_one_line(weights, capsys):
    assert hub.main([ARCH, '--file', weights[0], '--hf-dir', '/proc/modzoo-no-such-folder/hub']) == 2
    line = _one_line(capsys)  # refused by the output check, before any work
    assert '--hf-dir /proc/modzoo-no-such-folder/hub is not writable' in line


def test_a_symlinked_hub_folder_is_written_where_it_points(weights, tmp_path):
    target = tmp_path / 'real'
    target.mkdir()
    (tmp_path / 'link').symlink_to(target)
    assert hub.main([f'{ARCH}.first', '--file', weights[0], '--hf-dir', str(tmp_path / 'link')]) == 0
    assert (tmp_path / 'link').is_symlink() and (target / 'config.json').is_file()


def test_hf_dir_alone_never_checks_an_out_dir_it_does_not_write(weights, tmp_path):
    """--hf-dir writes nothing into --out-dir: an unusable --out-dir (here under a file) is not refused."""
    a_file = tmp_path / 'a_file'
    a_file.write_text('x')
    folder = tmp_path / 'hub'
    assert hub.main([f'{ARCH}.my_run', '--file', weights[0], '--hf-dir', str(folder),
                     '--out-dir', str(a_file / 'x')]) == 0
    assert (folder / 'config.json').is_file()


def test_allow_non_finite_writes_a_hub_folder(tmp_path, capsys):
    model = modzoo.create_model(ARCH, **SMALL)
    sd = dict(model.state_dict(), **{'head.fc.bias': torch.full((1000,), float('nan'))})
    src = tmp_path / 'nan.pth'
    torch.save({'model_name': ARCH, 'model_kwargs': SMALL, 'state_dict': sd}, src)
    args = [ARCH, '--file', str(src), '--hf-dir', str(tmp_path / 'hub')]
    assert hub.main(args) == 2
    assert 'pass --allow-non-finite to load it anyway' in _one_line(capsys)
    assert hub.main(args + ['--allow-non-finite']) == 0
    from safetensors.torch import load_file
    assert torch.isnan(load_file(tmp_path / 'hub' / 'model.safetensors')['head.fc.bias']).all()


# --- 8: pickles ---------------------------------------------------------------------------------------------------

class _Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class _Config:  # a config object, as official trainers pickle
    pass


def _function(*args):  # a function of an installed module: not data, whatever it does
    return args


CODE = {'exec': _Call(builtins.exec, 'pass'), 'eval': _Call(builtins.eval, '1'),
        'subprocess': _Call(subprocess.run, ['true']), 'getattr': _Call(getattr, 1, 'real'),
        'os.system': _Call(os.system, 'true'), 'beside a config': [_Config(), _Call(builtins.exec, 'pass')],
        'a standard library class': _Call(subprocess.Popen, ['true']), 'a function': _Call(_function, 1)}


@pytest.mark.parametrize('name', sorted(CODE))
def test_pickles_that_can_run_code_are_unsafe_without_an_offer(name, tmp_path, capsys):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'config': _Config(), 'x': CODE[name]}, path)
    with pytest.raises(CheckpointFileError) as err:
        modzoo.models.read_checkpoint(str(path))
    assert 'unsafe' in str(err.value) and 'trust-pickle' not in str(err.value)
    assert hub.main([ARCH, '--file', str(path), '--out-dir', str(tmp_path / 'o')]) == 2
    line = _one_line(capsys)
    assert 'unsafe' in line and '--trust-pickle' not in line


def test_data_pickles_are_offered_trust(tmp_path):
    import argparse
    for obj in (_Config(), argparse.Namespace(lr=0.1), torch.nn.Linear(2, 2)):  # a whole module, too
        path = tmp_path / 'cfg.pth'
        torch.save({'state_dict': {'w': torch.zeros(1)}, 'args': obj}, path)
        with pytest.raises(CheckpointFileError, match='--trust-pickle') as err:
            modzoo.models.read_checkpoint(str(path))
        assert 'unsafe' not in str(err.value)


# --- 10: model records --------------------------------------------------------------------------------------------

MALFORMED = {
    'a list': ('[1, 2]', 'a JSON list'), 'a number': ('3', 'a JSON int'), 'not JSON': ('{"architecture"', 'not JSON'),
    'kwargs as a string': (json.dumps({'architecture': ARCH, 'kwargs': 'depths=1'}), 'not an object'),
    'depths as a string': (json.dumps({'architecture': ARCH, 'kwargs': {'depths': 'abc'}}), 'depths is "abc"'),
    'an unknown kwarg': (json.dumps({'architecture': ARCH, 'kwargs': {'dept': [1]}}), 'names dept'),
}


@pytest.mark.parametrize('case', sorted(MALFORMED))
def test_a_malformed_record_is_one_line(case, weights, tmp_path, capsys):
    raw, says = MALFORMED[case]
    path = str(tmp_path / 'w.safetensors')
    hub.save_safetensors(dict(weights[1].state_dict()), path, {RECORD_KEY: raw})
    assert hub.main([f'{ARCH}.mine', '--file', path, '--out-dir', str(tmp_path / 'o')]) == 2
    line = _one_line(capsys)
    assert 'malformed model record' in line and says in line
    from modzoo.train.validate import load_model_for_inference
    with pytest.raises(CheckpointFileError, match='malformed model record'):
        load_model_for_inference(ARCH, checkpoint=path)


def test_a_training_checkpoint_with_string_kwargs_is_one_line(weights, tmp_path):
    path = tmp_path / 'best.pth'
    torch.save({'model_name': ARCH, 'model_kwargs': 'depths=1', 'state_dict': weights[1].state_dict()}, path)
    with pytest.raises(CheckpointFileError, match='malformed model record .*kwargs "depths=1" is a str'):
        modzoo.models.open_checkpoint(str(path))


def test_a_recorded_num_classes_gives_way_to_the_users(weights, tmp_path):
    path = str(tmp_path / 'w.safetensors')
    record = {'architecture': ARCH, 'kwargs': dict(SMALL, num_classes=10)}  # the weights have 1000 classes
    hub.save_safetensors(dict(weights[1].state_dict()), path, {RECORD_KEY: json.dumps(record)})
    assert hub.main([f'{ARCH}.mine', '--file', path, '--hf-dir', str(tmp_path / 'hub')]) == 0
    from modzoo.train.validate import load_model_for_inference
    model, _, _ = load_model_for_inference(ARCH, checkpoint=path, num_classes=1000)
    assert model.num_classes == 1000
    with pytest.raises(modzoo.CheckpointMismatchError, match='1000-class classifier .* 10 classes'):
        load_model_for_inference(ARCH, checkpoint=path, num_classes=10)


_READ_RUNNER_CHECKPOINT = '''
import sys
from modzoo.models import CheckpointFileError, read_checkpoint
try:
    read_checkpoint(sys.argv[1], prefix='backbone.')
except CheckpointFileError as e:
    print(e)
import modzoo.mm  # its allow-list reads mmengine checkpoints, getattr bound to the message hub's statistics
print(sorted(read_checkpoint(sys.argv[1], prefix='backbone.')))
'''


def test_an_mmengine_runner_checkpoint_is_sent_to_modzoo_mm(tmp_path):
    """Its message hub pickles getattr: not offered --trust-pickle, read through modzoo.mm's allow-list instead."""
    pytest.importorskip('mmengine')
    from mmengine.logging import MessageHub
    hub_state = MessageHub.get_instance('reliability_hub_test')
    hub_state.update_scalar('train/loss', 0.5)
    path = tmp_path / 'epoch_1.pth'
    torch.save({'meta': {'epoch': 1}, 'state_dict': {'backbone.w': torch.zeros(1)},
                'message_hub': hub_state.state_dict()}, path)
    out = subprocess.run([sys.executable, '-c', _READ_RUNNER_CHECKPOINT, str(path)], capture_output=True, text=True,
                         check=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT)).stdout.splitlines()
    assert 'mmengine Runner checkpoint, unsafe' in out[0] and 'import modzoo.mm' in out[0]
    assert 'trust-pickle' not in out[0] and out[1] == "['w']"


def test_a_legacy_format_file_is_scanned_whole(tmp_path):
    """torch's pre-1.6 format: every pickled global is read, not only the first that torch refuses."""
    path = tmp_path / 'legacy.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'config': _Config(), 'x': CODE['exec']}, path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointFileError, match='builtins.exec, which can run code .* unsafe') as err:
        modzoo.models.read_checkpoint(str(path))
    assert 'trust-pickle' not in str(err.value)
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'config': _Config()}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointFileError, match='--trust-pickle'):
        modzoo.models.read_checkpoint(str(path))


def test_getattr_stays_unsafe_after_modzoo_mm_allow_lists_its_stand_in(tmp_path):
    """modzoo.mm binds builtins.getattr to a safe stand-in for mmengine files; trusting a file would not."""
    pytest.importorskip('mmengine')
    import modzoo.mm  # noqa: F401
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'config': _Config(), 'x': CODE['getattr']}, path)
    with pytest.raises(CheckpointFileError) as err:
        modzoo.models.read_checkpoint(str(path))
    assert 'unsafe' in str(err.value) and 'trust-pickle' not in str(err.value)
