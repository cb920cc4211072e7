"""Interrupted training: SIGKILL after a checkpoint or in the middle of writing one, resume, finish.

The resumed runs must end with exactly the weights, EMA weights and optimizer state of an uninterrupted run with the
same seed (deterministic CPU settings, random augmentation, mixup/cutmix, drop path and EMA all on), and a kill during a
checkpoint write must never leave a corrupt ``last.pth``.
"""
import csv
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from modzoo.train.checkpoint import atomic_save, remove_stale_temporaries

from test_train import write_pattern_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs the trainer with its checkpoint writer patched to SIGKILL the process after the N-th save of last.pth
# ('after'), or in the middle of writing the N-th one ('during': half a file written, then killed).
KILLER = r'''
import os, signal, sys
mode, nth, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
import torch
import modzoo.train.trainer as trainer
from modzoo.train.checkpoint import atomic_save
count = [0]

def killing_save(obj, path):
    if os.path.basename(path) != 'last.pth':
        return atomic_save(obj, path)
    count[0] += 1
    if count[0] != nth:
        return atomic_save(obj, path)
    if mode == 'after':
        atomic_save(obj, path)
        os.kill(os.getpid(), signal.SIGKILL)
    def dying_save(o, f, *args, **kwargs):
        f.write(b'PK\x03\x04' + b'\0' * 4096)  # the start of a zip archive, then death
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    torch.save = dying_save
    atomic_save(obj, path)

trainer.atomic_save = killing_save
sys.exit(trainer.main(argv))
'''

ARGS = ['--model', 'zoo_focalnet_tiny_srf', '--model-kwargs', 'embed_dim=8', 'depths=(1,1,1,1)', '--img-size', '32',
        '--crop-pct', '1.0', '--threads', '1', '--deterministic', '--epochs', '3', '-b', '4', '--lr', '3e-3',
        '--warmup-epochs', '1', '--aa', 'rand-m9-mstd0.5-inc1', '--reprob', '0.25', '--mixup', '0.8', '--cutmix',
        '1.0', '--drop-path', '0.1', '--model-ema', '--model-ema-decay', '0.9', '--checkpoint-interval', '3',
        '--seed', '7', '--progress', 'off']


def _run(cmd, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    return subprocess.run([sys.executable] + cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          **kw)


def _train(data, out, workers, extra=()):
    r = _run([os.path.join(ROOT, 'tools', 'train.py'), '--data-dir', data, '--output', out, '--workers',
              str(workers)] + ARGS + list(extra))
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def _csv(path):
    with open(path) as f:
        return [{k: v for k, v in row.items() if k not in ('epoch_seconds', 'train_samples_per_s')}
                for row in csv.DictReader(f)]


def _assert_same_state(a_path, b_path):
    a = torch.load(a_path, weights_only=True)
    b = torch.load(b_path, weights_only=True)
    assert (a['epoch'], a['step']) == (b['epoch'], b['step'])
    for key in ('state_dict', 'state_dict_ema'):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f'{key}.{k} differs after resume'
    for idx, state in a['optimizer']['state'].items():
        for k, v in state.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b['optimizer']['state'][idx][k])), (idx, k)


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('resume')
    data = write_pattern_folder(root / 'data')
    out = str(root / 'uninterrupted')
    _train(data, out, workers=1)
    return data, out


def test_sigkill_after_first_checkpoint_then_resume_matches(reference_run, tmp_path):
    data, ref = reference_run
    out = str(tmp_path / 'killed')
    r = _run(['-c', KILLER, 'after', '1', '--data-dir', data, '--output', out, '--workers', '1'] + ARGS)
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    first = torch.load(os.path.join(out, 'last.pth'), weights_only=True)
    assert (first['epoch'], first['batch_in_epoch']) == (0, 3)  # killed mid-epoch, right after the first save
    assert not os.path.exists(os.path.join(out, 'log.csv')) or not _csv(os.path.join(out, 'log.csv'))
    # resume with another worker count: the data stream depends on the position only
    resumed = _train(data, out, workers=0, extra=['--resume', 'auto'])
    assert 'resumed from' in resumed.stdout and 'epoch 0, batch 3/4' in resumed.stdout
    _assert_same_state(os.path.join(ref, 'last.pth'), os.path.join(out, 'last.pth'))
    assert _csv(os.path.join(ref, 'log.csv')) == _csv(os.path.join(out, 'log.csv'))


def test_sigkill_while_writing_checkpoint_keeps_last_intact(reference_run, tmp_path):
    data, ref = reference_run
    out = str(tmp_path / 'killed')
    r = _run(['-c', KILLER, 'during', '3', '--data-dir', data, '--output', out, '--workers', '1'] + ARGS)
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    partial = glob.glob(os.path.join(out, '.last.pth.*.partial'))
    assert len(partial) == 1 and os.path.getsize(partial[0]) > 0  # the interrupted write
    last = torch.load(os.path.join(out, 'last.pth'), weights_only=True)  # the previous checkpoint, complete
    assert (last['epoch'], last['batch_in_epoch']) == (1, 0)
    _train(data, out, workers=1, extra=['--resume', os.path.join(out, 'last.pth')])
    assert not glob.glob(os.path.join(out, '.*.partial'))  # the stale temporary was cleaned up
    _assert_same_state(os.path.join(ref, 'last.pth'), os.path.join(out, 'last.pth'))
    assert _csv(os.path.join(ref, 'log.csv')) == _csv(os.path.join(out, 'log.csv'))


def test_atomic_save_killed_from_outside_mid_write(tmp_path):
    path = str(tmp_path / 'last.pth')
    atomic_save({'v': torch.ones(3)}, path)
    script = ('import torch; from modzoo.train.checkpoint import atomic_save; '
              f'atomic_save({{"v": torch.zeros(100_000_000)}}, {path!r})')
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, '-c', script], env=env)
    pattern = os.path.join(str(tmp_path), '.last.pth.*.partial')
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        tmps = glob.glob(pattern)
        if tmps and os.path.getsize(tmps[0]) > 1_000_000:
            break
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the writer finished before it could be killed'
    assert torch.equal(torch.load(path, weights_only=True)['v'], torch.ones(3))
    assert remove_stale_temporaries(path) == 1 and not glob.glob(pattern)
