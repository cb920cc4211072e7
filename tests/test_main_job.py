"""The README's main job (``modzoo.main_job``, run as tools/main_job.py).

The full job (15 epochs, target 95% top-1, zoo report) is beyond this suite's time budget, so the default test runs
the same job shortened: fewer epochs, a lower target, no zoo report (tests/test_zoo_report.py covers that step).
The full job asserts its own target and fails otherwise; ``MODZOO_SLOW=1`` runs it here too.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from modzoo import main_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_shortened_main_job(tmp_path, keep_threads, capsys):
    work = str(tmp_path / 'job')
    assert main_job.main(['--work-dir', work, '--epochs', '4', '--target-top1', '85', '--no-report',
                          '--no-dense']) == 0
    printed = capsys.readouterr().out
    assert 'all checks passed' in printed and 'dense            skipped' in printed
    with open(os.path.join(work, 'summary.json')) as f:
        s = json.load(f)
    assert s['data']['train_images'] == 1438 and s['data']['val_images'] == 359
    assert s['validate']['top1'] >= 85.0 and s['validate']['images'] == 359
    assert s['onnx']['passed'] and s['onnx']['max_abs_diff'] <= 1e-4
    assert abs(s['onnx']['ort_top1'] - s['validate']['top1']) <= 0.3
    # int8: the fp32 figure it is compared with is the ONNX Runtime top-1 above, on the same 359 images
    assert abs(s['int8']['fp32_ort_top1'] - s['onnx']['ort_top1']) < 1e-9
    assert s['int8']['top1_drop'] <= 1.0 and s['int8']['size_mib'] < 0.5 * s['int8']['fp32_size_mib']
    assert 'int8 ONNX        top-1' in printed
    assert os.path.isfile(os.path.join(work, 'modulation.png'))
    assert os.path.isfile(os.path.join(work, 'train', 'best.pth')) and not s['failures']

    # the job fails (exit 1, with the reason) when the model misses its target; the data folder is reused
    assert main_job.main(['--work-dir', work, '--epochs', '1', '--target-top1', '99.9', '--no-report',
                          '--no-dense']) == 1
    assert 'FAILED: validation top-1' in capsys.readouterr().out


def test_dense_stage_prints_its_figures_and_reports_a_missed_goal(tmp_path, monkeypatch, capsys):
    pytest.importorskip('mmseg')
    pytest.importorskip('mmdet')
    from modzoo.bench import dense
    seg, det = dense.MAIN_JOB_RUNS
    results = {seg: {'mIoU': 69.5, 'train_s': 200.0}, det: {'coco/bbox_mAP': 0.61, 'coco/bbox_mAP_50': 0.93,
                                                            'train_s': 100.0}}
    calls = []
    monkeypatch.setattr(dense, 'write_dense_digits', lambda root, **kwargs: None)  # the writer has its own tests
    monkeypatch.setattr(dense, 'run_dense', lambda name, *args, **kwargs: calls.append(name) or results[name])
    out = main_job.dense_step(str(tmp_path))
    assert sorted(calls) == sorted(dense.MAIN_JOB_RUNS) and out['results'] == results  # two at a time
    assert out['missed'] == [f'{seg}: mIoU 69.5 < 70.0']  # the job adds it to its failures and exits 1
    printed = capsys.readouterr().out
    assert f'{seg}: mIoU 69.5 (goal >= 70), trained in 200s' in printed
    assert f'{det}: bbox AP 0.610, AP50 0.930 (goals >= 0.5 / 0.85), trained in 100s' in printed


def test_report_goes_under_the_work_dir_unless_the_docs_are_asked_for(tmp_path):
    from modzoo.bench.zoo_report import CACHE_FILE, DOCS
    work = str(tmp_path / 'job')
    report_dir = main_job.report_dir_for(main_job.build_parser().parse_args(['--work-dir', work]), work)
    assert report_dir == os.path.join(work, 'zoo_report')  # under output/ by default, ignored by git
    with open(os.path.join(DOCS, CACHE_FILE)) as committed, open(os.path.join(report_dir, CACHE_FILE)) as copy:
        assert json.load(copy) == json.load(committed)  # only what is new or stale here gets measured
    # a cache the report dir already has is the user's: kept as it is
    with open(os.path.join(report_dir, CACHE_FILE), 'w') as f:
        f.write('{}')
    assert main_job.report_dir_for(main_job.build_parser().parse_args([]), work) == report_dir
    assert open(os.path.join(report_dir, CACHE_FILE)).read() == '{}'
    assert main_job.report_dir_for(main_job.build_parser().parse_args(['--update-docs']), work) == DOCS
    with pytest.raises(SystemExit):
        main_job.build_parser().parse_args(['--update-docs', '--no-report'])


def test_flop_counting_prints_no_deprecation_warning():
    """fvcore scripts its focal loss at import; the zoo report (a step of the main job) counts FLOPs with it."""
    code = ('import torch.nn as nn\nfrom modzoo.utils.flops import count_flops\n'
            'print(count_flops(nn.Conv2d(3, 4, 3), (3, 8, 8))[1])\n')
    r = subprocess.run([sys.executable, '-W', 'default', '-c', code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == '112', r.stderr
    assert 'Warning' not in r.stderr, r.stderr


@pytest.mark.slow
def test_full_main_job_command(tmp_path):
    """The README command as it runs from a fresh clone (report into a copy of the committed docs)."""
    report = tmp_path / 'docs'
    shutil.copytree(os.path.join(ROOT, 'docs'), report)
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'main_job.py'), '--work-dir',
                        str(tmp_path / 'job'), '--report-dir', str(report)], cwd=ROOT, capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    with open(tmp_path / 'job' / 'summary.json') as f:
        s = json.load(f)
    assert s['validate']['top1'] >= main_job.TARGET_TOP1 and s['onnx']['passed']
