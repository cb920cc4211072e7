"""Phone targets per family: ExecuTorch (XNNPACK fp32 / int8 / int8 gemm layers) and Core ML (fp32 / fp16), one
thread.

    python tools/bench_mobile.py                                   # every family's smallest variant, 224 px
    python tools/bench_mobile.py --models zoo_efficientmod_xxs --targets xnnpack-fp32 coreml-fp16
    python tools/bench_mobile.py --digits output/main_job --write-benchmarks --write-readme

For each model (random weights, seed 0, ``exportable=True`` and the export forms of the target) and target: the
compute nodes XNNPACK took (``modzoo.export.executorch.delegation``), the program's size, the ``.pte``'s median
latency at one thread interleaved with eager PyTorch (and, for int8, with the fp32 ``.pte``), and parity (max abs
logit diff and top-1 agreement with eager on a random and a photographic image), and the peak memory of a fresh
process running the ``.pte`` (:func:`pte_peak_mib`). int8 is calibrated on
``--calib-data`` (default: scikit-learn's digits, resized); ``xnnpack-int8`` quantizes every op XNNPACK's quantizer
supports, ``xnnpack-int8-gemm`` the fully-connected layers and full convolutions only
(``modzoo.export.executorch.INT8_OPS``). Core ML packages are converted and inspected; their
latency and parity are not measurable off macOS, and the table says so. Each timing row reads the load average
before and after it and is re-measured when the machine was busy (``modzoo.bench.common.LoadGuard``).

``--digits WORK_DIR`` adds the int8 accuracy goal's row: the main job's trained digits model (``tools/main_job.py
--no-report``), fp32 eager vs each int8 ``.pte``'s top-1 on its 359 validation images, calibrated on its training
images.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import torch

from ..utils.cli import OneLineArgumentParser
from .common import (
    BENCHMARKS, README, LoadGuard, add_load_guard_args, keep_torch_threads, load_cell, load_note,
    machine_description, subprocess_env,
)
from .report import Block, check_json_output, escape, markdown_table, provenance_line, write_report

__all__ = ['DEFAULT_MODELS', 'TARGETS', 'pte_peak_mib', 'measure_model', 'measure_digits', 'to_markdown', 'readme_text',
           'main']

START, END = '<!-- mobile:start -->', '<!-- mobile:end -->'
README_START, README_END = '<!-- mobile-readme:start -->', '<!-- mobile-readme:end -->'
DEFAULT_MODELS = ('zoo_efficientmod_xxs', 'zoo_focalnet_tiny_srf', 'zoo_smt_tiny', 'zoo_gridpe_pvt_v2_b0')
TARGETS = ('xnnpack-fp32', 'xnnpack-int8', 'xnnpack-int8-gemm', 'coreml-fp32', 'coreml-fp16')
XNNPACK_TARGETS = TARGETS[:3]


def _model(name: str, num_classes: Optional[int] = None):
    from modzoo.export.onnx import build_export_model
    torch.manual_seed(0)
    return build_export_model(name, num_classes=num_classes)


def _export_form(model, target: str):
    """A copy of ``model`` in the export form of ``target`` (``modzoo.export.deploy.prepare_for_export``);
    ``model`` itself stays the eager reference."""
    import copy
    from modzoo.export.deploy import prepare_for_export
    return prepare_for_export(copy.deepcopy(model), target.split('-')[0].replace('xnnpack', 'executorch'))


def pte_peak_mib(path: str, size: int, runs: int = 3) -> Dict[str, float]:
    """Peak resident memory (MiB) of a fresh process that loads the ``.pte`` at ``path`` in ExecuTorch's runtime
    and runs it ``runs`` times on one ``size`` px image: ``peak`` is the growth over its resident set after the
    imports (the kernel's mark is reset there, as the other tables do: the program's weights, its planned
    activations and XNNPACK's packed weights and workspace), ``total`` the whole process's peak."""
    code = (
        'import sys, torch\n'
        'from modzoo.bench.common import proc_status_mib, reset_peak_rss\n'
        'from modzoo.export.executorch import PteProgram\n'
        'x = torch.randn(1, 3, int(sys.argv[2]), int(sys.argv[2]))\n'
        'base = proc_status_mib("VmRSS")\n'
        'reset_peak_rss()\n'
        'pte = PteProgram(sys.argv[1])\n'
        'for _ in range(int(sys.argv[3])): pte.run(x)\n'
        'peak = proc_status_mib("VmHWM")\n'
        'print(peak - base, peak)\n'
    )
    out = subprocess.run([sys.executable, '-c', code, path, str(size), str(runs)], capture_output=True, text=True,
                         check=True, env=subprocess_env(OMP_NUM_THREADS='1'))
    peak, total = map(float, out.stdout.strip().splitlines()[-1].split())
    return dict(peak=peak, total=total)


def _xnnpack_rows(name: str, model, eager, size: int, calibration, targets, repeats: int, guard: LoadGuard,
                  tmp: str, forms: bool = True):
    from modzoo.export import executorch as zoo_et
    x = torch.randn(1, 3, size, size)
    rows, fp32_pte = [], None
    for target in [t for t in targets if t in XNNPACK_TARGETS]:
        int8 = target.startswith('xnnpack-int8')
        path = os.path.join(tmp, f'{name}-{target}-{forms}.pte')
        report = zoo_et.export_executorch(model, path, (size, size), calibration=calibration if int8 else None,
                                          reference=eager, latency_repeats=0, int8_ops=_int8_ops(target))
        pte = zoo_et.PteProgram(path)
        runners = dict(pte=pte.run, eager=eager, **({'fp32_pte': fp32_pte.run} if int8 and fp32_pte else {}))
        row = guard.measure(lambda r=runners: dict(latency_ms=zoo_et.time_interleaved(r, x, repeats=repeats)))
        if not int8:
            fp32_pte = pte
        ms = row['latency_ms']
        row.update(model=name, target=target, size=size, share=report.delegation.share,
                   delegated=report.delegation.delegated, compute_nodes=report.delegation.total,
                   portable_ops=report.delegation.portable_ops, size_mib=report.size_mib,
                   max_abs_diff=report.parity.max_abs_diff, top1_agreement=report.top1_agreement,
                   ratio=ms['pte'] / ms['eager'], vs_fp32=ms['fp32_pte'] / ms['pte'] if 'fp32_pte' in ms else None,
                   seconds=report.seconds, memory_mib=pte_peak_mib(path, size))
        rows.append(row)
        row['target'] = target if forms else f'{target} (no export forms)'
        print(f'{name} {row["target"]}: {100 * row["share"]:.1f}% delegated, {ms["pte"]:.1f} ms vs eager '
              f'{ms["eager"]:.1f} ms ({row["ratio"]:.2f}x), diff {row["max_abs_diff"]:.1e}, load {load_cell(row)}',
              file=sys.stderr)
    return rows


def _int8_ops(target: str) -> str:
    return 'gemm' if target.endswith('-gemm') else 'all'


def _coreml_rows(name: str, model, size: int, targets, tmp: str):
    from modzoo.export import coreml as zoo_coreml
    rows = []
    for target in [t for t in targets if t.startswith('coreml')]:
        precision = target.split('-')[1]
        start = time.perf_counter()
        try:
            report = zoo_coreml.export_coreml(model, os.path.join(tmp, f'{name}-{target}.mlpackage'), (size, size),
                                              precision)
        except Exception as e:  # noqa: BLE001 - a family that does not convert is a row of the table
            rows.append(dict(model=name, target=target, size=size, failed=f'{type(e).__name__}: {e}'[:300]))
            print(f'{name} {target}: FAILED {rows[-1]["failed"]}', file=sys.stderr)
            continue
        rows.append(dict(model=name, target=target, size=size, size_mib=report.size_mib,
                         ops=sum(report.op_histogram.values()), unknown_ops=report.unknown_ops,
                         parity_verified=report.parity is not None,
                         max_abs_diff=report.parity.max_abs_diff if report.parity is not None else None,
                         seconds=time.perf_counter() - start))
        print(f'{name} {target}: converted, {rows[-1]["ops"]} ops, {report.size_mib:.1f} MiB', file=sys.stderr)
    return rows


def measure_model(name: str, size: int, targets, calibration, repeats: int, guard: LoadGuard,
                  compare_forms: bool = False) -> List[Dict]:
    """The rows of one model; ``compare_forms`` adds an fp32 .pte of the model without its export forms (the
    evidence for keeping them)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp, keep_torch_threads():
        torch.set_num_threads(1)
        eager = _model(name)
        if any(t.startswith('xnnpack') for t in targets):
            rows += _xnnpack_rows(name, _export_form(eager, 'xnnpack'), eager, size, calibration, targets, repeats,
                                  guard, tmp)
        if compare_forms:
            rows += _xnnpack_rows(name, eager, eager, size, None, ['xnnpack-fp32'], repeats, guard, tmp, forms=False)
        if any(t.startswith('coreml') for t in targets):
            rows += _coreml_rows(name, _export_form(eager, 'coreml'), size, targets, tmp)
    return rows


# the digits row's int8 programs: name -> int8_ops
INT8_DIGITS = {'int8': 'all', 'int8-gemm': 'gemm'}


def measure_digits(work_dir: str, repeats: int, guard: LoadGuard, calib_images: int = 256) -> Dict:
    """The int8 goal on the main job's digits model: fp32 eager vs fp32 and int8 ``.pte`` top-1 on its validation
    images, and int8 vs fp32 ``.pte`` latency at its 32 px."""
    from modzoo.export import executorch as zoo_et
    from modzoo.export import quantize
    from modzoo.export.onnx import model_input_config
    from modzoo.main_job import IMG_SIZE, MODEL, held_out_set
    from modzoo.train.validate import load_model_for_inference
    from .int8_accuracy import input_paths
    data_dir, checkpoint, _ = input_paths(work_dir)
    for path in (data_dir, checkpoint):
        if not os.path.exists(path):
            raise SystemExit(f'error: no {path}: run python tools/main_job.py --no-report --work-dir {work_dir} first')
    eager, cfg, _ = load_model_for_inference(MODEL, checkpoint)
    eager.eval()
    model = _export_form(eager, 'xnnpack')
    norm = model_input_config(eager)
    calib = quantize.load_calibration_images(os.path.join(data_dir, 'train'), (IMG_SIZE, IMG_SIZE), norm['mean'],
                                             norm['std'], count=calib_images)
    val = held_out_set(cfg, data_dir)
    with tempfile.TemporaryDirectory() as tmp, keep_torch_threads():
        torch.set_num_threads(1)
        paths = {p: os.path.join(tmp, f'{p}.pte') for p in ('fp32', *INT8_DIGITS)}
        zoo_et.export_executorch(model, paths['fp32'], (IMG_SIZE, IMG_SIZE), reference=eager, latency_repeats=0)
        for program, int8_ops in INT8_DIGITS.items():
            zoo_et.export_executorch(model, paths[program], (IMG_SIZE, IMG_SIZE), calibration=calib.images,
                                     reference=eager, latency_repeats=0, int8_ops=int8_ops)
        checks = {p: zoo_et.held_out_agreement(path, eager, val, 10) for p, path in paths.items()}
        runners = dict({p: zoo_et.PteProgram(path).run for p, path in paths.items()}, eager=eager)
        x = torch.from_numpy(val.images[:1])
        row = guard.measure(lambda: dict(latency_ms=zoo_et.time_interleaved(runners, x, repeats=repeats)))
    row.update(model=MODEL, size=IMG_SIZE, images=len(val), calibration_images=len(calib),
               fp32_eager_top1=checks['fp32'].fp32_top1, fp32_pte_top1=checks['fp32'].int8_top1,
               int8={p: dict(int8_ops=INT8_DIGITS[p], top1=checks[p].int8_top1, agreement=checks[p].top1_agreement)
                     for p in INT8_DIGITS})
    return row


def _xnnpack_cells(r: Dict) -> List[str]:
    ms = r['latency_ms']
    return [f'{100 * r["share"]:.1f}% ({r["delegated"]}/{r["compute_nodes"]})', f'{r["size_mib"]:.1f}',
            f'{ms["pte"]:.1f}', f'{ms["eager"]:.1f}', f'**{r["ratio"]:.2f}x**',
            f'{r["memory_mib"]["peak"]:.0f}' if r.get('memory_mib') else '',
            f'{r["vs_fp32"]:.2f}x faster' if r.get('vs_fp32') else '',
            f'{r["max_abs_diff"]:.1e}, top-1 {r["top1_agreement"]:.0f}%', load_cell(r)]


def _coreml_cells(r: Dict) -> List[str]:
    if 'failed' in r:
        return ['conversion FAILED', '', '', '', '', '', '', escape(r['failed'][:120]), '']
    parity = f'{r["max_abs_diff"]:.1e} (macOS)' if r['parity_verified'] else 'unverified (predicts on macOS only)'
    return [f'{r["ops"]} MIL ops, ' + ('none custom' if not r['unknown_ops'] else 'custom: ' + ', '.join(
        r['unknown_ops'])), f'{r["size_mib"]:.1f}', 'macOS only', '', '', 'macOS only', '', parity, '']


def to_markdown(run: Dict) -> str:
    lines = ['## On a phone: ExecuTorch (XNNPACK) and Core ML', '',
             provenance_line(run['machine'], run['date'], run['command']), '',
             f'Random weights, seed 0, 1 x 3 x {run["size"]} x {run["size"]}, one thread (PyTorch and ExecuTorch\'s '
             f'pool); latency: median of {run["repeats"]} runs of the `.pte` interleaved with eager PyTorch on this '
             'x86 CPU (a phone\'s figures differ; the ratio is what carries over). Delegated: compute nodes of the '
             'edge graph inside XNNPACK delegates (the rest run on ExecuTorch\'s portable kernels). Parity: max abs '
             'logit diff and top-1 agreement with eager on a random and a photographic image. Peak MiB: peak '
             'resident memory a fresh process adds to load the `.pte` in ExecuTorch\'s runtime and run it three times '
             '(over its resident set after the imports). int8: PT2E with '
             f'XNNPACK\'s quantizer, calibrated on {escape(run["calib_data"])}. Core ML: ML program, converted and '
             'inspected here; it predicts only on macOS (check there with `python tools/check_coreml.py`).', '']
    header = ['model', 'target', 'delegated / ops', 'MiB', 'program ms', 'eager ms', 'vs eager', 'peak MiB',
              'int8 vs fp32 .pte', 'parity', 'load']
    lines += markdown_table(header, ([f'`{r["model"]}`', r['target']]
                                     + (_xnnpack_cells(r) if r['target'].startswith('xnnpack') else _coreml_cells(r))
                                     for r in run['rows']))
    timed = [r for r in run['rows'] if 'load_before' in r]
    lines += ['', load_note(timed)]
    digits = run.get('digits')
    if digits:
        ms = digits['latency_ms']
        lines += ['', f'**int8 accuracy** (`{digits["model"]}` trained by the main job, {digits["size"]} px, '
                      f'{digits["images"]} validation images, calibrated on {digits["calibration_images"]} training '
                      f'images; fp32 eager top-1 {digits["fp32_eager_top1"]:.2f}%, fp32 .pte '
                      f'{digits["fp32_pte_top1"]:.2f}%, {ms["fp32"]:.2f} ms):', '']
        lines += markdown_table(
            ['program', 'int8 ops', 'int8 .pte top-1', 'drop (points)', 'agreement', 'int8 .pte ms', 'int8 speed-up',
             'load'],
            [[p, r['int8_ops'], f'{r["top1"]:.2f}%', f'{digits["fp32_eager_top1"] - r["top1"]:.2f}',
              f'{r["agreement"]:.2f}%', f'{ms[p]:.2f}', f'{ms["fp32"] / ms[p]:.2f}x', load_cell(digits)]
             for p, r in digits['int8'].items()])
    return '\n'.join(lines)


def readme_text(run: Dict) -> str:
    """README's "On a phone" figures: per model, the fp32 and int8 .pte against eager and the Core ML status."""
    lines = [f'From `BENCHMARKS.md` (`{escape(run["command"])}`, {escape(run["date"])}; {escape(run["machine"])}; '
             f'{run["size"]} px, one thread, random weights):', '']
    by_model: Dict[str, Dict[str, Dict]] = {}
    for r in run['rows']:
        by_model.setdefault(r['model'], {})[r['target']] = r
    for model, targets in by_model.items():
        parts = []
        for target in XNNPACK_TARGETS:
            r = targets.get(target)
            if r:
                parts.append(f'{target}: {100 * r["share"]:.0f}% delegated, {r["ratio"]:.2f}x eager latency'
                             + (f' ({r["vs_fp32"]:.2f}x faster than fp32 .pte)' if r.get('vs_fp32') else '')
                             + (' (LOADED)' if r.get('loaded') else ''))
        coreml = [t for t in ('coreml-fp32', 'coreml-fp16') if t in targets]
        if coreml:
            failed = [t for t in coreml if 'failed' in targets[t]]
            parts.append('Core ML ' + ('converts' if not failed else f'FAILS ({", ".join(failed)})')
                         + ' (parity unverified off macOS)')
        lines.append(f'- `{model}`: ' + '; '.join(parts) + '.')
    digits = run.get('digits')
    if digits:
        ms = digits['latency_ms']
        for p, r in digits['int8'].items():
            lines.append(f'- digits model {p} `.pte`: top-1 {r["top1"]:.2f}% vs fp32 eager '
                         f'{digits["fp32_eager_top1"]:.2f}% ({digits["fp32_eager_top1"] - r["top1"]:+.2f} points '
                         f'lost), {ms["fp32"] / ms[p]:.2f}x faster than the fp32 `.pte`.')
    return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=list(DEFAULT_MODELS), help='registered model names')
    parser.add_argument('--targets', nargs='+', choices=TARGETS, default=list(TARGETS), metavar='TARGET',
                        help=f'any of {", ".join(TARGETS)} (default: all)')
    parser.add_argument('--size', type=int, default=224, help='input height and width')
    parser.add_argument('--repeats', type=int, default=20, help='timed runs per program (median reported)')
    parser.add_argument('--calib-data', default='digits', metavar='DIR|digits',
                        help='int8 calibration images (an ImageFolder or "digits")')
    parser.add_argument('--calib-images', type=int, default=64, help='calibration images of the int8 rows')
    parser.add_argument('--compare-forms', action='store_true',
                        help='also an fp32 .pte of each model without its export forms (LayerNorm, head, attention)')
    parser.add_argument('--digits', metavar='WORK_DIR', help="the main job's --work-dir: add the int8 accuracy row")
    add_load_guard_args(parser)
    parser.add_argument('--json', help='also write the figures here')
    parser.add_argument('--write-benchmarks', action='store_true', help='refresh the mobile block of BENCHMARKS.md')
    parser.add_argument('--write-readme', action='store_true', help='refresh the "On a phone" block of README.md')
    return parser


