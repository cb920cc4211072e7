"""Two-process ``torchrun`` training on CPU (gloo): trains, evaluates with metrics reduced across ranks, writes its
checkpoints, and only rank 0 writes anything into the run folder."""
import csv
import json
import os
import socket
import subprocess
import sys

import torch

from modzoo.train.validate import build_validate_parser, run_validation

from test_train import write_pattern_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Records, per rank, every file the process opens for writing, renames or creates inside the run folder (Python audit
# events, so nothing in the trainer is patched), then runs the trainer.
AUDITED_TRAIN = r'''
import atexit, json, os, sys
run_dir = os.path.realpath(sys.argv[1])
log_path, argv = sys.argv[2], sys.argv[3:]
writes = []
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def inside(path):
    try:
        return os.path.realpath(os.fsdecode(path)).startswith(run_dir)
    except (TypeError, ValueError):
        return False

def audit(event, args):
    if event == 'open' and isinstance(args[0], (str, bytes, os.PathLike)) and inside(args[0]):
        mode, flags = args[1], args[2]
        if (mode and any(c in mode for c in 'wax+')) or (not mode and flags & WRITE_FLAGS):
            writes.append(['open', os.fsdecode(args[0])])
    elif event in ('os.rename', 'os.replace', 'shutil.copyfile'):
        writes.extend([event, os.fsdecode(p)] for p in args[:2] if inside(p))
    elif event in ('os.mkdir', 'os.remove') and inside(args[0]):
        writes.append([event, os.fsdecode(args[0])])

sys.addaudithook(audit)
atexit.register(lambda: open(f'{log_path}.rank{os.environ["RANK"]}.json', 'w').write(json.dumps(writes)))
from modzoo.train.trainer import main
sys.exit(main(argv))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_gloo(tmp_path):
    data = write_pattern_folder(tmp_path / 'data', train=8, val=5)  # 24 train, 15 val images (odd per rank)
    run_dir = tmp_path / 'run'
    script = tmp_path / 'audited_train.py'
    script.write_text(AUDITED_TRAIN)
    log = str(tmp_path / 'writes')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--nnodes', '1',
           '--master_addr', '127.0.0.1', '--master_port', str(_free_port()), str(script), str(run_dir), log,
           '--model', 'zoo_focalnet_tiny_srf', '--model-kwargs', 'embed_dim=8', 'depths=(1,1,1,1)',
           '--data-dir', data, '--output', str(run_dir), '--epochs', '2', '-b', '4', '--img-size', '32',
           '--crop-pct', '1.0', '--lr', '3e-3', '--warmup-epochs', '0', '--workers', '0', '--threads', '1',
           '--device', 'cpu', '--progress', 'off']
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1')
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    # one run folder, one checkpoint set, one CSV row per epoch: rank 1 never wrote
    assert sorted(os.listdir(run_dir)) == ['args.yaml', 'best.pth', 'last.pth', 'log.csv']
    with open(log + '.rank1.json') as f:
        assert json.load(f) == []
    with open(log + '.rank0.json') as f:
        written = {os.path.basename(p) for _, p in json.load(f)}
    assert {'last.pth', 'log.csv', 'args.yaml'} <= written
    with open(run_dir / 'log.csv') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['epoch']) for r in rows] == [0, 1]
    assert r.stdout.count('epoch 2/2') == 1  # progress lines from rank 0 only

    ckpt = torch.load(run_dir / 'last.pth', weights_only=True)
    assert ckpt['world_size'] == 2 and ckpt['steps_per_epoch'] == 12 // 4 and len(ckpt['rng']) == 2
    # the evaluation summed counts over both ranks: a single process sees the same top-1 on all 15 images
    args = build_validate_parser().parse_args(['--model', 'zoo_focalnet_tiny_srf', '--checkpoint',
                                               str(run_dir / 'last.pth'), '--data-dir', data, '--workers', '0'])
    result = run_validation(args)
    assert result['images'] == 15
    assert abs(result['top1'] - float(rows[-1]['eval_top1'])) < 1e-3
    assert abs(result['loss'] - float(rows[-1]['eval_loss'])) < 1e-4
