"""Every CPU deployment path side by side: eager, torch.compile, ONNX Runtime fp32/int8, OpenVINO fp32/int8.

    python tools/bench_cpu_deploy.py --write-benchmarks --write-readme --json out.json   # the full table
    python tools/bench_cpu_deploy.py --quick zoo_efficientmod_xxs                        # tiny check of the tool

Method. Per model (seed 0, fp32) the graphs are made first: the fp32 ONNX graph (dynamic batch), ONNX Runtime's int8 QDQ
graph (``modzoo.export.quantize``) and OpenVINO's int8 IR (NNCF, ``modzoo.export.openvino``), both calibrated on
``--calib-images`` digits images (the scales do not change the speed). Each path then runs in its own worker process
(``modzoo.bench.engine_worker``; the runtime workers never import torch) with the same intra-op thread count, the same
input and, for the PyTorch paths, the same weights. The fp32 graph is what ``tools/export_onnx.py`` writes with its
default options (``modzoo.export.onnx.export_default_graph``). Parity first: every path's logits at the largest batch
against eager's (max abs diff, and top-1 agreement over that batch's random images). Then for each (threads, batch) row
the parent alternates single forwards over all paths (warm-up rounds first; every batch has run once in every worker
before the first row, so ``torch.compile``'s compiles are outside the rows; the order reverses every round) and reports
medians, so the noise of the machine hits every path alike; only one worker computes at a time. Peak memory per row:
each worker's peak resident set during the row (the kernel's mark is reset between rows) minus its resident set after
imports: weights, runtime buffers and activations. Each row reads the 1-minute load average before and after it
(``modzoo.bench.common.LoadGuard``) and is measured again, then marked LOADED, when the machine was busy.

The BENCHMARKS.md block (``--write-benchmarks``) holds the table, the machine, command, date and load per row; the
README block (``--write-readme``) the per-family recommendation derived from it (:func:`recommendation_markdown`).
"""
import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from typing import List, Optional, Sequence

from ..utils.cli import OneLineArgumentParser
from .common import (
    BENCHMARKS, README, LoadGuard, add_load_guard_args, interleaved_seconds, load_cell, load_note,
    machine_description,
)
from .engine_worker import COMPILED, OPENVINO, ORT, TORCH
from .report import Block, check_json_output, escape, failure_status, load_run, markdown_table, \
    provenance_line, write_json, write_report

START, END = '<!-- cpu-deploy:start -->', '<!-- cpu-deploy:end -->'
README_START, README_END = '<!-- cpu-recommendation:start -->', '<!-- cpu-recommendation:end -->'
FAMILIES = ['zoo_focalnet_tiny_srf', 'zoo_smt_tiny', 'zoo_gridpe_pvt_v2_b0']
EFFICIENTMOD = ['zoo_efficientmod_xxs', 'zoo_efficientmod_xs', 'zoo_efficientmod_s', 'zoo_efficientmod_s_conv']
DEFAULT_MODELS = FAMILIES + EFFICIENTMOD
# (path key, heading, worker engine, graph)
PATHS = [('eager', 'eager', TORCH, None), ('compile', 'torch.compile', COMPILED, None),
         ('ort_fp32', 'ORT fp32', ORT, 'fp32'), ('ort_int8', 'ORT int8', ORT, 'ort_int8'),
         ('ov_fp32', 'OpenVINO fp32', OPENVINO, 'ov_fp32'), ('ov_int8', 'OpenVINO int8', OPENVINO, 'ov_int8')]
HEADINGS = {key: heading for key, heading, _, _ in PATHS}
FP32_PATHS = ('compile', 'ort_fp32', 'ov_fp32')
GOAL_INT8, GOAL_BEST = 1.8, 2.0  # int8 over fp32 in the same runtime; the best CPU path over eager at batch 1


def family(model: str) -> str:
    for prefix, name in (('zoo_focalnet', 'FocalNet'), ('zoo_efficientmod', 'EfficientMod'), ('zoo_smt', 'SMT'),
                         ('zoo_gridpe', 'GridPE-PVT')):
        if model.startswith(prefix):
            return name
    return model


