"""Bad input against every classification tool: exit status 2, one line on stderr, no traceback, nothing written.

Also: no run destroys another (a second run into a folder keeps the first run's results, default run folders are
unique, a folder lock), resuming on a longer schedule (the added epochs get the new schedule's lr), and damaged
checkpoint files called damaged. The tools are called in-process (``main(argv)``); one subprocess run shows the
same end to end.
"""
import csv
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import modzoo
from modzoo import hub as get_checkpoint
from modzoo.export import cli as export_onnx
from modzoo.models._checkpoint import CheckpointFileError
from modzoo.train.run_folder import lock_run_folder
from modzoo.train.trainer import main as train_main
from modzoo.train.config import ConfigError
from modzoo.train.validate import main as validate_main
from zoo_testing import random_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNWRITABLE = '/proc/modzoo-no-such-folder'  # nothing can be created under /proc, not even by root
TINY = ['--model', 'zoo_focalnet_tiny_srf', '--model-kwargs', 'embed_dim=8', 'depths=(1,1,1,1)']
FAST = ['--img-size', '32', '--crop-pct', '1.0', '--workers', '0', '--threads', '1', '--warmup-epochs', '0',
        '--lr', '3e-3', '-b', '4', '--color-jitter', 'none', '--hflip', '0', '--progress', 'off',
        '--tensorboard', 'off']


def write_folder(root, classes=2, train=4, val=2, size=32):
    rng = np.random.default_rng(0)
    for split, n in (('train', train), ('val', val)):
        for k in range(classes):
            os.makedirs(os.path.join(root, split, f'class{k}'), exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8) // (k + 1)
                Image.fromarray(img).save(os.path.join(root, split, f'class{k}', f'{i}.png'))
    return str(root)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Every kind of bad file once: datasets, recipes, checkpoints."""
    d = tmp_path_factory.mktemp('bad')
    f = {'data': write_folder(d / 'data')}
    f['empty_class'] = write_folder(d / 'empty_class')
    os.makedirs(os.path.join(f['empty_class'], 'train', 'class9'))
    os.makedirs(d / 'only_empty' / 'train' / 'a')
    os.makedirs(d / 'only_empty' / 'train' / 'b')
    f['only_empty'] = str(d / 'only_empty')
    f['bad_yaml'] = str(d / 'bad.yaml')
    with open(f['bad_yaml'], 'w') as fh:
        fh.write('model: zoo_focalnet_tiny_srf\nepochs: [1, 2\n')
    f['a_file'] = str(d / 'a_file')
    open(f['a_file'], 'w').close()
    model = modzoo.create_model('zoo_focalnet_tiny_srf', embed_dim=8, depths=(1, 1, 1, 1), num_classes=2)
    good = d / 'good.pth'
    torch.save({'state_dict': model.state_dict()}, good)
    data = good.read_bytes()
    f['truncated'] = str(d / 'truncated.pth')
    (d / 'truncated.pth').write_bytes(data[:len(data) // 2])
    f['empty'] = str(d / 'empty.pth')
    (d / 'empty.pth').write_bytes(b'')
    f['random_st'] = str(d / 'random.safetensors')
    (d / 'random.safetensors').write_bytes(np.random.default_rng(0).bytes(4096))
    f['list'] = str(d / 'list.pth')
    torch.save([1, 2, 3], f['list'])
    f['plain_pickle'] = str(d / 'plain.pkl')
    with open(f['plain_pickle'], 'wb') as fh:
        pickle.dump({'a': 1}, fh)
    return f


def one_line_error(capsys, call, *args):
    """Run a tool's main, return its stderr after checking: rc 2, one 'error:' line, no traceback."""
    try:
        rc = call(*args)
    except SystemExit as e:  # argparse
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: ') and 'Traceback' not in err, err
    return lines[0]


