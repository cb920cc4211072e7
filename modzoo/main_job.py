"""The main job: the whole zoo working end to end on 2 CPU cores, with no download.

    .venv/bin/python tools/main_job.py      # or: modzoo-main-job

1. **Data**: scikit-learn's handwritten digits (shipped inside the scikit-learn wheel: 1,797 8x8 greyscale images,
   10 classes), upsampled to 32x32 RGB and written as an ImageFolder (``train``/``val``, stratified 80/20, seed 0;
   ``modzoo.datasets``).
2. **Train** a small modzoo model with the real training code (``modzoo.train``, what ``tools/train.py`` runs):
   AdamW + warmup + cosine, label smoothing, random-resized crops, EMA, atomic checkpoints.
3. **Validate** ``best.pth`` with the validation tool (``modzoo.train.validate``, what ``tools/validate.py`` runs):
   top-1 must reach ``--target-top1`` (the job fails otherwise).
4. **Export** the trained model to ONNX with a dynamic batch and check it in ONNX Runtime: logits within 1e-4 of
   PyTorch at batch 1 and 3, and the same validation top-1 from ONNX Runtime. Then **quantize** it to int8 (static
   QDQ, per-channel weights, calibrated on training images) and report its validation top-1 next to fp32's and its
   top-1 agreement with fp32 (goal: at most ``--int8-max-drop`` points lost).
5. **Visualise** the modulator/gate maps of one validation digit (``modzoo.visualize``, what
   ``tools/visualize_modulation.py`` runs).
6. **Dense stage** (with OpenMMLab installed: ``tools/setup_env.sh --mm``): scikit-learn's digits composed on
   canvases (``modzoo.dense_digits``), one segmentation family and one detector trained and tested with the stock
   mmseg/mmdet tools (``modzoo.bench.dense.run_dense_stage``); mIoU >= 70 and bbox AP >= 0.50 / AP50 >= 0.85 must be
   reached (the job fails otherwise). Without OpenMMLab the stage is skipped and says so; ``--no-dense`` skips it.
7. **Zoo report**: ``modzoo.bench.zoo_report`` (``tools/zoo_report.py``) writes ``zoo.md`` and its plots for every
   registered model into ``<work-dir>/zoo_report``, starting from the committed measurements
   (``docs/zoo_measurements.json``) so only what is new or stale here is measured.

Everything goes to ``--work-dir`` (default ``output/main_job`` under the working directory, ignored by git;
``summary.json`` holds every figure printed at the end): the job leaves the checkout as it was. The tracked report in
``docs/`` changes only when asked: ``--update-docs`` here, or ``tools/zoo_report.py`` on its own.
The exit status is 0 only when every check passed.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

__all__ = ['MODEL', 'IMG_SIZE', 'TARGET_TOP1', 'RECIPE', 'EPOCHS', 'build_parser', 'val_loader', 'held_out_set',
           'export_and_check', 'onnx_accuracy', 'main']

# The job's model and recipe. zoo_efficientmod_xxs is the smallest registered variant, trained unmodified (4.7M
# parameters; at 32x32 its stages see 8x8 .. 1x1 maps). One torch thread plus one data-loader process keeps both
# cores busy without the thread spin-waiting that a second intra-op thread causes on a shared machine.
MODEL = 'zoo_efficientmod_xxs'
IMG_SIZE = 32
TARGET_TOP1 = 95.0
RECIPE = [
    '--img-size', str(IMG_SIZE), '--crop-pct', '1.0', '--mean', '0.5', '0.5', '0.5', '--std', '0.5', '0.5', '0.5',
    # digits are not mirror-symmetric and carry no colour: small crops/zooms only
    '--scale', '0.85', '1.0', '--ratio', '0.9', '1.1', '--hflip', '0', '--color-jitter', 'none', '--aa', 'none',
    '--smoothing', '0.1', '--reprob', '0',
    '--opt', 'adamw', '--lr', '3e-3', '--weight-decay', '0.05', '--warmup-epochs', '1', '--warmup-lr', '1e-4',
    '--min-lr', '1e-5', '--clip-grad', '5.0',
    '--model-ema', '--model-ema-decay', '0.99', '--model-ema-warmup',
    '-b', '64', '--log-interval', '1000',
]
EPOCHS = 15


class Steps:
    def __init__(self):
        self.timings = {}
        self.start = time.perf_counter()

    def run(self, name: str, fn, *args, **kwargs):
        print(f'\n== {name}', flush=True)
        t = time.perf_counter()
        result = fn(*args, **kwargs)
        self.timings[name] = round(time.perf_counter() - t, 1)
        return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--work-dir', default=os.path.abspath(os.path.join('output', 'main_job')))
    p.add_argument('--model', default=MODEL)
    p.add_argument('--model-kwargs', nargs='*', default=None, metavar='KEY=VALUE')
    p.add_argument('--epochs', type=int, default=EPOCHS)
    p.add_argument('--target-top1', type=float, default=TARGET_TOP1,
                   help='validation top-1 (%%) the trained model must reach')
    p.add_argument('--seed', type=int, default=0, help='training seed (data order, augmentation, init)')
    p.add_argument('--threads', type=int, default=1, help='torch threads for training')
    p.add_argument('--workers', type=int, default=1, help='data-loader processes')
    p.add_argument('--int8-calib-images', type=int, default=256, help='training images that calibrate int8')
    p.add_argument('--int8-max-drop', type=float, default=1.0,
                   help='top-1 points the int8 graph may lose against fp32 ONNX Runtime before the job fails')
    p.add_argument('--report-budget-s', type=float, default=900,
                   help='time limit for measuring models the committed zoo report does not cover yet')
    p.add_argument('--no-dense', action='store_true',
                   help='skip the dense stage (segmentation and detection on the dense digits, OpenMMLab)')
    report = p.add_mutually_exclusive_group()
    report.add_argument('--no-report', action='store_true', help='skip the zoo report step')
    report.add_argument('--report-dir', default=None,
                        help='where the zoo report (zoo.md, plots, measurement cache) is written (default: '
                             '<work-dir>/zoo_report, starting from the committed measurements)')
    report.add_argument('--update-docs', action='store_true',
                        help='write the zoo report into the tracked docs/ instead (this machine\'s figures)')
    return p


# ----------------------------------------------------------------------------------------------------------------
# the steps


def val_loader(cfg: dict, data_dir: str):
    """The validation split in file order, with the model's evaluation transform."""
    from modzoo.train.data import ResumableShardSampler, build_dataset, build_loader, build_transforms
    _, eval_tf = build_transforms(cfg)
    ds, _ = build_dataset('', data_dir, 'val')
    ds.transform = eval_tf
    return build_loader(ds, ResumableShardSampler(len(ds), shuffle=False, pad=False), 64, 0, False)