def prepare_graphs(model: str, size: int, workdir: str, calib_images: int, paths: Sequence[str],
                   model_kwargs: Optional[dict] = None) -> dict:
    """The graphs ``paths`` need: fp32 ONNX for ONNX Runtime and for OpenVINO (a modzoo model's default export for
    each, a timm model's plain ``torch.onnx.export``: :func:`modzoo.bench.profile_graph.export_graph`), ORT int8 QDQ
    ONNX, OpenVINO int8 IR; their files and sizes."""
    from modzoo.export import quantize
    from .profile_graph import export_graph
    graphs = {'fp32': export_graph(model, workdir, size, model_kwargs=model_kwargs)}
    if 'ov_fp32' in paths or 'ov_int8' in paths:
        graphs['ov_fp32'] = export_graph(model, workdir, size, model_kwargs=model_kwargs, runtime=OPENVINO)
    sizes = {key: quantize.file_mib(path) for key, path in graphs.items()}
    calib = quantize.load_calibration_images(quantize.DIGITS, (size, size), count=calib_images).images
    if 'ort_int8' in paths:
        q = quantize.quantize_onnx_int8(graphs['fp32'], os.path.join(workdir, model + '-int8.onnx'), calib)
        graphs['ort_int8'], sizes['ort_int8'] = q.path, q.size_mib
    if 'ov_int8' in paths:
        from modzoo.export import openvino as zoo_ov
        q = zoo_ov.quantize_openvino_int8(graphs['ov_fp32'], os.path.join(workdir, model + '-int8-openvino.xml'),
                                          calib)
        graphs['ov_int8'], sizes['ov_int8'] = q.path, q.size_mib
    return dict(graphs=graphs, file_mib=sizes)


def bench_model(model: str, size: int, batches: Sequence[int], threads: Sequence[int], repeats: int, warmup: int,
                paths: Sequence[str], workdir: str, guard: LoadGuard, calib_images: int,
                model_kwargs: Optional[dict] = None) -> dict:
    import numpy as np

    from .onnx_runtime import Worker
    start = time.perf_counter()
    prepared = prepare_graphs(model, size, workdir, calib_images, paths, model_kwargs)
    prepare_s = time.perf_counter() - start
    engines = {key: (engine, graph) for key, _, engine, graph in PATHS if key in paths}
    spec = dict(model=model, model_kwargs=model_kwargs or {}, seed=0, size=size, threads=threads[0])
    workers = {}
    try:
        for key, (engine, graph) in engines.items():
            workers[key] = Worker(engine, dict(spec, onnx=prepared['graphs'].get(graph)))
        # parity at the largest batch, against eager (or the first path when eager is not measured)
        outs = {}
        for key, worker in workers.items():
            out_path = os.path.join(workdir, f'{key}.npy')
            worker.ask(cmd='save', batch=max(batches), path=out_path)
            outs[key] = np.load(out_path)
            os.remove(out_path)
        ref = outs[next(iter(outs))]
        parity = {key: dict(max_abs_diff=float(np.abs(out - ref).max()),
                            top1_agreement=100.0 * float((out.argmax(-1) == ref.argmax(-1)).mean()))
                  for key, out in outs.items()}
        # every batch once before the rows, so torch.compile's compiles (and first-call allocations) fall outside
        # the rows' peak memory and timing
        for batch in batches:
            for worker in workers.values():
                worker.ask(cmd='run', batch=batch)
        for worker in workers.values():
            worker.ask(cmd='mem', reset=True)
        rows = []
        for n_threads in threads:
            for worker in workers.values():
                worker.ask(cmd='threads', threads=n_threads)
            for batch in batches:
                def measure(batch=batch):
                    times = interleaved_seconds(
                        {key: (lambda w=worker: w.ask(cmd='run', batch=batch)['seconds'])
                         for key, worker in workers.items()}, repeats, warmup)
                    return {'ms': {key: statistics.median(t) * 1e3 for key, t in times.items()}}
                row = guard.measure(measure, threads=n_threads)
                row.update(threads=n_threads, batch=batch, peak_mib={}, total_mib={})
                for key, worker in workers.items():
                    mem = worker.ask(cmd='mem', reset=True)
                    row['peak_mib'][key] = mem['peak'] - mem['rss_import']
                    row['total_mib'][key] = mem['peak']
                rows.append(row)
                best = min(row['ms'], key=row['ms'].get)
                print(f'{model:<26} t{n_threads} b{batch:<2} ' + '  '.join(f'{k} {v:.1f}' for k, v in row['ms'].items())
                      + f'  best {best}  load {load_cell(row)}', flush=True)
        compile_s = {}
        if COMPILED in [engine for engine, _ in engines.values()]:
            compile_s = workers['compile'].ask(cmd='mem')['compile_s']
    finally:
        for worker in workers.values():
            worker.close()
        for path in prepared['graphs'].values():
            for f in (path, path + '.data', path[:-4] + '.bin' if path.endswith('.xml') else ''):
                if f and os.path.exists(f):
                    os.remove(f)
    return dict(model=model, size=size, repeats=repeats, warmup=warmup, paths=list(workers), parity=parity,
                file_mib=prepared['file_mib'], prepare_s=prepare_s, compile_s=compile_s, rows=rows)