TRAIN_CASES = [
    ('batch 0', ['-b', '0'], '--batch-size 0'),
    ('img size 0', ['--img-size', '0'], '--img-size 0'),
    ('negative lr', ['--lr', '-1'], '--lr -1'),
    ('zero epochs', ['--epochs', '0'], '--epochs 0'),
    ('negative workers', ['--workers', '-1'], '--workers -1'),
    ('smoothing 1', ['--smoothing', '1.0'], '--smoothing'),
    ('min lr above lr', ['--min-lr', '1'], '--min-lr'),
    ('batch not a number', ['-b', 'x'], "invalid int value: 'x'"),
    ('unknown flag', ['--bogus'], 'unrecognized arguments: --bogus'),
    ('unknown model kwarg', ['--model-kwargs', 'embed_dim=8', 'bogus=1'], "does not take the argument 'bogus'"),
    ('kwarg without =', ['--model-kwargs', 'depths'], 'KEY=VALUE'),
    ('bad yaml', ['--config', '{bad_yaml}'], 'is not valid YAML at line 3'),
    ('missing yaml', ['--config', '{a_file}.yaml'], 'recipe file not found'),
    ('unwritable output', ['--output', UNWRITABLE], 'not writable'),
    ('output under a file', ['--output', '{a_file}/run'], 'is a file, not a folder'),
    ('missing initial checkpoint', ['--initial-checkpoint', '{a_file}.pth'], 'no such file'),
    ('truncated initial checkpoint', ['--initial-checkpoint', '{truncated}'], 'damaged or truncated'),
    ('empty initial checkpoint', ['--initial-checkpoint', '{empty}'], 'is empty (0 bytes)'),
    ('list initial checkpoint', ['--initial-checkpoint', '{list}'], 'holds a list, not a state dict'),
    ('missing resume', ['--resume', '{a_file}.pth'], 'no such file'),
    ('truncated resume', ['--resume', '{truncated}'], 'damaged or truncated'),
    ('resume auto without output', ['--resume', 'auto', '--output', ''], '--resume auto continues the run'),
    ('missing teacher checkpoint', ['--teacher', 'resnet18', '--teacher-checkpoint', '{a_file}.pth'], 'no such file'),
    ('num classes 0', ['--num-classes', '0'], '--num-classes 0'),
    ('input size with a 0', ['--input-size', '3', '0', '32'], '--input-size'),
    ('not a device', ['--device', 'gpu0'], 'not a device name'),
    ('resume a folder', ['--resume', '{tmp}'], 'is a folder'),
    ('mean of two values', ['--mean', '0.5', '0.5'], 'one per input channel (3)'),
    ('unknown optimiser', ['--opt', 'adamww'], "--opt 'adamww' is not known: did you mean adamw"),
    ('unknown schedule', ['--sched', 'cosin'], "--sched 'cosin' is not known: did you mean cosine"),
    ('unknown interpolation', ['--interpolation', 'cubic'], "--interpolation 'cubic' is not known"),
    ('bad augmentation', ['--aa', 'garbage'], 'cannot build the training augmentation from --aa'),
    ('empty class folder', ['--data-dir', '{empty_class}'], 'hold no images: class9'),
    ('only empty class folders', ['--data-dir', '{only_empty}', '--val-split', 'none'], '2 of the 2 class folders'),
]


@pytest.mark.parametrize('argv,expected', [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES])
def test_train_bad_input(files, tmp_path, capsys, argv, expected):
    out = tmp_path / 'out'
    argv = [a.format(tmp=str(tmp_path), **files) for a in argv]
    base = TINY + FAST + ['--data-dir', files['data'], '--output', str(out), '--epochs', '1']
    line = one_line_error(capsys, train_main, base + argv)
    assert expected in line
    assert not out.exists()  # nothing written, not even an empty run folder


VALIDATE_CASES = [
    ('batch 0', ['-b', '0'], '--batch-size 0'),
    ('img size 0', ['--img-size', '0'], '--img-size 0'),
    ('crop pct 2', ['--crop-pct', '2'], '--crop-pct 2'),
    ('unknown interpolation', ['--interpolation', 'cubic'], "--interpolation 'cubic' is not known"),
    ('missing data dir flag', None, 'the following arguments are required: --data-dir'),
    ('missing checkpoint', ['--checkpoint', '{a_file}.pth'], 'no such file'),
    ('truncated checkpoint', ['--checkpoint', '{truncated}'], 'damaged or truncated'),
    ('empty checkpoint', ['--checkpoint', '{empty}'], 'is empty (0 bytes)'),
    ('list checkpoint', ['--checkpoint', '{list}'], 'holds no state dict'),
    ('plain pickle', ['--checkpoint', '{plain_pickle}'], 'is not a PyTorch checkpoint'),
    ('random safetensors', ['--checkpoint', '{random_st}'], 'not a valid safetensors file'),
    ('unknown model kwarg', ['--model-kwargs', 'bogus=1'], "does not take the argument 'bogus'"),
    ('unwritable results file', ['--results-file', UNWRITABLE + '/r.json'], 'not writable'),
    ('empty class folder', ['--data-dir', '{empty_class}/train'], 'hold no images: class9'),
]


