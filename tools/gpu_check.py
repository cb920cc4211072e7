#!/usr/bin/env python
"""The prepared GPU check of modzoo's fused Triton kernels: one run of at most 8 minutes on an H100/H200.

    python tools/gpu_check.py --out results/         # on a CUDA GPU: check, time, write BENCHMARKS.md and the table
    python tools/gpu_check.py --dry-run              # CPU, Triton interpreter, tiny shapes: every code path, quickly
    python tools/gpu_check.py --from-json results/gpu_check.json   # rewrite both files from an earlier run

It checks every op at the models' per-stage shapes against a float64 reference (TF32 off), forward and every
gradient, and that two backward passes agree; times the first call; runs bf16 training steps of FocalNet-T srf,
EfficientMod-s and SMT-S with the kernels on and off beside timm's focalnet_tiny_srf; times eager PyTorch,
torch.compile and the fused kernels from CUDA graphs, with peak memory and the roofline (see
modzoo/kernels/gpu_check.py). A time budget (--budget-s) skips what would start too late, and says so.

It writes the kernel section of BENCHMARKS.md and the validated-kernel table (modzoo/data/validated_kernels.json,
only this card's entries are replaced), from which `auto` decides where the kernels run, and, with --out, the raw
results (gpu_check.json), the section (kernels_section.md) and the table into that folder. --dry-run writes into
--out (a temporary folder by default) and never into BENCHMARKS.md or the packaged table.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, 'BENCHMARKS.md')
START, END = '<!-- kernels:start -->', '<!-- kernels:end -->'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default=None, metavar='DIR', help='folder for gpu_check.json, kernels_section.md and '
                   'validated_kernels.json')
    p.add_argument('--dry-run', action='store_true', help='CPU, Triton interpreter, tiny shapes')
    p.add_argument('--from-json', default=None, metavar='FILE', help='write BENCHMARKS.md and the table from the '
                   'gpu_check.json of an earlier run instead of running')
    p.add_argument('--budget-s', type=float, default=420.0,
                   help='time budget of the steps in seconds (default 420: start-up and writing stay inside 8 min)')
    p.add_argument('--dtype', nargs='+', default=None, choices=['bfloat16', 'float32', 'float16'],
                   help='activation dtypes (default: bfloat16 and float32; --dry-run: bfloat16)')
    p.add_argument('--no-compile', action='store_true', help='skip the torch.compile column')
    p.add_argument('--no-write', action='store_true', help='write only into --out, not BENCHMARKS.md or the table')
    p.add_argument('--benchmarks', default=BENCHMARKS, metavar='PATH', help='BENCHMARKS.md to update')
    p.add_argument('--table', default=None, metavar='PATH', help='validated-kernel table to update (default: the '
                   'packaged modzoo/data/validated_kernels.json)')
    return p.parse_args(argv)


def _fail(message: str) -> int:
    print(f'gpu_check.py: {message}', file=sys.stderr)
    return 2


def write_outputs(result: dict, command: str, out_dir, benchmarks, table) -> None:
    from modzoo.kernels import gpu_check, validated
    from modzoo.bench.common import update_marked_file
    section = gpu_check.report_markdown(result, command)
    families = [result['gpu_family']]
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, 'gpu_check.json'), 'w') as f:
            json.dump(dict(result, command=command), f, indent=1)
        with open(os.path.join(out_dir, 'kernels_section.md'), 'w') as f:
            f.write(section)
        out_table = os.path.join(out_dir, 'validated_kernels.json')
        if table and os.path.exists(table) and os.path.abspath(table) != os.path.abspath(out_table):
            shutil.copyfile(table, out_table)  # the table as it will be committed: other cards' entries kept
        validated.write_table(out_table, families, result['entries'])
        print(f'wrote {out_dir}/gpu_check.json, kernels_section.md, validated_kernels.json')
    if benchmarks:
        update_marked_file(benchmarks, START, END, f'{START}\n{section.rstrip()}\n{END}')
        print(f'wrote {benchmarks}')
    if table:
        validated.write_table(table, families, result['entries'])
        print(f'wrote {table} ({len(result["entries"])} validated entries for {result["gpu_family"]})')


def main(argv=None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    if args.dry_run:
        if args.from_json or args.table or args.benchmarks != BENCHMARKS or args.no_write:
            return _fail('--dry-run writes only into --out; drop --from-json, --table, --benchmarks and --no-write')
        os.environ['TRITON_INTERPRET'] = '1'  # before modzoo's Triton kernels are first imported
    sys.path.insert(0, ROOT)
    from modzoo.kernels import validated
    table = args.table or validated.DEFAULT_TABLE
    if args.from_json:
        try:
            with open(args.from_json) as f:
                result = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            return _fail(f'cannot read {args.from_json} ({e}); pass the gpu_check.json a GPU run wrote')
        if result.get('dry_run'):
            return _fail(f'{args.from_json} is from a --dry-run; its timings mean nothing, refusing to write them')
        write_outputs(result, result.get('command', 'python tools/gpu_check.py'), None,
                      None if args.no_write else args.benchmarks, None if args.no_write else table)
        return 0

    import torch
    if not args.dry_run and not torch.cuda.is_available():
        return _fail('needs a CUDA GPU (torch.cuda.is_available() is False); use --dry-run to check the script on '
                     'the CPU')
    from modzoo.kernels import gpu_check
    overrides = dict(budget_s=args.budget_s, use_compile=not args.no_compile)
    if args.dtype:
        overrides['dtypes'] = tuple(args.dtype)
    settings = gpu_check.Settings.for_dry_run(**overrides) if args.dry_run else gpu_check.Settings(**overrides)
    result = gpu_check.run_check(settings)
    command = 'python tools/gpu_check.py ' + ' '.join(argv)
    if args.dry_run:
        out_dir = args.out or tempfile.mkdtemp(prefix='gpu_check_dry_run_')
        write_outputs(result, command.strip(), out_dir, os.path.join(out_dir, 'BENCHMARKS.md'),
                      os.path.join(out_dir, 'validated_kernels.json'))
    else:
        write_outputs(result, command.strip(), args.out, None if args.no_write else args.benchmarks,
                      None if args.no_write else table)
    for r in result['errors']:
        print(f"FAILED {r['step']} {' '.join(str(r[k]) for k in ('op', 'case', 'model', 'kernels', 'dtype') if k in r)}"
              f": {r['error']}", file=sys.stderr)
    bad = [r for r in result['correctness'] if 'error' not in r and not (r['correct'] and r['deterministic'])]
    for r in bad:
        print(f"FAILED {r['op']} {r['case']} {r['dtype']}: err {r['fused_err']:.1e} (eager {r['eager_err']:.1e}), "
              f"deterministic={r['deterministic']}", file=sys.stderr)
    return 1 if bad or result['errors'] else 0


if __name__ == '__main__':
    sys.exit(main())