def held_out_set(cfg: dict, data_dir: str):
    """The validation split as the int8 checks' held-out set (a :class:`modzoo.export.quantize.CalibrationSet`):
    exactly the images, and preprocessing, that the fp32 top-1 is measured on."""
    import torch

    from modzoo.export.quantize import CalibrationSet
    batches = list(val_loader(cfg, data_dir))
    return CalibrationSet(torch.cat([x for x, _ in batches]).numpy(), torch.cat([y for _, y in batches]).numpy(),
                          [str(i) for i in range(10)], 'digits val')


def train_step(args, data_dir: str, run_dir: str) -> dict:
    from modzoo.train.config import parse_train_args
    from modzoo.train.trainer import train
    train_argv = ['--model', args.model, '--data-dir', data_dir, '--output', run_dir, '--epochs', str(args.epochs),
                  '--threads', str(args.threads), '--workers', str(args.workers), '--seed', str(args.seed)] + RECIPE
    if args.model_kwargs:
        train_argv += ['--model-kwargs'] + list(args.model_kwargs)
    # a fresh run each time: the job demonstrates training, not resuming an earlier job's run
    for name in ('last.pth', 'best.pth', 'log.csv'):
        if os.path.exists(os.path.join(run_dir, name)):
            os.remove(os.path.join(run_dir, name))
    return train(parse_train_args(train_argv))