@pytest.mark.parametrize('argv,expected', [c[1:] for c in VALIDATE_CASES], ids=[c[0] for c in VALIDATE_CASES])
def test_validate_bad_input(files, capsys, argv, expected):
    base = ['--model', 'zoo_focalnet_tiny_srf', '--model-kwargs', 'embed_dim=8', 'depths=(1,1,1,1)',
            '--num-classes', '2', '--workers', '0', '--img-size', '32', '--checkpoint', os.path.join(
                os.path.dirname(files['truncated']), 'good.pth')]
    if argv is None:  # no --data-dir at all
        line = one_line_error(capsys, validate_main, base)
    else:
        argv = [a.format(**files) for a in argv]
        if '--model-kwargs' in argv:
            base = base[:2] + base[5:]
        line = one_line_error(capsys, validate_main, base + ['--data-dir', files['data']] + argv)
    assert expected in line


EXPORT_CASES = [
    ('batch 0', ['--batch', '0'], '--batch 0'),
    ('img size 0', ['--img-size', '0', '32'], 'impossible image size'),
    ('unknown model kwarg', ['--model-kwargs', 'bogus=1'], "does not take the argument 'bogus'"),
    ('kwarg without =', ['--model-kwargs', 'depths'], 'KEY=VALUE'),
    ('read-only output folder', ['--output', UNWRITABLE + '/m.onnx'], 'not writable'),
    ('output is a folder', ['--output', '{tmp}'], 'is a folder'),
    ('missing checkpoint', ['--checkpoint', '{a_file}.pth'], 'no checkpoint file'),
    ('truncated checkpoint', ['--checkpoint', '{truncated}'], 'damaged or truncated'),
    ('unknown dynamic mode', ['--dynamic', 'sideways'], "invalid choice: 'sideways'"),
]


@pytest.mark.parametrize('argv,expected', [c[1:] for c in EXPORT_CASES], ids=[c[0] for c in EXPORT_CASES])
def test_export_bad_input(files, tmp_path, capsys, argv, expected):
    argv = [a.format(tmp=str(tmp_path), **files) for a in argv]
    base = ['zoo_focalnet_tiny_srf', '--output', str(tmp_path / 'm.onnx')]
    if not any(a.startswith('--model-kwargs') for a in argv):
        base += ['--model-kwargs', 'embed_dim=8', 'depths=(1,1,1,1)', 'num_classes=2']
    line = one_line_error(capsys, export_onnx.main, base + argv)
    assert expected in line
    assert not (tmp_path / 'm.onnx').exists()


GET_CASES = [
    ('random safetensors', ['--file', '{random_st}'], 'not a valid safetensors file'),
    ('pickled list', ['--file', '{list}'], 'holds a list, not a state dict'),
    ('truncated', ['--file', '{truncated}'], 'damaged or truncated'),
    ('empty', ['--file', '{empty}'], 'is empty (0 bytes)'),
    ('bad sha256', ['--file', '{truncated}', '--sha256', 'xyz'], 'is not a sha256 digest'),
    ('file is a folder', ['--file', '{tmp}'], 'is a folder'),
    ('out dir under a file', ['--file', '{truncated}', '--out-dir', '{a_file}/x'], 'is a file, not a folder'),
    ('zero timeout', ['--timeout', '0'], '--timeout 0'),
    ('not a url', ['--url', 'focalnet.pth'], 'focalnet.pth is not a URL'),
    ('source not a number', ['--source', 'first'], "invalid int value: 'first'"),
    ('empty hf dir', ['--file', '{truncated}', '--hf-dir', ''], '--hf-dir "": pass the folder'),
    ('overwrite without hf dir', ['--file', '{truncated}', '--overwrite'], '--overwrite replaces the files'),
    ('hf dir under a file', ['--file', '{truncated}', '--hf-dir', '{a_file}/x'], 'is a file, not a folder'),
]


@pytest.mark.parametrize('argv,expected', [c[1:] for c in GET_CASES], ids=[c[0] for c in GET_CASES])
def test_get_checkpoint_bad_input(files, tmp_path, capsys, argv, expected):
    argv = [a.format(tmp=str(tmp_path), **files) for a in argv]
    if '--out-dir' not in argv:
        argv += ['--out-dir', str(tmp_path / 'out')]
    line = one_line_error(capsys, get_checkpoint.main, ['zoo_focalnet_tiny_srf'] + argv)
    assert expected in line
    assert not (tmp_path / 'out').exists()


