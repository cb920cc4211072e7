#!/usr/bin/env python
"""ONNX Runtime (CPU execution provider) vs PyTorch eager: latency, throughput and peak memory, side by side.

    python tools/bench_onnx.py                                   # every registered model up to 300M params
    python tools/bench_onnx.py zoo_smt_tiny zoo_efficientmod_s --batches 1 8 --threads 1 2 --repeats 9
    python tools/bench_onnx.py --write-benchmarks                # refresh the table in BENCHMARKS.md
    python tools/bench_onnx.py --int8 --profile zoo_efficientmod_s  # fp32 ORT vs int8 ORT, profile the misses
    python tools/bench_onnx.py --exporters zoo_focalnet_tiny_srf # compare the torchscript and dynamo exporters

Method. The model is built once (seed 0) and exported as ``tools/export_onnx.py`` exports it by default
(``modzoo.export.onnx.export_default_graph``, dynamic batch). Each engine then runs
in its own worker process, PyTorch eager (``torch.no_grad()``, fp32) in one and ONNX Runtime (CPU EP,
``ORT_ENABLE_ALL``) in the other, with the same number of intra-op threads, the same input and, for PyTorch, the same
weights (same seed). The parent alternates single forward passes between them (warm-up first, then
torch, ORT, torch, ORT, ...) so the noise of a shared machine hits both alike, and reports medians. Only one worker
computes at any time. Peak memory is each worker's peak resident set (VmHWM) minus its resident set after imports,
i.e. weights + runtime buffers + activations, beside the process total. Both workers' outputs are compared first
(max abs diff) so the timed graphs are known to compute the same thing. Each (threads, batch) row reads the 1-minute
load average before and after it (``modzoo.bench.common.LoadGuard``): a row above ``--load-threshold`` is measured again
after ``--load-wait`` seconds, and if the machine stays busy it is kept but marked LOADED in its load column.

``--int8`` measures fp32 ORT against int8 ORT instead (both ORT workers; the int8 graph from
``modzoo.export.quantize``), with the graphs' file sizes, and says whether the CPU has VNNI; ``--profile`` adds ORT
profiler top op types for the models whose int8 speed-up misses 1.8x.

``--exporters`` instead measures the two torch.onnx exporters per model: export time (CPU seconds of this process),
whether a graph with dynamic batch and size exports, and its parity with PyTorch at the export size and two others.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ..utils.cli import OneLineArgumentParser, UsageError
from ..utils.marked_blocks import replace_marked
from .common import (
    BENCHMARKS, LoadGuard, add_load_guard_args, interleaved_seconds, keep_torch_threads, load_cell, load_note,
    machine_description, subprocess_env,
)
from .engine_worker import ORT, TORCH, ort_session, worker_command
from .report import Block, check_json_output, escape, failure_status, markdown_table, provenance_line, \
    read_results, write_json, write_report

START, END = '<!-- onnx:start -->', '<!-- onnx:end -->'
MAX_PARAMS_DEFAULT = 300e6
ORT_INT8 = 'ort_int8'


class Worker:
    """One engine in its own process (:mod:`modzoo.bench.engine_worker`; the ORT worker never imports torch)."""

    def __init__(self, engine: str, spec: dict):
        self.engine = engine
        self.proc = subprocess.Popen(
            worker_command(engine, spec), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=subprocess_env())
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f'{self.engine} worker died (exit code {self.proc.wait()})')
        return json.loads(line)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + '\n')
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask(cmd='quit')
            except (BrokenPipeError, RuntimeError):
                pass
            self.proc.wait(timeout=30)


# ----------------------------------------------------------------------------------------------------------------
# benchmark


def num_params(model_name: str, model_kwargs: dict) -> int:
    import torch
    import modzoo
    with torch.device('meta'):
        model = modzoo.create_model(model_name, **model_kwargs)
    return sum(p.numel() for p in model.parameters())


def _time_pair(workers: Dict[str, Worker], batch: int, repeats: int, warmup: int) -> Dict[str, List[float]]:
    """Interleaved single forwards of the two workers (A, B, B, A, ...); per-engine lists of seconds."""
    return interleaved_seconds({engine: (lambda w=worker: w.ask(cmd='run', batch=batch)['seconds'])
                                for engine, worker in workers.items()}, repeats, warmup)


def _export(model_name: str, size: int, batch: int, workdir: str, model_kwargs: dict) -> Tuple[str, float, list]:
    import torch
    from modzoo.export import onnx as zoo_onnx
    torch.manual_seed(0)
    path = os.path.join(workdir, model_name + '.onnx')
    start = time.process_time()
    result = zoo_onnx.export_default_graph(model_name, path, img_size=(size, size), batch=batch,
                                           model_kwargs=model_kwargs)
    return path, time.process_time() - start, result.files()


def bench_model(model_name: str, size: int, batches: Sequence[int], repeats: int, warmup: int,
                threads: Sequence[int], workdir: str, guard: LoadGuard, model_kwargs: Optional[dict] = None,
                int8: bool = False, calib_data: str = 'digits', profile_below: Optional[float] = None) -> dict:
    """One model: rows per (threads, batch) of eager vs ORT fp32, or with ``int8`` of ORT fp32 vs ORT int8."""
    import numpy as np
    model_kwargs = model_kwargs or {}
    path, export_cpu_s, files = _export(model_name, size, max(batches), workdir, model_kwargs)
    extra = {}
    if int8:
        from modzoo.export import quantize
        calib = quantize.load_calibration_images(calib_data, (size, size), count=64)
        q = quantize.quantize_onnx_int8(path, os.path.join(workdir, model_name + '-int8.onnx'), calib.images)
        files.append(q.path)
        extra = dict(fp32_file_mib=q.fp32_size_mib, int8_file_mib=q.size_mib, quantized_nodes=q.quantized_nodes)
        engines = {ORT: (ORT, path), ORT_INT8: (ORT, q.path)}
    else:
        engines = {TORCH: (TORCH, path), ORT: (ORT, path)}
    first, second = engines
    rows, diff = [], None
    try:
        for n_threads in threads:
            spec = dict(model=model_name, model_kwargs=model_kwargs, seed=0, size=size, threads=n_threads)
            workers = {name: Worker(kind, dict(spec, onnx=onnx)) for name, (kind, onnx) in engines.items()}
            try:
                if diff is None:
                    outs = {}
                    for engine, worker in workers.items():
                        out_path = os.path.join(workdir, f'{engine}.npy')
                        worker.ask(cmd='save', batch=1, path=out_path)
                        outs[engine] = np.load(out_path)
                    diff = float(np.abs(outs[first] - outs[second]).max())
                for batch in batches:
                    def measure(batch=batch, n_threads=n_threads, workers=workers):
                        med = {k: statistics.median(v) for k, v in
                               _time_pair(workers, batch, repeats, warmup).items()}
                        return {'batch': batch, 'threads': n_threads, f'{first}_ms': med[first] * 1e3,
                                f'{second}_ms': med[second] * 1e3, f'{first}_img_s': batch / med[first],
                                f'{second}_img_s': batch / med[second], 'speedup': med[first] / med[second]}
                    rows.append(guard.measure(measure, threads=n_threads))
                mem = {engine: worker.ask(cmd='mem') for engine, worker in workers.items()}
                for row in rows[-len(batches):]:
                    for engine in workers:
                        row[f'{engine}_peak_mib'] = mem[engine]['peak']
                        row[f'{engine}_model_mib'] = mem[engine]['peak'] - mem[engine]['rss_import']
            finally:
                for worker in workers.values():
                    worker.close()
        result = dict(model=model_name, size=size, repeats=repeats, engines=[first, second], max_abs_diff=diff,
                      export_cpu_s=export_cpu_s, rows=rows, **extra)
        if profile_below is not None:
            slow = [r for r in rows if r['speedup'] < profile_below]
            if slow:
                worst = min(slow, key=lambda r: r['speedup'])
                result['profile'] = dict(
                    batch=worst['batch'], threads=worst['threads'],
                    **{engine: ort_profile(onnx, worst['batch'], worst['threads'], size, workdir)
                       for engine, (_, onnx) in engines.items() if engine != TORCH})
    finally:
        for f in files:
            if os.path.exists(f):
                os.remove(f)
    return result


def ort_profile(onnx_path: str, batch: int, threads: int, size: int, workdir: str, runs: int = 3,
                top: int = 6) -> List[dict]:
    """ONNX Runtime's profiler over ``runs`` forwards: the op types taking the most node time, with their share."""
    import numpy as np
    session = ort_session(onnx_path, threads, profile_prefix=os.path.join(workdir, 'ort_profile'))
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    name = session.get_inputs()[0].name
    for _ in range(runs + 1):
        session.run(None, {name: x})
    trace = session.end_profiling()
    return top_ort_ops(trace, top, skip_runs=1)


