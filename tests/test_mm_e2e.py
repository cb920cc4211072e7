"""End to end through tools/train_{seg,det}.py and tools/test_{seg,det}.py on the tiny datasets.

For one segmentation and one detection config per family: a few training iterations on the tiny ADE20K / COCO
copies, evaluation through the real evaluators (mmseg IoUMetric: mIoU; mmdet CocoMetric: bbox and segm AP), a
checkpoint written. For FocalNet also: ``--resume`` continues from that checkpoint, and the test tools read it.
The command lines are the tools' own (``modzoo.mm.cli``'s ``train_main``/``test_main`` with an argv), run
in-process.
"""
import os
import sys

import pytest
import timm
import torch

pytest.importorskip('mmseg')
pytest.importorskip('mmdet')
pytestmark = pytest.mark.mm

from modzoo.mm import cli  # noqa: E402
from modzoo.mm.checkpoint_compat import mmengine_checkpoint_globals  # noqa: E402
from modzoo.mm.cli import train_main  # noqa: E402
import mm_testing  # noqa: E402
from mm_testing import ROOT, one_thread_fast_parsing  # noqa: E402,F401  (autouse fixture)

tiny_root = mm_testing.tiny_root  # fixture

SEG = {
    'focalnet': 'focalnet/upernet_focalnet-t-srf_8xb2-160k_ade20k-512x512.py',
    'smt': 'smt/upernet_smt-s_8xb2-160k_ade20k-512x512.py',
    'efficientmod': 'efficientmod/fpn_efficientmod-s_8xb4-40k_ade20k-512x512.py',
    'gridpe_pvt': 'gridpe_pvt/upernet_gridpe-pvt-v2-b2_8xb2-160k_ade20k-512x512.py',
}
DET = {
    'focalnet': 'focalnet/mask-rcnn_focalnet-t-srf_fpn_ms-crop-1x_coco.py',
    'smt': 'smt/mask-rcnn_smt-s_fpn_1x_coco.py',
    'efficientmod': 'efficientmod/mask-rcnn_efficientmod-s_fpn_1x_coco.py',
    'gridpe_pvt': 'gridpe_pvt/mask-rcnn_gridpe-pvt-v2-b2_fpn_1x_coco.py',
}
# the tiny images shrink by 16: 32x32 segmentation crops, ~50x60 COCO images
TINY = ['--tiny-scale', '16']



def _config(relpath: str) -> str:
    return os.path.join(ROOT, 'configs', relpath)


def _require(config: str):
    with open(_config(config)) as f:
        text = f.read()
    name = text.split("model_name='")[1].split("'")[0]
    if name not in timm.list_models('zoo_*'):
        pytest.skip(f'{name} is not registered (family not landed)')


def _val_metric(runner, key: str) -> float:
    return runner.message_hub.get_scalar(f'val/{key}').current()


def _train(config, work_dir, tiny_root, scope, *options, resume=False):
    argv = [_config(config), '--work-dir', str(work_dir), '--tiny', tiny_root, *TINY]
    if resume:
        argv.append('--resume')
    argv += ['--cfg-options', f'experiment_name={os.path.basename(str(work_dir))}_{int(resume)}', *options]
    return train_main(scope, argv)