def test_get_checkpoint_checks_the_tag_digest_case_and_permissions(tmp_path, capsys):
    sd = random_checkpoint('focalnet_tiny_srf')
    ten = dict(sd, **{'head.weight': sd['head.weight'][:10], 'head.bias': sd['head.bias'][:10]})
    src = tmp_path / 'ten.pth'
    torch.save({'model': ten}, src)
    line = one_line_error(capsys, get_checkpoint.main, ['zoo_focalnet_tiny_srf.ms_in1k', '--file', str(src),
                                                        '--out-dir', str(tmp_path / 'out')])
    assert '10-class classifier' in line and '1000 classes' in line
    assert not (tmp_path / 'out').exists()

    src = tmp_path / 'full.pth'
    torch.save({'model': sd}, src)
    import hashlib
    digest = hashlib.sha256(src.read_bytes()).hexdigest().upper()  # as some sites print it
    old = os.umask(0o022)
    try:
        assert get_checkpoint.main(['zoo_focalnet_tiny_srf.ms_in1k', '--file', str(src), '--sha256', digest,
                                    '--out-dir', str(tmp_path / 'out')]) == 0
    finally:
        os.umask(old)
    assert '(verified)' in capsys.readouterr().out
    written = tmp_path / 'out' / 'zoo_focalnet_tiny_srf.ms_in1k.safetensors'
    assert oct(written.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in (tmp_path / 'out').iterdir()] == [written.name]  # no temporaries left


def test_load_checkpoint_calls_damaged_files_damaged(files):
    model = modzoo.create_model('zoo_focalnet_tiny_srf', embed_dim=8, depths=(1, 1, 1, 1), num_classes=2)
    for name, says in (('truncated', 'is damaged or truncated'), ('empty', 'is empty (0 bytes), not a checkpoint'),
                       ('random_st', 'not a valid safetensors file'), ('plain_pickle', 'not a PyTorch checkpoint')):
        with pytest.raises(CheckpointFileError) as info:
            modzoo.load_checkpoint(model, files[name])
        message = str(info.value)
        assert says in message and 'pickled objects' not in message and 'trust' not in message, message
        assert '\n' not in message


def _csv_rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_second_run_into_a_folder_keeps_the_first_and_default_folders_are_unique(files, tmp_path, capsys, caplog,
                                                                                 monkeypatch):
    out = tmp_path / 'run'
    data = str(tmp_path / 'data')
    write_folder(data)
    os.remove(os.path.join(data, 'train', 'class0', '3.png'))  # 8 images: every one is loaded in the epoch
    with open(os.path.join(data, 'train', 'class0', 'broken.png'), 'wb') as f:
        f.write(b'not a png')  # a corrupt image is skipped with its path logged
    base = TINY + FAST + ['--data-dir', data, '--epochs', '1']
    assert train_main(base + ['--output', str(out)]) == 0
    assert 'broken.png' in caplog.text
    assert 'done: 1/1 epochs, best eval_top1' in caplog.text and '(epoch 1/1)' in caplog.text
    before = {name: (out / name).read_bytes() for name in ('last.pth', 'best.pth', 'log.csv')}
    line = one_line_error(capsys, train_main, base + ['--output', str(out)])
    assert 'already holds a run' in line and '--resume' in line and '--output' in line
    assert {name: (out / name).read_bytes() for name in before} == before

    # resuming another run's checkpoint into this folder is refused too
    line = one_line_error(capsys, train_main, base + ['--output', str(out), '--resume', files['truncated']])
    assert 'already holds a run' in line and 'would overwrite it' in line

    # without --output each run gets its own dated folder
    monkeypatch.chdir(tmp_path)
    assert train_main(base) == 0
    assert train_main(base) == 0
    runs = sorted(os.listdir(tmp_path / 'output' / 'train'))
    assert len(runs) == 2 and all('-zoo_focalnet_tiny_srf-32' in r for r in runs), runs
    assert (out / 'log.csv').read_bytes() == before['log.csv']


def test_a_running_run_locks_its_folder(tmp_path):
    held = lock_run_folder(str(tmp_path))
    try:
        with pytest.raises(ConfigError, match='another training run is writing to'):
            lock_run_folder(str(tmp_path))
    finally:
        os.close(held)
    os.close(lock_run_folder(str(tmp_path)))  # free again once the holder ends