# ----------------------------------------------------------------------------------------------------------------
# markdown


def _speedup(row: dict, key: str, over: str = 'eager') -> Optional[float]:
    ms = row['ms']
    return ms[over] / ms[key] if key in ms and over in ms else None


def table_markdown(run: dict) -> str:
    results = run['results']
    paths = [key for key, *_ in PATHS if any(key in r['paths'] for r in results)]
    lines = [
        '## CPU deployment paths side by side',
        '',
        provenance_line(f'{run.get("host", "?")}: {run["machine"]}', run['date'], run['command']),
        '',
        'Each cell: median latency in ms / throughput in images/s / peak memory in MiB (the worker\'s peak resident '
        'set during the row minus its resident set after imports: weights, runtime buffers, activations). Every path '
        'in its own process with the same intra-op threads; single forwards interleaved over all paths, '
        f'{results[0]["repeats"] if results else "-"} per path after warm-up rounds (every batch also runs once '
        'before the rows, so torch.compile\'s compiles fall outside them). Input size '
        + ', '.join(sorted({f'{r["size"]}x{r["size"]}' for r in results})) + '; fp32 '
        'graphs as `tools/export_onnx.py` writes them by default (dynamic batch); ORT int8: static QDQ '
        '(`modzoo.export.quantize`); OpenVINO int8: NNCF post-training quantization to OpenVINO IR '
        '(`modzoo.export.openvino`); both calibrated on digits images. "best" is the fastest path and its speed-up '
        'over eager. Load: the 1-minute load average before→after the row.',
        '',
        *markdown_table(['model', 'threads', 'batch', *(HEADINGS[k] for k in paths), 'best', 'load'],
                        (_latency_row(r['model'], row, paths) for r in results for row in r['rows'])),
    ]
    rows = [row for r in results for row in r['rows']]
    if rows:
        lines += ['', load_note(rows)]
    lines += ['', '### Parity, file sizes and compile time', '',
              'Parity: each path\'s logits against eager PyTorch on the largest batch of random images (random '
              'weights, seed 0): max abs diff, and in brackets the top-1 agreement over those images. Random weights '
              'give near-tied logits, so for int8 neither figure measures accuracy: that is measured on the digits '
              'model (the int8 accuracy table in this file). '
              'Files: the graphs\' sizes in MiB. Compile: torch.compile\'s first call per batch.', '']
    compared = [k for k in paths if k != 'eager']
    lines += markdown_table(['model', *(HEADINGS[k] for k in compared), 'fp32 / ORT int8 / OpenVINO int8 MiB',
                             'compile s'], (_parity_row(r, compared) for r in results))
    goals = goals_markdown(results)
    if goals:
        lines += ['', goals]
    for name, why in run.get('skipped', {}).items():
        lines.append(f'\nNot benchmarked: `{escape(name)}` ({escape(why)}).')
    return '\n'.join(lines)


def _latency_row(model: str, row: dict, paths: Sequence[str]) -> list:
    """model, threads, batch, ``ms / img/s / peak MiB`` per path, the best path and its speed-up, the load."""
    cells = [f'{row["ms"][k]:.1f} / {row["batch"] * 1e3 / row["ms"][k]:.1f} / {row["peak_mib"][k]:.0f}'
             if k in row['ms'] else '-' for k in paths]
    best = min(row['ms'], key=row['ms'].get)
    up = _speedup(row, best)
    return [f'`{model}`', row['threads'], row['batch'], *cells,
            HEADINGS[best] + (f' **{up:.2f}x**' if up else ''), load_cell(row)]


def _parity_row(r: dict, compared: Sequence[str]) -> list:
    """model, parity against eager per path, the graphs' file sizes, the compile seconds per batch."""
    parity = [f'{p["max_abs_diff"]:.1e} ({p["top1_agreement"]:.0f}%)' if p else '-'
              for p in (r['parity'].get(k) for k in compared)]
    files = ' / '.join(f'{r["file_mib"][k]:.1f}' if k in r['file_mib'] else '-'
                       for k in ('fp32', 'ort_int8', 'ov_int8'))
    compile_s = ', '.join(f'b{b}: {s:.0f}' for b, s in sorted(r.get('compile_s', {}).items(),
                                                                 key=lambda kv: int(kv[0]))) or '-'
    return [f'`{r["model"]}`', *parity, files, compile_s]