@pytest.fixture(scope='module')
def focalnet_seg_run(tiny_root, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('focalnet_seg')
    runner = _train(SEG['focalnet'], work_dir, tiny_root, 'mmseg', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2')
    return runner, work_dir


@pytest.fixture(scope='module')
def focalnet_det_run(tiny_root, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('focalnet_det')
    runner = _train(DET['focalnet'], work_dir, tiny_root, 'mmdet', 'train_cfg.max_epochs=1')
    return runner, work_dir


def _check_seg(runner, work_dir, iters):
    assert runner.iter == iters
    assert 0.0 <= _val_metric(runner, 'mIoU') <= 100.0
    assert os.path.isfile(os.path.join(work_dir, f'iter_{iters}.pth'))


def _check_det(runner, work_dir):
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert 0.0 <= _val_metric(runner, key) <= 1.0, key
    assert os.path.isfile(os.path.join(work_dir, 'epoch_1.pth'))


def test_focalnet_seg_trains_and_evaluates(focalnet_seg_run):
    _check_seg(*focalnet_seg_run, iters=2)


def test_focalnet_det_trains_and_evaluates(focalnet_det_run):
    _check_det(*focalnet_det_run)


@pytest.mark.parametrize('family', ['smt', 'efficientmod', 'gridpe_pvt'])
def test_seg_trains_and_evaluates(family, tiny_root, tmp_path):
    _require(SEG[family])
    runner = _train(SEG[family], tmp_path, tiny_root, 'mmseg', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2')
    _check_seg(runner, tmp_path, iters=2)


@pytest.mark.parametrize('family', ['smt', 'efficientmod', 'gridpe_pvt'])
def test_det_trains_and_evaluates(family, tiny_root, tmp_path):
    _require(DET[family])
    runner = _train(DET[family], tmp_path, tiny_root, 'mmdet', 'train_cfg.max_epochs=1')
    _check_det(runner, tmp_path)


def test_resume_continues_from_checkpoint(focalnet_seg_run, tiny_root):
    """``--resume`` (no value: the latest checkpoint in the work dir) restores weights, optimizer and iteration."""
    first, work_dir = focalnet_seg_run
    with mmengine_checkpoint_globals():
        saved = torch.load(os.path.join(work_dir, 'iter_2.pth'), map_location='cpu')
    assert saved['meta']['iter'] == 2

    runner = _train(SEG['focalnet'], work_dir, tiny_root, 'mmseg', 'train_cfg.max_iters=3', 'train_cfg.val_interval=3',
                    resume=True)
    assert runner.iter == 3  # one more iteration, not three from scratch
    with mmengine_checkpoint_globals():
        resumed = torch.load(os.path.join(work_dir, 'iter_3.pth'), map_location='cpu')
    # AdamW's step counter continues from the checkpoint's 2 (a fresh run would be at 1)
    steps = {float(s['step']) for s in resumed['optimizer']['state'].values()}
    assert steps == {3.0}
    assert resumed['meta']['iter'] == 3


def test_test_tools_read_the_checkpoints(focalnet_seg_run, focalnet_det_run, tiny_root, tmp_path):
    _, seg_dir = focalnet_seg_run
    metrics = cli.test_main('mmseg', [
        _config(SEG['focalnet']), os.path.join(seg_dir, 'iter_2.pth'), '--work-dir', str(tmp_path / 'seg'),
        '--tiny', tiny_root, *TINY, '--out', str(tmp_path / 'pred'), '--show-dir', str(tmp_path / 'seg_show'),
        '--cfg-options', 'experiment_name=test_seg'])
    assert 'mIoU' in metrics
    assert sorted(os.listdir(tmp_path / 'pred')) == ['ADE_val_00000001.png', 'ADE_val_00000002.png']
    painted = [f for _, _, files in os.walk(tmp_path / 'seg_show') for f in files if f.endswith('.png')]
    assert len(painted) == 2
    with pytest.raises(FileNotFoundError):  # the checkpoint is really read
        cli.test_main('mmseg', [
            _config(SEG['focalnet']), str(tmp_path / 'missing.pth'), '--work-dir', str(tmp_path / 'x'),
            '--tiny', tiny_root, *TINY, '--cfg-options', 'experiment_name=test_missing'])

    _, det_dir = focalnet_det_run
    out = str(tmp_path / 'det.pkl')
    metrics = cli.test_main('mmdet', [
        _config(DET['focalnet']), os.path.join(det_dir, 'epoch_1.pth'), '--work-dir', str(tmp_path / 'det'),
        '--tiny', tiny_root, *TINY, '--out', out, '--show-dir', str(tmp_path / 'det_show'),
        '--cfg-options', 'experiment_name=test_det'])
    assert 'coco/bbox_mAP' in metrics and 'coco/segm_mAP' in metrics
    assert os.path.getsize(out) > 0
    assert len(os.listdir(tmp_path / 'det_show')) == 2


@pytest.mark.slow
def test_torchrun_launcher_pytorch(tiny_root, tmp_path):
    """``torchrun ... --launcher pytorch`` (2 processes; on a CPU-only machine through gloo, see _cpu_distributed)."""
    import subprocess
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=29561',
           os.path.join(ROOT, 'tools', 'train_seg.py'), _config(SEG['efficientmod']), '--launcher', 'pytorch',
           '--tiny', tiny_root, *TINY, '--work-dir', str(tmp_path),
           '--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2']
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Distributed training: True' in result.stdout + result.stderr
    assert os.path.isfile(tmp_path / 'iter_2.pth')


@pytest.mark.parametrize('tool', ['test_det', 'make_tiny_datasets', 'analysis/get_flops'])
def test_tool_shims_answer_help(tool):
    """The README's ``python tools/<tool>.py`` commands reach their package command lines (one shim per package
    module: the four train/test shims have one shape, and train_seg.py runs for real in the torchrun test)."""
    import subprocess
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', f'{tool}.py'), '--help'], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith(f'usage: {os.path.basename(tool)}.py ')