def validate_step(args, checkpoint: str, data_dir: str) -> dict:
    from modzoo.train.validate import build_validate_parser, run_validation
    vargs = build_validate_parser().parse_args([
        '--model', args.model, '--checkpoint', checkpoint, '--data-dir', data_dir, '--workers', str(args.workers),
        '--threads', str(args.threads)])
    return run_validation(vargs)


def export_and_check(model, path: str, img_size: Tuple[int, int]) -> Dict[str, Any]:
    """Export ``model`` to ``path`` with a dynamic batch and compare ORT with PyTorch at batch 1 and 3.

    Returns ``{'backend', 'path', 'max_abs_diff', 'passed', 'export_seconds', 'runs'}`` (plain values, for JSON).
    """
    import copy

    from modzoo.export import export_onnx
    from modzoo.export.deploy import prepare_for_export
    from modzoo.export.onnx import DEFAULT_SIMPLIFY
    model = model.eval()
    start = time.perf_counter()
    # the graph tools/export_onnx.py writes by default (deploy forms, onnxslim), checked against the eager model;
    # exported at batch 2 so the batch dimension stays symbolic; the check runs batches 1 and 3 at the export size
    lean = prepare_for_export(copy.deepcopy(model), 'onnx')
    result = export_onnx(lean, path, img_size=tuple(img_size), batch=2, dynamic='batch', check=True,
                         simplify=DEFAULT_SIMPLIFY, reference=model)
    report = result.check
    return {'backend': 'modzoo.export', 'path': result.path, 'max_abs_diff': float(report.max_abs_diff),
            'passed': bool(report.passed), 'export_seconds': time.perf_counter() - start,
            'runs': [(r.inputs, r.batch, list(r.size), r.max_abs_diff) for r in report.runs]}


def onnx_accuracy(path: str, loader: Iterable) -> Dict[str, float]:
    """Top-1 (%) of the exported graph in ONNX Runtime over a loader of (images, targets)."""
    import numpy as np
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    hits = total = 0
    for x, y in loader:
        logits = session.run(None, {name: x.numpy().astype(np.float32)})[0]
        hits += int((logits.argmax(-1) == y.numpy()).sum())
        total += int(y.shape[0])
    return {'top1': 100.0 * hits / max(total, 1), 'images': total}


def export_step(model_name: str, checkpoint: str, work: str, data_dir: str) -> dict:
    from modzoo.train.validate import load_model_for_inference
    model, cfg, _ = load_model_for_inference(model_name, checkpoint)
    onnx_path = os.path.join(work, f'{model_name}_digits.onnx')
    check = export_and_check(model, onnx_path, (IMG_SIZE, IMG_SIZE))
    check['ort_top1'] = onnx_accuracy(check['path'], val_loader(cfg, data_dir))['top1']
    return check


def int8_step(model_name: str, checkpoint: str, data_dir: str, onnx_path: str, calib_images: int) -> dict:
    from modzoo.export import quantize
    from modzoo.export.onnx import model_input_config
    from modzoo.train.validate import load_model_for_inference
    model, cfg, _ = load_model_for_inference(model_name, checkpoint)
    norm = model_input_config(model)
    size = (IMG_SIZE, IMG_SIZE)
    calib = quantize.load_calibration_images(os.path.join(data_dir, 'train'), size, norm['mean'], norm['std'],
                                             count=calib_images)
    int8_path = os.path.splitext(onnx_path)[0] + '-int8.onnx'
    result = quantize.quantize_onnx_int8(onnx_path, int8_path, calib.images)
    report = quantize.compare_int8(onnx_path, int8_path, held_out_set(cfg, data_dir), num_classes=10)
    return dict(path=int8_path, ort_top1=report.int8_top1, fp32_ort_top1=report.fp32_top1,
                size_mib=result.size_mib, fp32_size_mib=result.fp32_size_mib, calibration_images=len(calib),
                top1_agreement=report.top1_agreement, max_logit_error=report.max_logit_error,
                mean_logit_error=report.mean_logit_error)


def visualise_step(model_name: str, checkpoint: str, work: str, data_dir: str) -> Optional[dict]:
    from modzoo import visualize as vis
    image = os.path.join(data_dir, 'val', '3', sorted(os.listdir(os.path.join(data_dir, 'val', '3')))[0])
    try:
        return vis.visualize(model_name, image, os.path.join(work, 'modulation.png'), checkpoint=checkpoint)
    except vis.VisualizeError as e:  # a family without modulation modules (GridPE-PVT): nothing to draw
        print(f'skipped: {e}')
        return None