def goals_markdown(results: List[dict]) -> str:
    """The two goals: int8 over fp32 in the same runtime (median row), the best path over eager at batch 1."""
    lines = []
    rows = [row for r in results for row in r['rows']]
    for runtime, fp32, int8 in (('ONNX Runtime', 'ort_fp32', 'ort_int8'), ('OpenVINO', 'ov_fp32', 'ov_int8')):
        ups = [_speedup(row, int8, fp32) for row in rows if int8 in row['ms'] and fp32 in row['ms']]
        if ups:
            lines.append(f'int8 over fp32 in {runtime}: median {statistics.median(ups):.2f}x over {len(ups)} rows, '
                         f'{sum(u >= GOAL_INT8 for u in ups)} reach the {GOAL_INT8}x goal.  ')
    for r in results:
        at1 = [row for row in r['rows'] if row['batch'] == 1 and 'eager' in row['ms']]
        if at1:
            best = max((_speedup(row, min(row['ms'], key=row['ms'].get)) or 0.0, row['threads']) for row in at1)
            lines.append(f'`{r["model"]}`: best path at batch 1 is {best[0]:.2f}x eager ({best[1]} thread(s); goal '
                         f'{GOAL_BEST}x).  ')
    return '\n'.join(lines)


def recommendation_markdown(run: dict) -> str:
    """Per family: the fastest path at batch 1 and 8 (most threads measured), and where int8 does not pay (int8 under
    1.2x its runtime's fp32 on the median row of the model)."""
    date, results = run['date'], run['results']
    lines = [f'From `BENCHMARKS.md`\'s side-by-side table (`{escape(run["command"])}`, {escape(date)}; '
             f'{escape(run["machine"])}). '
             'Accuracy of int8 is measured offline only on the digits model (see above): check your own data with '
             '`--check`.', '']
    for r in results:
        threads = max(row['threads'] for row in r['rows'])
        picks = []
        for row in (row for row in r['rows'] if row['threads'] == threads):
            best = min(row['ms'], key=row['ms'].get)
            up = _speedup(row, best)
            picks.append(f'batch {row["batch"]}: **{HEADINGS[best]}**' + (f' ({up:.2f}x eager)' if up else ''))
        notes = []
        for runtime, fp32, int8 in (('ORT', 'ort_fp32', 'ort_int8'), ('OpenVINO', 'ov_fp32', 'ov_int8')):
            ups = [_speedup(row, int8, fp32) for row in r['rows'] if int8 in row['ms'] and fp32 in row['ms']]
            if ups:
                median = statistics.median(ups)
                notes.append(f'{runtime} int8 {median:.2f}x its fp32' + (' (does not pay)' if median < 1.2 else ''))
        loaded = sum(bool(row.get('loaded')) for row in r['rows'])
        lines.append(f'- **{family(r["model"])}** (`{r["model"]}`, {threads} threads): ' + '; '.join(picks)
                     + ('. ' + ', '.join(notes) if notes else '') + '.'
                     + (f' ({loaded} of its rows LOADED: remeasure.)' if loaded else ''))
    return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------------------------
# command line


def run_benchmarks(args, argv) -> dict:
    from modzoo.export.openvino import nncf_available
    from ..runtimes import available
    paths = list(args.paths)
    skipped_paths = {}
    if not available('openvino') or (('ov_int8' in paths) and not nncf_available()):
        for key in ('ov_fp32', 'ov_int8'):
            if key in paths:
                paths.remove(key)
                skipped_paths[key] = 'openvino/nncf not installed: pip install "modzoo[openvino]"'
    command = 'python tools/bench_cpu_deploy.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    command = re.sub(r' --json \S+', '', command).strip()
    run = dict(machine=machine_description(libraries=('torch', 'onnxruntime', 'openvino', 'nncf'), vnni=True),
               command=command, date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), host=os.uname().nodename,
               results=[], skipped={}, skipped_paths=skipped_paths)
    guard = LoadGuard(args.load_threshold, retries=args.load_retries, wait_s=args.load_wait)
    with tempfile.TemporaryDirectory() as workdir:
        for model in args.models:
            try:
                result = bench_model(model, args.size, args.batches, args.threads, args.repeats, args.warmup,
                                     paths, workdir, guard, args.calib_images, args.model_kwargs)
            except Exception as e:  # noqa: BLE001 - one model's failure must not lose the others' rows
                run['skipped'][model] = f'failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}'
                print(f'{model:<26} {run["skipped"][model]}', flush=True)
                continue
            run['results'].append(result)
            if args.json:  # keep what is done if the run is cut short
                write_json(args.json, dict(run, partial=True))
    return run