def _check_args(parser, args) -> None:
    import modzoo
    from modzoo.export import coreml as zoo_coreml
    from modzoo.export import executorch as zoo_et
    unknown = [m for m in args.models if m not in modzoo.list_models()]
    if unknown:
        parser.error(f'{", ".join(unknown)}: not a registered modzoo model (modzoo.list_models())')
    if args.size < 32 or args.repeats < 1 or args.calib_images < 1:
        parser.error('--size must be at least 32, --repeats and --calib-images at least 1')
    if any(t.startswith('xnnpack') for t in args.targets) and not zoo_et.executorch_available():
        parser.error(f'the xnnpack targets need ExecuTorch: {zoo_et.MOBILE_EXTRA_HINT}')
    if any(t.startswith('coreml') for t in args.targets) and not zoo_coreml.coreml_available():
        parser.error(f'the coreml targets need coremltools: {zoo_et.MOBILE_EXTRA_HINT}')
    check_json_output(parser, args.json, outputs={'--write-benchmarks': BENCHMARKS if args.write_benchmarks else None,
                                                  '--write-readme': README if args.write_readme else None})


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    from modzoo.export import quantize
    guard = LoadGuard(args.load_threshold, retries=args.load_retries, wait_s=args.load_wait)
    calibration = None
    if any(t.startswith('xnnpack-int8') for t in args.targets):
        calibration = quantize.load_calibration_images(args.calib_data, (args.size, args.size),
                                                       count=args.calib_images).images
    rows = []
    for name in args.models:
        rows += measure_model(name, args.size, args.targets, calibration, args.repeats, guard, args.compare_forms)
    command = 'python tools/bench_mobile.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    from executorch.version import __version__ as executorch_version
    machine = machine_description(threads=1, libraries=('torch', 'coremltools')) + f', executorch {executorch_version}'
    run = dict(machine=machine,
               date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), command=command.strip(), size=args.size,
               repeats=args.repeats, calib_data=f'{args.calib_images} images of {args.calib_data}', rows=rows)
    if args.digits:
        run['digits'] = measure_digits(os.path.abspath(args.digits), args.repeats, guard)
    text = to_markdown(run)
    print(text)
    blocks = [Block(BENCHMARKS, START, END, text)] if args.write_benchmarks else []
    if args.write_readme:
        blocks.append(Block(README, README_START, README_END, readme_text(run)))
    write_report(run, args.json, blocks)
    return 1 if any('failed' in r for r in rows) else 0


if __name__ == '__main__':
    sys.exit(main())
