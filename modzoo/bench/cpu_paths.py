#!/usr/bin/env python
"""Where eager CPU time goes: PyTorch eager vs ``torch.compile`` (inductor, CPU), and eager vs ONNX Runtime by op.

    python tools/bench_cpu_paths.py                       # compile vs eager, one model per family, batch 1 and 8
    python tools/bench_cpu_paths.py --profile             # + torch profiler vs ORT profiler, FocalNet-T batch 8
    python tools/bench_cpu_paths.py --write-benchmarks    # refresh the section in BENCHMARKS.md

Compile vs eager: each model (seed 0, fp32, ``torch.no_grad()``) is compiled with ``torch.compile(backend='inductor')``
once per batch (static shapes); the first call's wall time is reported as compile time, then eager and compiled
forwards alternate (median of ``--repeats``). Each (model, threads, batch) row reads the load average before and after
(``modzoo.bench.common.LoadGuard``) and is re-measured, then marked LOADED, above ``--load-threshold``.

``--profile``: one model at one batch (default FocalNet-T, batch 8) on each thread count: the forward's FLOPs
(``torch.utils.flop_counter``), eager and ORT latency and GFLOP/s, and the top ops of each engine's own profiler
(``torch.profiler`` self CPU time by ATen op; ORT's profiler kernel time by op type) side by side.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Sequence

import torch

import modzoo
from ..utils.cli import OneLineArgumentParser
from .common import (
    BENCHMARKS, LoadGuard, add_load_guard_args, interleaved_seconds, keep_torch_threads, load_cell, load_note,
    machine_description,
)
from .report import Block, check_json_output, markdown_table, provenance_line, load_run, write_report

START, END = '<!-- cpu-paths:start -->', '<!-- cpu-paths:end -->'
DEFAULT_MODELS = ['zoo_focalnet_tiny_srf', 'zoo_efficientmod_xxs', 'zoo_smt_tiny', 'zoo_gridpe_pvt_v2_b0']
PROFILE_MODEL, PROFILE_BATCH = 'zoo_focalnet_tiny_srf', 8


def _build(name: str, size: int):
    torch.manual_seed(0)
    model = modzoo.create_model(name).eval()
    return model, torch.randn(1, 3, size, size)


def _seconds(fn, x) -> float:
    start = time.perf_counter()
    fn(x)
    return time.perf_counter() - start


def compile_vs_eager(name: str, size: int, batches: Sequence[int], threads: Sequence[int], repeats: int,
                     guard: LoadGuard) -> List[dict]:
    model, _ = _build(name, size)
    rows = []
    with torch.no_grad():
        for batch in batches:
            x = torch.randn(batch, 3, size, size)
            compiled = torch.compile(model, backend='inductor', dynamic=False)
            start = time.perf_counter()
            diff = (compiled(x) - model(x)).abs().max().item()
            compile_s = time.perf_counter() - start
            for n_threads in threads:
                torch.set_num_threads(n_threads)
                compiled(x)  # a thread count change re-warms the kernels' thread pools
                model(x)

                def measure(compiled=compiled, x=x):
                    times = interleaved_seconds({'eager': lambda: _seconds(model, x),
                                                 'compiled': lambda: _seconds(compiled, x)}, repeats)
                    e, c = (statistics.median(times[k]) * 1e3 for k in ('eager', 'compiled'))
                    return dict(eager_ms=e, compiled_ms=c, speedup=e / c)
                row = guard.measure(measure, threads=n_threads)
                row.update(model=name, batch=batch, threads=n_threads, compile_s=compile_s, max_abs_diff=diff)
                rows.append(row)
                print(f'{name:<28} t{n_threads} b{batch:<3} eager {row["eager_ms"]:8.1f} ms  compiled '
                      f'{row["compiled_ms"]:8.1f} ms  x{row["speedup"]:.2f}  (compile {compile_s:.0f}s, '
                      f'diff {diff:.1e}, load {load_cell(row)})', flush=True)
            torch._dynamo.reset()
    return rows


def torch_top_ops(model, x, top: int = 6, runs: int = 2) -> List[dict]:
    """Self CPU time by ATen op over ``runs`` forwards (after one warm-up), with its share of the total."""
    from torch.profiler import ProfilerActivity, profile
    model(x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            model(x)
    events = [e for e in prof.key_averages() if e.key.startswith('aten::')]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return [dict(op=e.key, share=e.self_cpu_time_total / total, ms=e.self_cpu_time_total / 1e3 / runs)
            for e in events[:top]]


def profile_breakdown(name: str, batch: int, size: int, threads: Sequence[int], repeats: int,
                      guard: LoadGuard) -> List[dict]:
    """Eager vs ORT for one model and batch: latency, GFLOP/s and each profiler's top ops, per thread count."""
    import numpy as np
    from torch.utils.flop_counter import FlopCounterMode

    from modzoo.export import onnx as zoo_onnx
    from .engine_worker import ort_session
    from .onnx_runtime import ort_profile
    model, _ = _build(name, size)
    x = torch.randn(batch, 3, size, size)
    results = []
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
        flops = counter.get_total_flops()
        path = os.path.join(tmp, name + '.onnx')
        zoo_onnx.export_onnx(zoo_onnx.build_export_model(name), path, img_size=(size, size), batch=batch,
                             dynamic='batch', output_names=['logits'])
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            session = ort_session(path, n_threads)
            feed = {session.get_inputs()[0].name: x.numpy().astype(np.float32)}
            session.run(None, feed)
            model(x)

            def measure(session=session, feed=feed, x=x):
                times = interleaved_seconds({'eager': lambda: _seconds(model, x),
                                             'ort': lambda: _seconds(lambda _: session.run(None, feed), x)},
                                            repeats, alternate=False)
                return {f'{k}_ms': statistics.median(v) * 1e3 for k, v in times.items()}
            row = guard.measure(measure, threads=n_threads)
            row.update(model=name, batch=batch, threads=n_threads, gflop=flops / 1e9,
                       eager_gflop_s=flops / 1e6 / row['eager_ms'], ort_gflop_s=flops / 1e6 / row['ort_ms'],
                       torch_ops=torch_top_ops(model, x), ort_ops=ort_profile(path, batch, n_threads, size, tmp))
            results.append(row)
            print(f'{name} b{batch} t{n_threads}: eager {row["eager_ms"]:.0f} ms ({row["eager_gflop_s"]:.0f} GFLOP/s), '
                  f'ORT {row["ort_ms"]:.0f} ms ({row["ort_gflop_s"]:.0f} GFLOP/s), load {load_cell(row)}', flush=True)
    return results


