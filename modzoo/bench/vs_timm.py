#!/usr/bin/env python
"""CPU eager throughput of modzoo models against timm's implementation of the same architecture, side by side.

    python tools/bench_vs_timm.py                                  # the FocalNet pairs
    python tools/bench_vs_timm.py --pairs zoo_focalnet_tiny_srf=focalnet_tiny_srf --batch 8 --threads 1 2
    python tools/bench_vs_timm.py --write-benchmarks               # refresh the table in BENCHMARKS.md

Both models get the same weights and the same input; their runs are interleaved (A, B, A, B, ...) so machine noise
hits both alike, and the median is reported. Peak memory is what a separate process adds to its resident set (peak,
after the imports) to build the model and run one forward, so one model's memory does not hide another's. Inference
only, fp32, ``torch.no_grad()``, default (NCHW contiguous) input. Each (pair, threads) row reads the 1-minute load
average before and after it; a row above ``--load-threshold`` is measured again, then kept but marked LOADED
(``modzoo.bench.common``).
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import timm
import torch

import modzoo
from ..utils.cli import OneLineArgumentParser
from .common import (
    BENCHMARKS, LoadGuard, add_load_guard_args, keep_torch_threads, load_cell, load_note, machine_description,
    subprocess_env,
)
from .report import Block, check_json_output, markdown_table, provenance_line, write_report

DEFAULT_PAIRS = [
    'zoo_focalnet_tiny_srf=focalnet_tiny_srf',
    'zoo_focalnet_tiny_lrf=focalnet_tiny_lrf',
    'zoo_focalnet_small_srf=focalnet_small_srf',
    'zoo_focalnet_base_lrf=focalnet_base_lrf',
]
START, END = '<!-- cpu-vs-timm:start -->', '<!-- cpu-vs-timm:end -->'


def peak_rss_mb(model_name: str, kwargs: dict, batch: int, size: int) -> float:
    """Peak resident memory (MB) a fresh process adds to build ``model_name`` and run one forward.

    The kernel's peak-RSS mark is reset after the imports (``/proc/self/clear_refs``), so the figure is the model's
    weights plus the forward's buffers, not the ~1 GB that importing torch and timm costs every process.
    """
    code = (
        'import json, sys, torch, timm, modzoo\n'
        'from modzoo.bench.common import proc_status_mib, reset_peak_rss\n'
        'base = proc_status_mib("VmRSS")\n'
        'reset_peak_rss()\n'
        f'm = timm.create_model({model_name!r}, **json.loads(sys.argv[1])).eval()\n'
        f'with torch.no_grad(): m(torch.randn({batch}, 3, {size}, {size}))\n'
        'print(proc_status_mib("VmHWM") - base)\n'
    )
    out = subprocess.run([sys.executable, '-c', code, json.dumps(kwargs)], capture_output=True, text=True,
                         check=True, env=subprocess_env())
    return float(out.stdout.strip().splitlines()[-1])


def bench_pair(ours_name: str, timm_name: str, batch: int, size: int, repeats: int, kwargs: dict,
               threads: int = 1, guard: LoadGuard = None) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ours = timm.create_model(ours_name, **kwargs).eval()
    theirs = timm.create_model(timm_name, **kwargs).eval()
    theirs.load_state_dict(ours.state_dict())  # same weights: the comparison is of implementations only
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()  # also warms both up

        def measure():
            times = {'ours': [], 'timm': []}
            for _ in range(repeats):
                for key, model in (('ours', ours), ('timm', theirs)):
                    start = time.perf_counter()
                    model(x)
                    times[key].append(time.perf_counter() - start)
            med = {k: statistics.median(v) for k, v in times.items()}
            return dict(ours_ms=med['ours'] * 1e3, timm_ms=med['timm'] * 1e3, ours_img_s=batch / med['ours'],
                        timm_img_s=batch / med['timm'], speedup=med['timm'] / med['ours'])
        row = (guard or LoadGuard()).measure(measure, threads=threads)
    row.update(
        ours=ours_name, timm=timm_name, batch=batch, size=size, repeats=repeats, threads=threads, max_abs_diff=diff,
        ours_peak_mb=_peak_once(ours_name, kwargs, batch, size),
        timm_peak_mb=_peak_once(timm_name, kwargs, batch, size))
    return row


_PEAKS = {}


def _peak_once(model_name: str, kwargs: dict, batch: int, size: int) -> float:
    """:func:`peak_rss_mb`, measured once per model and shape (it does not depend on the thread count)."""
    key = (model_name, json.dumps(kwargs, sort_keys=True), batch, size)
    if key not in _PEAKS:
        _PEAKS[key] = peak_rss_mb(model_name, kwargs, batch, size)
    return _PEAKS[key]


def to_markdown(rows, machine: str, command: str) -> str:
    lines = [provenance_line(machine, time.strftime('%Y-%m-%d'), command), '']
    lines += markdown_table(
        ['modzoo model', 'timm model', 'threads', 'batch x res', 'modzoo img/s', 'timm img/s', 'modzoo / timm',
         'modzoo peak MB', 'timm peak MB', 'load', 'max abs diff'],
        ([f'`{r["ours"]}`', f'`{r["timm"]}`', r['threads'], f'{r["batch"]} x {r["size"]}', f'{r["ours_img_s"]:.1f}',
          f'{r["timm_img_s"]:.1f}', f'**{r["speedup"]:.2f}x**', f'{r["ours_peak_mb"]:.0f}',
          f'{r["timm_peak_mb"]:.0f}', load_cell(r), f'{r["max_abs_diff"]:.1e}'] for r in rows))
    lines += ['', load_note(rows)]
    return '\n'.join(lines)


def section_block(text: str) -> Block:
    return Block(BENCHMARKS, START, END,
                 f'## CPU eager throughput vs timm (same architecture, same weights)\n\n{text}')


def main(argv=None):
    parser = OneLineArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pairs', nargs='+', default=DEFAULT_PAIRS, help='OURS=TIMM model name pairs')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2], help='torch intra-op thread counts')
    add_load_guard_args(parser)
    parser.add_argument('--write-benchmarks', action='store_true', help='refresh the section in BENCHMARKS.md')
    parser.add_argument('--json', help='also write the raw numbers here')
    args = parser.parse_args(argv)
    check_json_output(parser, args.json)

    machine = machine_description(libraries=('torch', 'timm'))
    command = 'python tools/bench_vs_timm.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    guard = LoadGuard(args.load_threshold, retries=args.load_retries, wait_s=args.load_wait)
    pairs = [pair.partition('=')[::2] for pair in args.pairs]
    for ours_name, _ in pairs:
        if ours_name not in modzoo.list_models():
            raise SystemExit(f'{ours_name} is not a registered modzoo model')
    rows = []
    with keep_torch_threads():
        for ours_name, timm_name in pairs:
            for n_threads in args.threads:
                rows.append(bench_pair(ours_name, timm_name, args.batch, args.size, args.repeats, {}, n_threads,
                                       guard))
                r = rows[-1]
                print(f'{ours_name} ({n_threads} thread(s)): {r["ours_img_s"]:.1f} img/s vs {timm_name}: '
                      f'{r["timm_img_s"]:.1f} img/s -> {r["speedup"]:.2f}x, load {load_cell(r)}', file=sys.stderr)
    text = to_markdown(rows, machine, command.strip())
    print(text)
    write_report(dict(machine=machine, rows=rows), args.json, [section_block(text)] if args.write_benchmarks else [])