def top_ort_ops(trace_path: str, top: int = 6, skip_runs: int = 0) -> List[dict]:
    """Op types by summed kernel time in an ORT profile (the first ``skip_runs`` model runs, warm-up, left out)."""
    with open(trace_path) as f:
        events = json.load(f)
    os.remove(trace_path)
    runs = sorted(e['ts'] for e in events if e.get('cat') == 'Session' and e.get('name') == 'model_run')
    start = runs[skip_runs] if len(runs) > skip_runs else 0
    by_op: Dict[str, float] = {}
    for e in events:
        if e.get('cat') == 'Node' and e.get('name', '').endswith('_kernel_time') and e['ts'] >= start:
            op = e.get('args', {}).get('op_name', '?')
            by_op[op] = by_op.get(op, 0.0) + e['dur']
    total = sum(by_op.values()) or 1.0
    ranked = sorted(by_op.items(), key=lambda kv: -kv[1])[:top]
    return [dict(op=op, share=us / total, ms=us / 1e3 / max(len(runs) - skip_runs, 1)) for op, us in ranked]


GOAL_SPEEDUP = 1.5  # the deployment goal: ONNX Runtime at least 1.5x eager PyTorch on CPU
GOAL_INT8 = 1.8  # the int8 goal: int8 ORT at least 1.8x fp32 ORT