def dense_step(work: str) -> Optional[dict]:
    """The dense stage (:func:`modzoo.bench.dense.run_dense_stage`); None, with a printed reason, without
    OpenMMLab."""
    import importlib.util
    missing = [m for m in ('mmseg', 'mmdet') if importlib.util.find_spec(m) is None]
    if missing:
        print(f'skipped: {" and ".join(missing)} not installed (tools/setup_env.sh --mm installs OpenMMLab)')
        return None
    from modzoo.bench.dense import run_dense_stage, summary_line
    try:
        results, missed = run_dense_stage(os.path.join(work, 'dense'))
    except RuntimeError as e:  # a train/test tool failed: its exit status and log file, in one line
        print(e)
        return dict(results={}, lines=[f'failed: {e}'], missed=[f'stage failed: {e}'])
    lines = [summary_line(name, metrics) for name, metrics in results.items()]
    print('\n'.join(lines))
    return dict(results=results, lines=lines, missed=missed)


def report_dir_for(args, work: str) -> str:
    """Where the report step writes: ``docs/`` with ``--update-docs``, else ``--report-dir`` or
    ``<work>/zoo_report``; a folder without a measurement cache starts from a copy of the committed one."""
    from modzoo.bench.zoo_report import CACHE_FILE, DOCS
    if args.update_docs:
        return DOCS
    report_dir = os.path.abspath(args.report_dir or os.path.join(work, 'zoo_report'))
    cache = os.path.join(report_dir, CACHE_FILE)
    if not os.path.exists(cache) and os.path.isfile(os.path.join(DOCS, CACHE_FILE)):
        os.makedirs(report_dir, exist_ok=True)
        shutil.copyfile(os.path.join(DOCS, CACHE_FILE), cache)
    return report_dir


def report_step(budget_s: float, report_dir: str) -> int:
    # its own process: the report's speed figures must not share threads or memory with the job
    cmd = [sys.executable, '-c', 'import sys; from modzoo.bench.zoo_report import main; sys.exit(main())',
           '--budget-s', str(budget_s), '--out-dir', report_dir]
    return subprocess.run(cmd).returncode