def to_markdown(run: dict) -> str:
    lines = ['## CPU paths: eager, torch.compile (inductor) and ONNX Runtime', '',
             provenance_line(run['machine'], run['date'], run['command']), '']
    rows = run['compile']
    if rows:
        lines += [
            '### torch.compile (inductor, CPU) vs eager', '',
            'fp32, `torch.no_grad()`, static shapes (one compile per batch); median of interleaved forwards. '
            'Compile s: wall time of the first compiled call (shared by the thread counts).', '',
            *markdown_table(
                ['model', 'threads', 'batch', 'eager ms', 'compiled ms', 'compile speed-up', 'compile s', 'load',
                 'max abs diff'],
                ([f'`{r["model"]}`', r['threads'], r['batch'], f'{r["eager_ms"]:.1f}', f'{r["compiled_ms"]:.1f}',
                  f'**{r["speedup"]:.2f}x**', f'{r["compile_s"]:.0f}', load_cell(r), f'{r["max_abs_diff"]:.1e}']
                 for r in rows)),
            '', load_note(rows), '']
    for p in run.get('profile', []):
        lines += [
            f'### Eager vs ONNX Runtime by op: `{p["model"]}`, batch {p["batch"]}, {p["threads"]} thread(s)', '',
            f'{p["gflop"]:.1f} GFLOP per forward (torch.utils.flop_counter). Eager {p["eager_ms"]:.0f} ms = '
            f'{p["eager_gflop_s"]:.3g} GFLOP/s; ORT {p["ort_ms"]:.0f} ms = {p["ort_gflop_s"]:.3g} GFLOP/s '
            f'(load {load_cell(p)}). Share of each profiler\'s op time (torch: self CPU time of ATen ops; ORT: '
            'kernel time by op type after its graph fusions):', '',
            *markdown_table(
                ['rank', 'eager op', 'eager share', 'eager ms', 'ORT op', 'ORT share', 'ORT ms'],
                ([i + 1, f'`{t["op"]}`', f'{100 * t["share"]:.0f}%', f'{t["ms"]:.0f}', f'`{o["op"]}`',
                  f'{100 * o["share"]:.0f}%', f'{o["ms"]:.0f}']
                 for i, (t, o) in enumerate(zip(p['torch_ops'], p['ort_ops'], strict=False)))),
            '']
    return '\n'.join(lines).rstrip('\n')


def main(argv=None) -> int:
    parser = OneLineArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', nargs='*', default=DEFAULT_MODELS, help='models for compile vs eager')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--no-compile', action='store_true', help='skip compile vs eager (with --profile)')
    parser.add_argument('--profile', action='store_true', help='eager vs ORT by op for --profile-model')
    parser.add_argument('--profile-model', default=PROFILE_MODEL)
    parser.add_argument('--profile-batch', type=int, default=PROFILE_BATCH)
    add_load_guard_args(parser)
    parser.add_argument('--json', help='also write the raw results here')
    parser.add_argument('--from-json', help='only render (and with --write-benchmarks write) a saved --json run')
    parser.add_argument('--write-benchmarks', action='store_true', help='refresh the section in BENCHMARKS.md')
    args = parser.parse_args(argv)
    for name in args.models + ([args.profile_model] if args.profile else []):
        if name not in modzoo.list_models():
            parser.error(f'{name} is not a registered modzoo model (modzoo.list_models())')
    if min(args.threads) < 1 or min(args.batches) < 1 or args.size < 1 or args.repeats < 1:
        parser.error('--threads, --batches, --size and --repeats must be at least 1')
    check_json_output(parser, args.json, inputs={'--from-json': args.from_json},
                      outputs={'--write-benchmarks': BENCHMARKS if args.write_benchmarks else None})
    if args.from_json:
        run = load_run(parser, args.from_json, ('machine', 'command', 'date', 'compile'))
    else:
        command = 'python tools/bench_cpu_paths.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
        run: Dict = dict(machine=machine_description(libraries=('torch', 'onnxruntime')), command=command.strip(),
                         date=time.strftime('%Y-%m-%d'), compile=[], profile=[])
        guard = LoadGuard(args.load_threshold, retries=args.load_retries, wait_s=args.load_wait)
        with keep_torch_threads():
            if not args.no_compile:
                for name in args.models:
                    run['compile'] += compile_vs_eager(name, args.size, args.batches, args.threads, args.repeats,
                                                       guard)
            if args.profile:
                run['profile'] = profile_breakdown(args.profile_model, args.profile_batch, args.size, args.threads,
                                                   args.repeats, guard)
    text = to_markdown(run)
    print()
    print(text)
    write_report(run, None if args.from_json else args.json,
                 [Block(BENCHMARKS, START, END, text)] if args.write_benchmarks else [])
    if args.write_benchmarks:
        print(f'\nwrote the CPU paths section into {BENCHMARKS}')
    return 0