def _machine_line(run: dict) -> str:
    return provenance_line(run['machine'], run.get('date') or time.strftime('%Y-%m-%d'), run['command'])


def _size(results: List[dict]) -> str:
    return ', '.join(sorted({f'{r["size"]}x{r["size"]}' for r in results})) or '-'


def _mem(r: dict, engine: str) -> str:
    return f'{r[engine + "_model_mib"]:.0f} ({r[engine + "_peak_mib"]:.0f})'


def latency_markdown(run: dict) -> str:
    results = run['results']
    lines = [
        f'### ONNX Runtime (CPU EP) vs PyTorch eager at {_size(results)}',
        '',
        _machine_line(run),
        '',
        'Latency is the median of one forward pass over interleaved repeats (eager, ORT, ORT, eager, ...); '
        'throughput = batch / latency; speed-up = eager latency / ORT latency. Peak memory: the worker\'s peak '
        'resident set minus its resident set after imports (weights, runtime buffers, activations; peak over both '
        'batches), process total in brackets. fp32, exported as `tools/export_onnx.py` does by default, dynamic batch. '
        'With more than one thread PyTorch runs its 1x1 convolutions through oneDNN instead of its single-thread '
        'im2col path, so the 1- and 2-thread speed-ups differ in kind, not only in degree.',
        '',
        *markdown_table(
            ['model', 'threads', 'batch', 'eager ms', 'ORT ms', 'eager img/s', 'ORT img/s', 'ORT speed-up',
             'eager peak MiB', 'ORT peak MiB', 'load', 'max abs diff'],
            ([f'`{r["model"]}`', row['threads'], row['batch'], f'{row["torch_ms"]:.1f}', f'{row["ort_ms"]:.1f}',
              f'{row["torch_img_s"]:.1f}', f'{row["ort_img_s"]:.1f}', f'**{row["speedup"]:.2f}x**',
              _mem(row, TORCH), _mem(row, ORT), load_cell(row), f'{r["max_abs_diff"]:.1e}']
             for r in results for row in r['rows'])),
    ]
    rows = [row for r in results for row in r['rows']]
    if rows:
        lines += ['', load_note(rows), '']
        for n_threads in sorted({row['threads'] for row in rows}):
            for batch in sorted({row['batch'] for row in rows}):
                at = [row['speedup'] for row in rows if row['batch'] == batch and row['threads'] == n_threads]
                if at:
                    reached = sum(x >= GOAL_SPEEDUP for x in at)
                    lines.append(f'{n_threads} thread(s), batch {batch}: median {statistics.median(at):.2f}x, min '
                                 f'{min(at):.2f}x; {reached} of {len(at)} rows reach the {GOAL_SPEEDUP}x goal.  ')
    for name, why in run['skipped'].items():
        lines.append(f'\nNot benchmarked: `{escape(name)}` ({escape(why)}).')
    return '\n'.join(lines)