def test_resume_with_more_epochs_follows_the_new_schedule(files, tmp_path, capsys, caplog):
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    out = tmp_path / 'run'
    base = TINY + FAST + ['--data-dir', files['data'], '--output', str(out), '--val-split', 'none']
    assert train_main(base + ['--epochs', '2']) == 0
    assert train_main(base + ['--epochs', '4', '--resume', 'auto']) == 0
    assert 'changed schedule (--epochs 2 -> 4)' in caplog.text
    rows = _csv_rows(out / 'log.csv')
    assert [int(r['epoch']) for r in rows] == [0, 1, 2, 3]
    steps = 8 // 4

    def lr_after(epochs, epoch):
        opt = create_optimizer_v2(torch.nn.Linear(1, 1), opt='adamw', lr=3e-3, weight_decay=0.05)
        sched, _ = create_scheduler_v2(opt, sched='cosine', num_epochs=epochs, warmup_epochs=0, warmup_lr=1e-6,
                                       min_lr=1e-5, step_on_epochs=False, updates_per_epoch=steps)
        sched.step_update(num_updates=(epoch + 1) * steps)
        return opt.param_groups[0]['lr']
    for e in (0, 1):  # the first run followed the 2-epoch schedule
        assert float(rows[e]['lr']) == pytest.approx(lr_after(2, e), rel=1e-5)
    for e in (2, 3):  # the added epochs: the 4-epoch schedule, not the 2-epoch one's final lr
        assert float(rows[e]['lr']) == pytest.approx(lr_after(4, e), rel=1e-5)
    assert float(rows[2]['lr']) > 10 * 1e-5

    line = one_line_error(capsys, train_main, base + ['--epochs', '3', '--resume', 'auto'])
    assert 'has already trained 4 epochs' in line


def test_train_cli_end_to_end_one_line(files, tmp_path):
    out = tmp_path / 'out'
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'train.py')] + TINY + FAST
        + ['--data-dir', files['data'], '--output', str(out), '-b', '0'],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ['error: --batch-size 0: must be a whole number of at least 1']
    assert not out.exists()


def test_resuming_an_older_snapshot_never_overwrites_newer_results(files, tmp_path, capsys):
    out = tmp_path / 'run'
    base = TINY + FAST + ['--data-dir', files['data'], '--val-split', 'none']
    assert train_main(base + ['--output', str(out), '--epochs', '1']) == 0
    shutil.copy(out / 'last.pth', out / 'snapshot_ep1.pth')
    assert train_main(base + ['--output', str(out), '--epochs', '2', '--resume', 'auto']) == 0
    before = {name: (out / name).read_bytes() for name in ('last.pth', 'log.csv')}
    line = one_line_error(capsys, train_main, base + ['--epochs', '3', '--resume', str(out / 'snapshot_ep1.pth')])
    assert 'newer results' in line and 'last.pth' in line and '--output' in line, line
    assert {name: (out / name).read_bytes() for name in before} == before
    # the way on the message names: the older snapshot continues in a new folder
    new = tmp_path / 'branch'
    assert train_main(base + ['--epochs', '2', '--resume', str(out / 'snapshot_ep1.pth'), '--output', str(new)]) == 0
    assert [int(r['epoch']) for r in _csv_rows(new / 'log.csv')] == [1]
    assert {name: (out / name).read_bytes() for name in before} == before


def _calib_folder(root, bad=None, mode='RGB'):
    for k in range(2):
        os.makedirs(os.path.join(root, f'c{k}'), exist_ok=True)
        for i in range(3):
            Image.new(mode, (16, 16), 40 * k + 10 * i).save(os.path.join(root, f'c{k}', f'{i}.png'))
    if bad is not None:
        name, data = bad
        with open(os.path.join(root, 'c0', name), 'wb') as fh:
            fh.write(data)
    return str(root)


def _bomb_png(path, monkeypatch):
    from PIL import Image as PILImage
    Image.new('L', (64, 64)).save(path)
    monkeypatch.setattr(PILImage, 'MAX_IMAGE_PIXELS', 1000)  # 64 x 64 > 2 x 1000: PIL refuses it as a bomb


EXPORT_TINY = ['zoo_focalnet_tiny_srf', '--model-kwargs', 'embed_dim=8', 'depths=(1,1,1,1)', 'num_classes=2',
               '--img-size', '32', '32']


