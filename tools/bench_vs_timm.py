#!/usr/bin/env python
"""CPU eager throughput of modzoo models against timm's implementation of the same architecture, side by side.

    python tools/bench_vs_timm.py                                  # the FocalNet pairs
    python tools/bench_vs_timm.py --pairs zoo_focalnet_tiny_srf=focalnet_tiny_srf --batch 8 --repeats 9
    python tools/bench_vs_timm.py --write-benchmarks               # refresh the table in BENCHMARKS.md

Both models get the same weights and the same input; their runs are interleaved (A, B, A, B, ...) so machine noise
hits both alike, and the median is reported. Peak memory is what a separate process adds to its resident set (peak, after the
imports) to build the model and run one forward, so one model's memory does not hide another's. Inference only, fp32,
``torch.no_grad()``, default (NCHW contiguous) input.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import timm  # noqa: E402

import modzoo  # noqa: E402
from tools._bench_common import cpu_name, update_marked_file  # noqa: E402

DEFAULT_PAIRS = [
    'zoo_focalnet_tiny_srf=focalnet_tiny_srf',
    'zoo_focalnet_tiny_lrf=focalnet_tiny_lrf',
    'zoo_focalnet_small_srf=focalnet_small_srf',
    'zoo_focalnet_base_lrf=focalnet_base_lrf',
]
BENCHMARKS = os.path.join(ROOT, 'BENCHMARKS.md')
START, END = '<!-- cpu-vs-timm:start -->', '<!-- cpu-vs-timm:end -->'


def machine_description() -> str:
    return (f'{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), '
            f'timm {timm.__version__}, Python {platform.python_version()}')


def peak_rss_mb(model_name: str, kwargs: dict, batch: int, size: int) -> float:
    """Peak resident memory (MB) a fresh process adds to build ``model_name`` and run one forward.

    The kernel's peak-RSS mark is reset after the imports (``/proc/self/clear_refs``), so the figure is the model's
    weights plus the forward's buffers, not the ~1 GB that importing torch and timm costs every process.
    """
    code = (
        'import json, sys, torch, timm, modzoo\n'
        'sys.path.insert(0, sys.argv[2])\n'
        'from tools._bench_common import proc_status_mib, reset_peak_rss\n'
        'base = proc_status_mib("VmRSS")\n'
        'reset_peak_rss()\n'
        f'm = timm.create_model({model_name!r}, **json.loads(sys.argv[1])).eval()\n'
        f'with torch.no_grad(): m(torch.randn({batch}, 3, {size}, {size}))\n'
        'print(proc_status_mib("VmHWM") - base)\n'
    )
    out = subprocess.run([sys.executable, '-c', code, json.dumps(kwargs), ROOT], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_pair(ours_name: str, timm_name: str, batch: int, size: int, repeats: int, kwargs: dict) -> dict:
    torch.manual_seed(0)
    ours = timm.create_model(ours_name, **kwargs).eval()
    theirs = timm.create_model(timm_name, **kwargs).eval()
    theirs.load_state_dict(ours.state_dict())  # same weights: the comparison is of implementations only
    x = torch.randn(batch, 3, size, size)
    times = {'ours': [], 'timm': []}
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()  # also warms both up
        for _ in range(repeats):
            for key, model in (('ours', ours), ('timm', theirs)):
                start = time.perf_counter()
                model(x)
                times[key].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    return dict(
        ours=ours_name, timm=timm_name, batch=batch, size=size, repeats=repeats, max_abs_diff=diff,
        ours_ms=med['ours'] * 1e3, timm_ms=med['timm'] * 1e3,
        ours_img_s=batch / med['ours'], timm_img_s=batch / med['timm'],
        speedup=med['timm'] / med['ours'],
        ours_peak_mb=peak_rss_mb(ours_name, kwargs, batch, size),
        timm_peak_mb=peak_rss_mb(timm_name, kwargs, batch, size),
    )


def to_markdown(rows, machine: str) -> str:
    lines = [
        f'Machine: {machine}. Date: {time.strftime("%Y-%m-%d")}. Command: `python tools/bench_vs_timm.py '
        f'--batch {rows[0]["batch"]} --repeats {rows[0]["repeats"]}`.',
        '',
        '| modzoo model | timm model | batch x res | modzoo img/s | timm img/s | modzoo / timm | modzoo peak MB '
        '| timm peak MB | max abs diff |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        lines.append(
            f'| `{r["ours"]}` | `{r["timm"]}` | {r["batch"]} x {r["size"]} | {r["ours_img_s"]:.1f} | '
            f'{r["timm_img_s"]:.1f} | **{r["speedup"]:.2f}x** | {r["ours_peak_mb"]:.0f} | {r["timm_peak_mb"]:.0f} | '
            f'{r["max_abs_diff"]:.1e} |')
    return '\n'.join(lines)


def write_section(text: str) -> None:
    block = f'{START}\n## CPU eager throughput vs timm (same architecture, same weights)\n\n{text}\n{END}'
    update_marked_file(BENCHMARKS, START, END, block)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pairs', nargs='+', default=DEFAULT_PAIRS, help='OURS=TIMM model name pairs')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--write-benchmarks', action='store_true', help='refresh the section in BENCHMARKS.md')
    parser.add_argument('--json', help='also write the raw numbers here')
    args = parser.parse_args(argv)

    machine = machine_description()
    rows = []
    for pair in args.pairs:
        ours_name, _, timm_name = pair.partition('=')
        if ours_name not in modzoo.list_models():
            raise SystemExit(f'{ours_name} is not a registered modzoo model')
        rows.append(bench_pair(ours_name, timm_name, args.batch, args.size, args.repeats, {}))
        r = rows[-1]
        print(f'{ours_name}: {r["ours_img_s"]:.1f} img/s vs {timm_name}: {r["timm_img_s"]:.1f} img/s '
              f'-> {r["speedup"]:.2f}x', file=sys.stderr)
    text = to_markdown(rows, machine)
    print(text)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(machine=machine, rows=rows), f, indent=1)
    if args.write_benchmarks:
        write_section(text)


if __name__ == '__main__':
    main()