def int8_markdown(run: dict) -> str:
    results = run['results']
    lines = [
        f'### int8 ONNX Runtime vs fp32 ONNX Runtime at {_size(results)}',
        '',
        _machine_line(run),
        '',
        'Both graphs in ONNX Runtime (CPU EP, `ORT_ENABLE_ALL`), interleaved single forwards, medians. int8: '
        '`modzoo.export.quantize` (static QDQ, per-channel int8 weights, uint8 activations; Conv/MatMul/Gemm '
        'quantized, LayerNorm, Softmax, gates, GridPE rotations and attention MatMuls float), calibrated on 64 '
        'digits images (the scales do not change the speed). Speed-up = fp32 latency / int8 latency; file sizes '
        'of the .onnx graphs; peak memory as in the fp32 table. max abs diff: int8 vs fp32 logits, random weights, '
        'one random image.',
        '',
        *markdown_table(
            ['model', 'threads', 'batch', 'fp32 ms', 'int8 ms', 'fp32 img/s', 'int8 img/s', 'int8 speed-up',
             'fp32 MiB file', 'int8 MiB file', 'fp32 peak MiB', 'int8 peak MiB', 'load', 'max abs diff'],
            ([f'`{r["model"]}`', row['threads'], row['batch'], f'{row["ort_ms"]:.1f}', f'{row["ort_int8_ms"]:.1f}',
              f'{row["ort_img_s"]:.1f}', f'{row["ort_int8_img_s"]:.1f}', f'**{row["speedup"]:.2f}x**',
              f'{r["fp32_file_mib"]:.1f}', f'{r["int8_file_mib"]:.1f}', _mem(row, ORT), _mem(row, ORT_INT8),
              load_cell(row), f'{r["max_abs_diff"]:.1e}']
             for r in results for row in r['rows'])),
    ]
    rows = [row for r in results for row in r['rows']]
    if rows:
        reached = sum(row['speedup'] >= GOAL_INT8 for row in rows)
        lines += ['', load_note(rows), '',
                  f'int8 speed-up: median {statistics.median(r["speedup"] for r in rows):.2f}x; {reached} of '
                  f'{len(rows)} rows reach the {GOAL_INT8}x goal.']
    profiled = [r for r in results if r.get('profile')]
    if profiled:
        lines += ['', f'Where int8 misses {GOAL_INT8}x (ORT profiler, slowest row of the model, op types by share '
                      'of kernel time):', '']
        for r in profiled:
            p = r['profile']
            for engine in (ORT, ORT_INT8):
                ops = ', '.join(f'{o["op"]} {100 * o["share"]:.0f}%' for o in p[engine])
                lines.append(f'* `{r["model"]}` {"int8" if engine == ORT_INT8 else "fp32"} (batch {p["batch"]}, '
                             f'{p["threads"]} thread(s)): {ops}')
    for name, why in run['skipped'].items():
        lines.append(f'\nNot benchmarked: `{escape(name)}` ({escape(why)}).')
    return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------------------------
# exporter comparison


def compare_exporters(model_name: str, size: int, model_kwargs: Optional[dict] = None) -> List[dict]:
    import torch
    from modzoo.export import onnx as zoo_onnx
    rows = []
    torch.manual_seed(0)
    model = zoo_onnx.build_export_model(model_name, model_kwargs=model_kwargs or {})
    with tempfile.TemporaryDirectory() as tmp:
        for exporter in zoo_onnx.EXPORTERS:
            row = dict(model=model_name, exporter=exporter, size=size)
            blocker = zoo_onnx.spatial_export_blocker(model_name)
            dynamic = 'batch' if blocker else 'batch,spatial'
            start = time.process_time()
            try:
                result = zoo_onnx.export_onnx(
                    model, os.path.join(tmp, f'{exporter}.onnx'), img_size=(size, size), dynamic=dynamic,
                    exporter=exporter, output_names=['logits'], check=True)
                row.update(ok=True, dynamic=dynamic, max_abs_diff=result.check.max_abs_diff,
                           export_s=result.export_seconds, sizes=sorted({r.size for r in result.check.runs}))
            except zoo_onnx.ExportError as e:
                row.update(ok=False, dynamic=dynamic, error=str(e).splitlines()[0][:300])
            row['total_cpu_s'] = time.process_time() - start
            rows.append(row)
    return rows