QUICK = dict(size=32, batches=[1, 2], threads=[1], repeats=2, warmup=1, calib_images=8, load_retries=0)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', nargs='*', default=DEFAULT_MODELS,
                        help='models (default: one per family plus every EfficientMod variant)')
    parser.add_argument('--paths', nargs='+', choices=[key for key, *_ in PATHS], default=[key for key, *_ in PATHS])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--repeats', type=int, default=5, help='timed forwards per path and row')
    parser.add_argument('--warmup', type=int, default=1, help='untimed rounds per row')
    parser.add_argument('--calib-images', type=int, default=64, help='digits images that calibrate both int8 graphs')
    parser.add_argument('--quick', action='store_true',
                        help='tool check in seconds: 32 px, batches 1 2, 1 thread, 2 repeats, 8 calibration images, '
                             'no re-measuring of loaded rows '
                             '(numbers meaningless; never written with --write-*)')
    add_load_guard_args(parser)
    parser.add_argument('--json', help='also write the raw results here')
    parser.add_argument('--from-json', help='only render (and write) a saved --json run')
    parser.add_argument('--write-benchmarks', action='store_true', help='refresh the block in BENCHMARKS.md')
    parser.add_argument('--write-readme', action='store_true', help='refresh the recommendation block in README.md')
    return parser


def blocks(run: dict, benchmarks: Optional[str] = None, readme: Optional[str] = None) -> List[Block]:
    """The marked blocks of this run: the table in ``benchmarks``, the recommendation in ``readme`` (when given)."""
    return (([Block(benchmarks, START, END, table_markdown(run))] if benchmarks else [])
            + ([Block(readme, README_START, README_END, recommendation_markdown(run))] if readme else []))


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.model_kwargs = None
    if args.quick:
        _apply_quick(parser, args)
    if min(args.threads) < 1 or min(args.batches) < 1 or args.repeats < 1 or args.size < 1:
        parser.error('--threads, --batches, --repeats and --size must be at least 1')
    check_json_output(parser, args.json, inputs={'--from-json': args.from_json},
                      outputs={'--write-benchmarks': BENCHMARKS if args.write_benchmarks else None,
                               '--write-readme': README if args.write_readme else None})
    if args.from_json:
        run = _read_run(parser, args.from_json)
    else:
        import modzoo
        unknown = [m for m in args.models if m not in modzoo.list_models()]
        if unknown:
            parser.error(f'not registered modzoo models: {", ".join(unknown)} (modzoo.list_models())')
        run = run_benchmarks(args, argv)
    print()
    print(table_markdown(run))
    print()
    print(recommendation_markdown(run))
    write_report(run, None if args.from_json else args.json,
                 blocks(run, BENCHMARKS if args.write_benchmarks else None, README if args.write_readme else None))
    return 0 if args.from_json else failure_status(run)


def _apply_quick(parser, args) -> None:
    """``--quick``'s settings, refusing the options it would silently override."""
    if args.write_benchmarks or args.write_readme:
        parser.error('--quick measures a shrunken model: its figures are not for BENCHMARKS.md or README.md')
    given = ['--' + key.replace('_', '-') for key in QUICK if getattr(args, key) != parser.get_default(key)]
    if given:
        parser.error(f'--quick sets {" and ".join(given)} itself: drop {" and ".join(given)} or --quick')
    for key, value in QUICK.items():
        setattr(args, key, value)


def _read_run(parser, path: str) -> dict:
    """A saved ``--json`` run, or the parser's one-line error."""
    run = load_run(parser, path, ('machine', 'command', 'date', 'results'))
    if not isinstance(run['results'], list) or not all(isinstance(r, dict) and 'rows' in r for r in run['results']):
        parser.error(f'--from-json {path}: "results" is not the list of models a run writes; pass a file '
                     'bench_cpu_deploy.py wrote with --json')
    return run
