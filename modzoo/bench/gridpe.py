#!/usr/bin/env python
"""GridPE overhead and PVT v2 parity, CPU eager, measured side by side in one run.

    python tools/bench_gridpe.py                         # PVT v2 b2, 224 px, batch 1
    python tools/bench_gridpe.py --batch 8 --repeats 9 --json out.json
    python tools/bench_gridpe.py --threads 1 2           # one result per thread count (a JSON list)

Three models with the same weights run interleaved (the order rotates every round), so drift and other jobs on a
shared machine hit them alike:

* ``gridpe``: ``zoo_gridpe_pvt_v2_<variant>`` (GridPE in every block, the default),
* ``plain``:  the same model with ``gridpe=False``,
* ``timm``:   timm's ``pvt_v2_<variant>``.

Reported: the median forward time of each, on the wall clock and on the process's CPU clock (the CPU time is less
disturbed by other jobs on a shared machine), the GridPE overhead ``gridpe / plain`` (goal <= 1.10) and our plain
model's throughput relative to timm's ``timm / plain`` (goal >= 1.0), both as the ratio of medians and as the median
of per-round ratios (a round pairs measurements taken seconds apart).

Peak memory (Linux): for each model, a fresh subprocess builds it, runs one forward (filling caches), resets the
kernel's peak-RSS mark (``/proc/self/clear_refs``) and runs one more; the reported growth is the peak RSS of that
forward above the RSS before it. glibc's mmap threshold is pinned (``MALLOC_MMAP_THRESHOLD_``) so that freed tensors
are returned to the system and RSS follows live memory. CPU PyTorch has no allocator high-water mark to read instead.
The GridPE model's cached rotation tables (resident between forwards) are reported separately.

Load: the timed rounds are one row of ``modzoo.bench.common.LoadGuard``: the 1-minute load average is read before and
after them, and a run above ``--load-threshold`` is measured again, then kept with ``"loaded": true``.
"""
import json
import os
import statistics
import subprocess
import sys
import time

import timm
import torch

import modzoo
from ..utils.cli import OneLineArgumentParser
from .common import LoadGuard, add_load_guard_args, machine_description, subprocess_env
from .report import check_json_output, write_report

KINDS = ('gridpe', 'plain', 'timm')


def build(kind: str, variant: str) -> torch.nn.Module:
    if kind == 'timm':
        return timm.create_model(f'pvt_v2_{variant}')
    return timm.create_model(f'zoo_gridpe_pvt_v2_{variant}', gridpe=kind == 'gridpe')


def build_all(variant: str):
    """The three models with timm's (random) weights; GridPE's seeded rotations come in through the filter."""
    models = {kind: build(kind, variant).eval() for kind in KINDS}
    weights = models['timm'].state_dict()
    for kind in ('gridpe', 'plain'):
        modzoo.load_checkpoint(models[kind], weights)  # the family's checkpoint filter, strict
    return models


def machine() -> dict:
    return dict(description=machine_description(torch.get_num_threads(), ('torch', 'timm')),
                torch_threads=torch.get_num_threads())


def time_forward(model: torch.nn.Module, x: torch.Tensor, iters: int):
    """Mean (wall, process-CPU) seconds per forward over ``iters`` back-to-back calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(iters):
        model(x)
    return (time.perf_counter() - wall) / iters, (time.process_time() - cpu) / iters


_MEMORY_PROBE = """
import sys, torch
from modzoo.bench.common import proc_status_mib, reset_peak_rss
from modzoo.bench.gridpe import build

torch.set_num_threads(int(sys.argv[2]))
model = build(sys.argv[1], sys.argv[3]).eval()
x = torch.randn(int(sys.argv[4]), 3, int(sys.argv[5]), int(sys.argv[5]))
with torch.inference_mode():
    model(x)
    reset_peak_rss()
    before = proc_status_mib('VmRSS')
    model(x)
    print(proc_status_mib('VmHWM') - before)