def exporters_markdown(rows: List[dict], machine: str, command: str, date: Optional[str] = None) -> str:
    lines = [
        '### Exporter comparison: torchscript (`dynamo=False`) vs dynamo (`dynamo=True`)',
        '',
        provenance_line(machine, date or time.strftime('%Y-%m-%d'), command),
        '',
        'Each model exported at the size shown with a dynamic batch and (unless listed as spatially static) dynamic '
        'height/width, then checked in ONNX Runtime against PyTorch at batches 1 and 3 and at the export size plus '
        'two others, random and photographic inputs. Export seconds: wall time of `torch.onnx.export` alone; '
        'total CPU: export + post-processing + checks, CPU seconds of the process (robust to the shared machine).',
        '',
        *markdown_table(
            ['model', 'exporter', 'dynamic', 'export s', 'total CPU s', 'max abs diff', 'result'],
            ([f'`{r["model"]}`', r['exporter'], r['dynamic'], f'{r["export_s"]:.1f}' if r['ok'] else '-',
              f'{r["total_cpu_s"]:.1f}', f'{r["max_abs_diff"]:.1e}' if r['ok'] else '-',
              'OK' if r['ok'] else 'FAILED: ' + r['error'].replace('|', '/')] for r in rows)),
    ]
    return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------------------------
# BENCHMARKS.md section


def section_block(parts: Dict[str, str]) -> Block:
    """This tool's section with its sub-blocks (``<!-- onnx-latency -->``, ``<!-- onnx-exporters -->``) replaced."""
    content = open(BENCHMARKS).read() if os.path.exists(BENCHMARKS) else ''
    if START in content:
        section = re.search(re.escape(START) + '(.*?)' + re.escape(END), content, flags=re.S).group(1)
    else:
        section = ('\n## ONNX export and ONNX Runtime\n\n<!-- onnx-exporters -->\n\n<!-- onnx-latency -->\n\n'
                   '<!-- onnx-int8 -->\n')
    for key, text in parts.items():
        tag_start, tag_end = f'<!-- onnx-{key} -->', f'<!-- /onnx-{key} -->'
        block = f'{tag_start}\n{text}\n{tag_end}'
        if tag_start in section and tag_end not in section:  # the placeholder of a new section
            section = section.replace(tag_start, block)
        elif tag_start not in section:  # a sub-block this section has not had yet: at its end
            section = section.rstrip('\n') + f'\n\n{block}\n'
        else:
            section = replace_marked(section, tag_start, tag_end, block)
    return Block(BENCHMARKS, START, END, section.strip('\n'))


def merge_runs(paths: Sequence[str]) -> dict:
    """One run from several ``--json`` files of the same kind (e.g. a long benchmark done in parts)."""
    runs = [read_results(path, required=('kind', 'machine', 'command', 'results')) for path in paths]
    if len({r['kind'] for r in runs}) != 1:
        raise UsageError('--from-json: the files hold different kinds of runs; render each kind on its own')
    merged = dict(runs[0], results=[], skipped={})
    for r in runs:
        merged['results'] += r['results']
        merged['skipped'].update(r.get('skipped', {}))
    done = {r['model'] for r in merged['results']}
    merged['skipped'] = {k: v for k, v in merged['skipped'].items() if k not in done}
    if len(runs) > 1:
        merged['command'] = '`; `'.join(r['command'] for r in runs if r.get('command'))
        merged['date'] = max(r.get('date') or '' for r in runs) or None
    return merged


def run_benchmarks(args, argv) -> dict:
    import torch
    with keep_torch_threads(), torch.no_grad():  # scoped: tests call this in-process
        return _run_benchmarks(args, argv)