def test_export_checks_every_output_before_writing(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / 'm.onnx'
    calib = _calib_folder(tmp_path / 'calib')
    int8 = EXPORT_TINY + ['-o', str(out), '--int8', '--calib-data', calib, '--calib-images', '2', '--check-images',
                          '2']
    # the int8 graph would replace the fp32 one (and --check compare the file with itself)
    line = one_line_error(capsys, export_onnx.main, int8 + ['--int8-output', str(out), '--check'])
    assert '--int8-output' in line and 'same file as --output' in line, line
    line = one_line_error(capsys, export_onnx.main, int8 + ['--int8-output', str(tmp_path)])
    assert '--int8-output' in line and 'is a folder' in line, line
    line = one_line_error(capsys, export_onnx.main, int8 + ['--int8-output', UNWRITABLE + '/m.onnx'])
    assert '--int8-output' in line and 'not writable' in line, line
    line = one_line_error(capsys, export_onnx.main, EXPORT_TINY + ['-o', files['truncated']]
                          + ['--checkpoint', files['truncated']])
    assert 'would overwrite the input --checkpoint' in line, line
    assert not out.exists() and os.listdir(tmp_path) == ['calib']


@pytest.mark.parametrize('kind', ['corrupt', 'truncated', 'oversize', 'channels'])
def test_bad_calibration_data_is_one_line_before_the_fp32_graph(kind, tmp_path, capsys, monkeypatch):
    out = tmp_path / 'm.onnx'
    buf = tmp_path / 'full.png'
    Image.new('RGB', (16, 16), 7).save(buf)
    bad = {'corrupt': ('bad.png', b'not a png'), 'truncated': ('cut.png', buf.read_bytes()[:40])}.get(kind)
    calib = _calib_folder(tmp_path / 'calib', bad)
    argv = EXPORT_TINY + ['-o', str(out), '--int8', '--calib-data', calib, '--calib-images', '4', '--check-images',
                          '2']
    if kind == 'oversize':
        _bomb_png(os.path.join(calib, 'c1', 'huge.png'), monkeypatch)
    if kind == 'channels':
        argv.insert(argv.index('num_classes=2'), 'in_chans=4')
    line = one_line_error(capsys, export_onnx.main, argv)
    expected = {'corrupt': 'bad.png', 'truncated': 'cut.png', 'oversize': 'decompression-bomb limit',
                'channels': '4 input channels'}[kind]
    assert expected in line and 'nothing was written' in line, line
    assert not out.exists()


def test_class_map_naming_a_class_without_a_folder(files, tmp_path, capsys):
    class_map = tmp_path / 'classes.txt'
    class_map.write_text('class0\nclass1\nclass7\n')
    line = one_line_error(capsys, train_main, TINY + FAST + ['--data-dir', files['data'], '--output',
                                                             str(tmp_path / 'out'), '--class-map', str(class_map)])
    assert '--class-map' in line and 'class7' in line, line
    assert not (tmp_path / 'out').exists()


def test_16_bit_images_reach_the_model_at_their_full_range(tmp_path):
    from modzoo.datasets import open_image
    from modzoo.train.data import build_dataset
    grey = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472
    os.makedirs(tmp_path / 'train' / 'a')
    Image.fromarray(grey).save(tmp_path / 'train' / 'a' / 'deep.png')
    assert Image.open(tmp_path / 'train' / 'a' / 'deep.png').mode == 'I;16'
    img = np.asarray(open_image(str(tmp_path / 'train' / 'a' / 'deep.png')))
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    np.testing.assert_allclose(img[..., 0], np.round(grey / 65535 * 255), atol=1)  # PIL's own convert: all 255
    dataset, _ = build_dataset('', str(tmp_path), 'train')
    assert np.asarray(dataset[0][0]).mean() == pytest.approx(img.mean())


def test_over_size_images_are_skipped_in_train_and_validate(files, tmp_path, capsys, caplog, monkeypatch):
    data = write_folder(tmp_path / 'data', train=4, val=2)
    bomb = os.path.join(data, 'val', 'class1', 'huge.png')
    _bomb_png(bomb, monkeypatch)
    shutil.copy(bomb, os.path.join(data, 'train', 'class0', 'huge.png'))
    with open(os.path.join(data, 'val', 'class0', 'broken.png'), 'wb') as fh:
        fh.write(b'not a png')
    out = tmp_path / 'run'
    assert train_main(TINY + FAST + ['--data-dir', data, '--output', str(out), '--epochs', '1']) == 0
    assert 'huge.png' in caplog.text and 'decompression-bomb limit' in caplog.text
    capsys.readouterr()
    assert validate_main(['--model', 'zoo_focalnet_tiny_srf', '--checkpoint', str(out / 'last.pth'), '--data-dir',
                          data, '--workers', '0', '--device', 'cpu']) == 0
    printed = capsys.readouterr().out
    assert 'on 4 images (2 unreadable skipped)' in printed, printed  # 6 files, 2 of them unreadable


def interrupted_or_failed(capsys, call, argv, rc):
    try:
        got = call(argv)
    except SystemExit as e:
        got = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == rc and len(lines) == 1 and lines[0].startswith('error: ') and 'Traceback' not in err, err
    return lines[0]


def test_ctrl_c_nan_loss_and_full_disk_are_one_line(files, tmp_path, capsys, monkeypatch):
    from modzoo.train import engine, trainer
    base = TINY + FAST + ['--data-dir', files['data'], '--val-split', 'none', '--epochs', '2']
    real_epoch = engine.train_one_epoch
    calls = []

    def interrupt_second_epoch(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(*a, **kw)
    monkeypatch.setattr(trainer, 'train_one_epoch', interrupt_second_epoch)
    out = tmp_path / 'run'
    line = interrupted_or_failed(capsys, train_main, base + ['--output', str(out)], 130)
    assert f'continues from {out / "last.pth"}' in line and '--resume auto' in line, line
    monkeypatch.setattr(trainer, 'train_one_epoch', real_epoch)
    assert train_main(base + ['--output', str(out), '--resume', 'auto']) == 0  # what the line says works

    line = one_line_error(capsys, train_main, base + ['--output', str(tmp_path / 'nan'), '--lr', '1e30'])
    assert 'the loss is nan at epoch 1, step 2/2' in line and '--lr' in line, line

    def disk_full(obj, path):
        raise RuntimeError('[enforce fail at inline_container.cc:626] . unexpected pos 128 vs 64')
    monkeypatch.setattr(trainer, 'atomic_save', disk_full)
    line = one_line_error(capsys, train_main, base + ['--output', str(tmp_path / 'full')])
    assert 'cannot write' in line and 'last.pth' in line and 'disk' in line, line
    assert '--resume' not in line and 'another --output' in line, line  # the first save failed: nothing to resume

    def no_space(self, row):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(trainer.CsvLog, 'write', no_space)
    line = one_line_error(capsys, train_main, base + ['--output', str(tmp_path / 'full_log')])
    assert 'log.csv (No space left on device): free space on that disk' in line, line


def test_pretrained_offline_or_without_weights(files, tmp_path, capsys, monkeypatch):
    import timm.models._builder as builder
    from huggingface_hub.errors import LocalEntryNotFoundError
    base = FAST + ['--data-dir', files['data'], '--output', str(tmp_path / 'out'), '--pretrained']
    line = one_line_error(capsys, train_main, base + ['--model', 'zoo_efficientmod_s'])
    assert 'no downloadable weights' in line and 'tools/get_checkpoint.py zoo_efficientmod_s --file' in line, line

    def offline(*a, **kw):
        raise LocalEntryNotFoundError('cannot find the requested files in the local cache')
    monkeypatch.setattr(builder, 'load_pretrained', offline)
    line = one_line_error(capsys, train_main, TINY + base)
    assert 'cannot download the weights of zoo_focalnet_tiny_srf' in line and '--file' in line, line
    line = one_line_error(capsys, validate_main, TINY + ['--pretrained', '--data-dir', files['data']])
    assert 'cannot download' in line and 'get_checkpoint.py' in line, line
    assert not (tmp_path / 'out').exists()


CONSTRUCTOR_CASES = [
    ('zoo_focalnet_tiny_srf', dict(embed_dim=0), "FocalNet: embed_dim=0 must be a whole number >= 1"),
    ('zoo_focalnet_tiny_srf', dict(drop_path_rate=-0.1), 'drop_path_rate=-0.1 must be a number in [0, 1)'),
    ('zoo_focalnet_tiny_srf', dict(drop_path_rate=1.5), 'drop_path_rate=1.5 must be a number in [0, 1)'),
    ('zoo_focalnet_tiny_srf', dict(focal_levels=(0, 2, 2, 2)), 'focal_levels=(0, 2, 2, 2) must be'),
    ('zoo_gridpe_pvt_v2_b0', dict(img_size='224'), "img_size='224' must be a whole number >= 1 or a (height, width)"),
    ('zoo_gridpe_pvt_v1_tiny', dict(num_heads=(1, 0, 5, 8)), 'num_heads=(1, 0, 5, 8)'),
    ('zoo_smt_tiny', dict(depths=()), 'SMT: depths=() must be a non-empty sequence'),
    ('zoo_smt_tiny', dict(attn_drop_rate=float('nan')), 'attn_drop_rate=nan must be a number in [0, 1)'),
    ('zoo_efficientmod_xxs', dict(in_chans=0), 'EfficientMod: in_chans=0 must be a whole number >= 1'),
    ('zoo_efficientmod_xxs', dict(num_classes=-1), 'num_classes=-1 must be a whole number >= 0'),
]


@pytest.mark.parametrize('name,kwargs,message', CONSTRUCTOR_CASES,
                         ids=[f'{c[0]}-{next(iter(c[1]))}' for c in CONSTRUCTOR_CASES])
def test_constructors_name_the_bad_argument_and_its_range(name, kwargs, message):
    with pytest.raises(ValueError) as e:
        modzoo.create_model(name, **kwargs)
    assert message in str(e.value), str(e.value)


def test_mm_backbone_out_indices_are_checked():
    pytest.importorskip('mmengine')
    from modzoo.mm.backbone import ModzooBackbone
    kw = dict(embed_dim=8, depths=(1, 1, 1, 1))
    for bad, says in (((), '[-4, 3]'), ((0, 4), '[-4, 3]'), ((1, 1), 'distinct'), ('0', 'non-empty sequence')):
        with pytest.raises(ValueError, match='out_indices') as e:
            ModzooBackbone('zoo_focalnet_tiny_srf', out_indices=bad, **kw)
        assert says in str(e.value) and 'ModzooBackbone(zoo_focalnet_tiny_srf)' in str(e.value), str(e.value)
    assert ModzooBackbone('zoo_focalnet_tiny_srf', out_indices=(1, 3), **kw).out_indices == (1, 3)


def test_ctrl_c_in_export_and_validate(files, tmp_path, capsys, monkeypatch):
    from modzoo.export import onnx as zoo_onnx
    from modzoo.train import validate

    def interrupt(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(zoo_onnx, 'export_onnx', interrupt)
    line = interrupted_or_failed(capsys, export_onnx.main, EXPORT_TINY + ['-o', str(tmp_path / 'm.onnx')], 130)
    assert 'interrupted; nothing was written' in line and not (tmp_path / 'm.onnx').exists()
    monkeypatch.setattr(validate, 'evaluate', interrupt)
    weights = tmp_path / 'w.pth'
    torch.save(modzoo.create_model('zoo_focalnet_tiny_srf', embed_dim=8, depths=(1, 1, 1, 1), num_classes=2)
               .state_dict(), weights)
    line = interrupted_or_failed(capsys, validate_main, TINY + ['--checkpoint', str(weights), '--data-dir',
                                                                files['data'], '--workers', '0'], 130)
    assert 'interrupted; nothing was written' in line


def test_nan_advice_names_only_a_flag_the_running_tool_has(files, tmp_path, capsys):
    """validate.py offers --allow-non-finite (and honours it); a caller without such a flag offers none."""
    from modzoo.train.validate import build_validate_parser, load_model_for_inference
    model = modzoo.create_model('zoo_focalnet_tiny_srf', embed_dim=8, depths=(1, 1, 1, 1), num_classes=2)
    sd = dict(model.state_dict(), **{'head.fc.bias': torch.tensor([float('nan'), 0.])})
    nan = tmp_path / 'nan.pth'
    torch.save({'state_dict': sd}, nan)
    argv = TINY + ['--checkpoint', str(nan), '--data-dir', files['data'], '--workers', '0']
    line = one_line_error(capsys, validate_main, argv)
    assert 'NaN/Inf' in line and 'pass --allow-non-finite to load it anyway' in line
    assert '--allow-non-finite' in build_validate_parser().format_help()
    assert validate_main(argv + ['--allow-non-finite']) == 0
    with pytest.raises(CheckpointFileError) as err:  # visualize / int8_accuracy / main_job have no such flag
        load_model_for_inference('zoo_focalnet_tiny_srf', str(nan), model_kwargs=TINY[3:])
    assert 'NaN/Inf' in str(err.value) and 'pass' not in str(err.value).split('diverged')[1]