# ----------------------------------------------------------------------------------------------------------------
# the job


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    from modzoo.datasets import write_digits_imagefolder
    from modzoo.export.onnx import FP32_TOLERANCE
    from modzoo.train.validate import format_results

    work = os.path.abspath(args.work_dir)
    data_dir = os.path.join(work, 'digits')
    run_dir = os.path.join(work, 'train')
    os.makedirs(work, exist_ok=True)
    steps = Steps()
    summary = {'model': args.model, 'target_top1': args.target_top1, 'work_dir': work}
    failures = []

    info = steps.run('data: scikit-learn digits -> ImageFolder', write_digits_imagefolder, data_dir, IMG_SIZE)
    print(f'{info["train_images"]} train / {info["val_images"]} val images, 10 classes, {IMG_SIZE}x{IMG_SIZE}')
    summary['data'] = info

    train_summary = steps.run(f'train {args.model} ({args.epochs} epochs)', train_step, args, data_dir, run_dir)
    summary['train'] = {k: train_summary[k] for k in ('best_metric', 'best_value', 'best_epoch', 'lr')}
    best = train_summary['best_checkpoint']

    val = steps.run('validate best.pth (tools/validate.py logic)', validate_step, args, best, data_dir)
    print(format_results(val))
    summary['validate'] = val
    if val['top1'] < args.target_top1:
        failures.append(f'validation top-1 {val["top1"]:.2f}% is below the target {args.target_top1:.1f}%')

    onnx = steps.run('export to ONNX and check in ONNX Runtime', export_step, args.model, best, work, data_dir)
    verdict = 'pass' if onnx['passed'] else 'FAIL'
    print(f'{onnx["backend"]}: {onnx["path"]}\nmax |ORT - PyTorch| {onnx["max_abs_diff"]:.2e} (limit '
          f'{FP32_TOLERANCE:g}) -> {verdict}; ONNX Runtime top-1 {onnx["ort_top1"]:.2f}%')
    summary['onnx'] = onnx
    if not onnx['passed']:
        failures.append(f'ONNX parity failed: max abs diff {onnx["max_abs_diff"]:.2e}')
    if abs(onnx['ort_top1'] - val['top1']) > 0.3:  # one flipped near-tie among 359 images is 0.28%
        failures.append(f'ONNX Runtime top-1 {onnx["ort_top1"]:.2f}% differs from PyTorch {val["top1"]:.2f}%')

    int8 = steps.run('quantize to int8 and validate in ONNX Runtime', int8_step, args.model, best, data_dir,
                     onnx['path'], args.int8_calib_images)
    int8['top1_drop'] = int8['fp32_ort_top1'] - int8['ort_top1']
    print(f'int8: {int8["path"]} ({int8["size_mib"]:.1f} MiB vs {int8["fp32_size_mib"]:.1f} MiB fp32, calibrated on '
          f'{int8["calibration_images"]} training images)\nint8 top-1 {int8["ort_top1"]:.2f}% vs fp32 '
          f'{int8["fp32_ort_top1"]:.2f}% ({-int8["top1_drop"]:+.2f} points); top-1 agreement with fp32 '
          f'{int8["top1_agreement"]:.2f}%, logit error max {int8["max_logit_error"]:.3g}')
    summary['int8'] = int8
    if int8['top1_drop'] > args.int8_max_drop:
        failures.append(f'int8 top-1 {int8["ort_top1"]:.2f}% is {int8["top1_drop"]:.2f} points below fp32 '
                        f'(limit {args.int8_max_drop:g})')

    vis_result = steps.run('modulation maps of a validation digit', visualise_step, args.model, best, work,
                           data_dir)
    if vis_result:
        print(f'wrote {vis_result["out"]} (stage {vis_result["stage"]}, blocks {", ".join(vis_result["blocks"])})')
        summary['visualization'] = vis_result['out']

    dense = None if args.no_dense else steps.run('dense: segmentation and detection on digit canvases (mmseg, mmdet)',
                                                  dense_step, work)
    if dense:
        summary['dense'] = dense['results']
        failures += [f'dense {line}' for line in dense['missed']]

    if not args.no_report:
        report_dir = report_dir_for(args, work)
        rc = steps.run(f'zoo report ({os.path.join(report_dir, "zoo.md")})', report_step, args.report_budget_s,
                       report_dir)
        summary['zoo_report'] = os.path.join(report_dir, 'zoo.md')
        if rc != 0:
            failures.append(f'tools/zoo_report.py exited with status {rc}')

    summary['timings_s'] = steps.timings
    summary['total_s'] = round(time.perf_counter() - steps.start, 1)
    summary['failures'] = failures
    with open(os.path.join(work, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1, default=str)

    print('\n== summary')
    print(f'model            {args.model} trained from scratch on sklearn digits ({IMG_SIZE}x{IMG_SIZE}, '
          f'{info["train_images"]} train / {info["val_images"]} val)')
    print(f'validation top-1 {val["top1"]:.2f}% (target >= {args.target_top1:.1f}%), top-5 {val["top5"]:.2f}%')
    print(f'ONNX Runtime     max abs diff {onnx["max_abs_diff"]:.2e}, top-1 {onnx["ort_top1"]:.2f}%')
    print(f'int8 ONNX        top-1 {int8["ort_top1"]:.2f}% ({-int8["top1_drop"]:+.2f} points vs fp32), agreement '
          f'{int8["top1_agreement"]:.2f}%, {int8["size_mib"]:.1f} MiB')
    for line in dense['lines'] if dense else ['skipped']:
        print(f'dense            {line}')
    if 'zoo_report' in summary:
        print(f'zoo report       {summary["zoo_report"]}')
    print('time             ' + ', '.join(f'{k.split(" ")[0]} {v:.0f}s' for k, v in steps.timings.items())
          + f'; total {summary["total_s"]:.0f}s')
    if failures:
        print('FAILED: ' + '; '.join(failures))
        return 1
    print('all checks passed')
    return 0