def _run_benchmarks(args, argv) -> dict:
    import modzoo
    names = args.models or modzoo.list_models()
    command = 'python tools/bench_onnx.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    command = re.sub(r' --json \S+', '', command).strip()
    kind = 'exporters' if args.exporters else 'int8' if args.int8 else 'latency'
    libraries = ('torch', 'onnxruntime') if kind != 'int8' else ('onnxruntime',)
    run = dict(kind=kind, machine=machine_description(libraries=libraries, vnni=kind == 'int8'), command=command,
               results=[], skipped={}, date=time.strftime('%Y-%m-%d'))

    def save_partial():  # long runs: keep what is done if the run is cut short
        if args.json:
            write_json(args.json, dict(run, partial=True))

    if args.exporters:
        for name in names:
            for row in compare_exporters(name, args.exporters_size):
                run['results'].append(row)
                status = f'diff {row["max_abs_diff"]:.1e}' if row['ok'] else row['error']
                print(f'{name:<32} {row["exporter"]:<12} {row["dynamic"]:<14} cpu {row["total_cpu_s"]:6.1f}s  '
                      f'{status}', flush=True)
            save_partial()
        return run
    guard = LoadGuard(args.load_threshold, retries=args.load_retries, wait_s=args.load_wait)
    first, second = (ORT, ORT_INT8) if args.int8 else (TORCH, ORT)
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            params = num_params(name, {})
            if params > args.max_params:
                run['skipped'][name] = f'{params / 1e6:.0f}M parameters > --max-params {args.max_params / 1e6:.0f}M'
                print(f'{name:<32} skipped: {run["skipped"][name]}', flush=True)
                continue
            try:
                r = bench_model(name, args.size, args.batches, args.repeats, args.warmup, args.threads, workdir,
                                guard, int8=args.int8, profile_below=GOAL_INT8 if args.profile else None)
            except Exception as e:  # one model's failure (e.g. out of memory) must not lose the others' results
                run['skipped'][name] = f'failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}'
                print(f'{name:<32} {run["skipped"][name]}', flush=True)
                continue
            run['results'].append(r)
            for row in r['rows']:
                print(f'{name:<32} t{row["threads"]} b{row["batch"]:<3} {first} {row[first + "_ms"]:8.1f} ms  '
                      f'{second} {row[second + "_ms"]:8.1f} ms  x{row["speedup"]:.2f}  load {load_cell(row)}',
                      flush=True)
            save_partial()
    return run


def render(run: dict) -> str:
    if run['kind'] == 'exporters':
        return exporters_markdown(run['results'], run['machine'], run['command'], run.get('date'))
    return int8_markdown(run) if run['kind'] == 'int8' else latency_markdown(run)


def main(argv=None) -> int:
    parser = OneLineArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', nargs='*', help='model names (default: every registered model up to --max-params)')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--repeats', type=int, default=7, help='timed forwards per engine and batch')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2],
                        help='intra-op thread counts, each engine the same (a row per count; default 1 2)')
    add_load_guard_args(parser)
    parser.add_argument('--max-params', type=float, default=MAX_PARAMS_DEFAULT,
                        help='skip larger models (default 300e6: xlarge/huge FocalNets need several GB per engine)')
    parser.add_argument('--int8', action='store_true',
                        help='fp32 ORT vs int8 ORT (static QDQ, calibrated on the embedded digits) instead of eager')
    parser.add_argument('--profile', action='store_true',
                        help=f'with --int8: ORT profiler top ops of models whose int8 speed-up misses {GOAL_INT8}x')
    parser.add_argument('--exporters', action='store_true', help='compare the two exporters instead')
    parser.add_argument('--exporters-size', type=int, default=64, help='export size for --exporters')
    parser.add_argument('--json', help='also write the raw results here')
    parser.add_argument('--from-json', nargs='+', metavar='FILE',
                        help='only render (and with --write-benchmarks write) saved --json runs (several are merged)')
    parser.add_argument('--write-benchmarks', action='store_true', help='update the ONNX section of BENCHMARKS.md')
    args = parser.parse_args(argv)
    if args.profile and not args.int8:
        parser.error('--profile applies to --int8 runs')
    if min(args.threads) < 1 or min(args.batches) < 1 or args.size < 1:
        parser.error('--threads, --batches and --size must be at least 1')
    saved = {f'--from-json {i + 1}': path for i, path in enumerate(args.from_json or [])}
    check_json_output(parser, args.json, inputs=saved,
                      outputs={'--write-benchmarks': BENCHMARKS if args.write_benchmarks else None})
    if args.from_json:
        try:
            run = merge_runs(args.from_json)
        except UsageError as e:
            parser.error(str(e))
    else:
        run = run_benchmarks(args, argv)
    text = render(run)
    print()
    print(text)
    write_report(run, None if args.from_json else args.json,
                 [section_block({run['kind']: text})] if args.write_benchmarks else [])
    if args.write_benchmarks:
        print(f'\nwrote the {run["kind"]} table into {BENCHMARKS}')
    return 0 if args.from_json else failure_status(run)