"""


def peak_rss_growth_mb(kind: str, variant: str, batch: int, size: int):
    """Peak-RSS growth (MiB) of one forward, in a fresh process that built only this model (None off Linux)."""
    if not os.path.exists('/proc/self/clear_refs'):
        return None
    args = [kind, str(torch.get_num_threads()), variant, str(batch), str(size)]
    out = subprocess.run([sys.executable, '-c', _MEMORY_PROBE] + args, capture_output=True, text=True, check=True,
                         env=subprocess_env(MALLOC_MMAP_THRESHOLD_='65536'))
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


def table_cache_mb(model: torch.nn.Module) -> float:
    """Bytes held by the GridPE rotation-table caches (MiB)."""
    from modzoo.layers.grid_pe import GridPE
    total = 0
    for module in model.modules():
        if isinstance(module, GridPE):
            total += sum(t.numel() * t.element_size() for tables in module.cache.values() for t in tables)
    return round(total / 2 ** 20, 2)


def _summary(samples, med):
    return dict(
        median_ms={k: round(v * 1e3, 2) for k, v in med.items()},
        quartiles_ms={k: [round(q * 1e3, 2) for q in statistics.quantiles(v, n=4)] for k, v in samples.items()},
        gridpe_overhead=dict(
            ratio_of_medians=round(med['gridpe'] / med['plain'], 4),
            median_paired_ratio=round(statistics.median(
                g / p for g, p in zip(samples['gridpe'], samples['plain'], strict=True)), 4),
            goal='<= 1.10'),
        plain_vs_timm_throughput=dict(
            ratio_of_medians=round(med['timm'] / med['plain'], 4),
            median_paired_ratio=round(statistics.median(
                t / p for t, p in zip(samples['timm'], samples['plain'], strict=True)), 4),
            goal='>= 1.0'),
    )


def run(args, threads: int = 0) -> dict:
    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    models = build_all(args.variant)
    x = torch.randn(args.batch, 3, args.size, args.size)
    guard = LoadGuard(args.load_threshold, retries=args.load_retries, wait_s=args.load_wait)
    with torch.inference_mode():
        outs = {kind: m(x) for kind, m in models.items()}
        parity = (outs['plain'] - outs['timm']).abs().max().item()

        def rounds():
            for _ in range(args.warmup):
                for m in models.values():
                    m(x)
            wall = {kind: [] for kind in KINDS}
            cpu = {kind: [] for kind in KINDS}
            for r in range(args.repeats):
                order = KINDS[r % 3:] + KINDS[:r % 3]  # rotate who goes first
                for kind in order:
                    w, c = time_forward(models[kind], x, args.iters)
                    wall[kind].append(w)
                    cpu[kind].append(c)
            return dict(wall=wall, cpu=cpu)
        timed = guard.measure(rounds, threads=torch.get_num_threads())
    wall, cpu = timed['wall'], timed['cpu']
    result = dict(
        machine=machine(),
        setup=dict(variant=args.variant, batch=args.batch, size=args.size, repeats=args.repeats, iters=args.iters,
                   warmup=args.warmup, mode='eager, inference_mode, float32'),
        plain_vs_timm_max_abs_diff=parity,
        wall=_summary(wall, {k: statistics.median(v) for k, v in wall.items()}),
        cpu=_summary(cpu, {k: statistics.median(v) for k, v in cpu.items()}),
        gridpe_table_cache_mb=table_cache_mb(models['gridpe']),
    )
    if not args.no_memory:
        result['peak_rss_growth_mb'] = {kind: peak_rss_growth_mb(kind, args.variant, args.batch, args.size)
                                        for kind in KINDS}
    result['load'] = {k: timed[k] for k in ('load_before', 'load_after', 'load_limit', 'loaded', 'attempts')}
    return result


def main(argv=None):
    parser = OneLineArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--variant', default='b2', help='PVT v2 variant (b0..b5, b2_li)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=15, help='interleaved rounds')
    parser.add_argument('--iters', type=int, default=3, help='forwards per timed sample')
    parser.add_argument('--warmup', type=int, default=2, help='untimed rounds first (table caches, allocator)')
    parser.add_argument('--threads', type=int, nargs='+', default=[0],
                        help='torch intra-op thread counts, one result each (0: torch default)')
    add_load_guard_args(parser)
    parser.add_argument('--no-memory', action='store_true', help='skip the per-model peak-RSS subprocesses')
    parser.add_argument('--json', default='', help='also write the result here')
    args = parser.parse_args(argv)
    check_json_output(parser, args.json)
    results = [run(args, threads) for threads in args.threads]
    data = results[0] if len(results) == 1 else results
    print(json.dumps(data, indent=1))
    write_report(data, args.json)
