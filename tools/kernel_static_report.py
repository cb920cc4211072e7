#!/usr/bin/env python
"""Compile every modzoo Triton kernel configuration used at the models' layer shapes for sm_90, without a GPU,
and report registers, spills, shared memory and SASS instructions per output element.

    python tools/kernel_static_report.py                          # fp32, bf16, fp16; every model shape (minutes)
    python tools/kernel_static_report.py --quick --dtype float32  # one small case per op (about a minute)
    python tools/kernel_static_report.py --json now.json --baseline before.json --write-benchmarks

``--baseline`` takes an earlier ``--json`` output (e.g. from the commit before a kernel change) and adds the
before/after weight-gradient figures to the table. ``--write-benchmarks`` replaces the static-report section of
BENCHMARKS.md. Exit status 1 when a configuration fails to compile, 2 on bad arguments.
"""
import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tools'))

START, END = '<!-- kernel-static:start -->', '<!-- kernel-static:end -->'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dtype', nargs='+', default=['float32', 'bfloat16', 'float16'],
                        choices=['float32', 'bfloat16', 'float16'], help='activation dtypes (weights stay fp32)')
    parser.add_argument('--quick', action='store_true', help='one small case per op instead of every model shape')
    parser.add_argument('--only', default='', metavar='TEXT', help='only the cases whose label contains TEXT')
    parser.add_argument('--json', metavar='PATH', help='write every row (one per compiled configuration) here')
    parser.add_argument('--baseline', metavar='PATH', help='an earlier --json output, shown as "before"')
    parser.add_argument('--baseline-name', default='baseline', help='how the table names the baseline')
    parser.add_argument('--write-benchmarks', action='store_true', help='replace the section in BENCHMARKS.md')
    parser.add_argument('--from-json', metavar='PATH', help='render an earlier --json output instead of compiling')
    parser.add_argument('--force', action='store_true', help='overwrite an existing --json file')
    args = parser.parse_args(argv)

    if os.environ.get('TRITON_INTERPRET', '0') not in ('', '0'):
        print('error: TRITON_INTERPRET is set; unset it (interpreted kernels cannot be compiled)', file=sys.stderr)
        return 2
    if args.json and os.path.exists(args.json) and not args.force:
        print(f'error: {args.json} exists; pass --force to overwrite it', file=sys.stderr)
        return 2
    baseline = None
    if args.baseline:
        try:
            with open(args.baseline) as f:
                baseline = json.load(f)
        except (OSError, ValueError) as e:
            print(f'error: cannot read the baseline {args.baseline}: {e}', file=sys.stderr)
            return 2

    from modzoo.kernels import _static_report as report
    if args.from_json:
        try:
            with open(args.from_json) as f:
                rows = json.load(f)
        except (OSError, ValueError) as e:
            print(f'error: cannot read {args.from_json}: {e}', file=sys.stderr)
            return 2
    else:
        rows = report.static_report(args.dtype, quick=args.quick, only=args.only)
    if not rows:
        print(f'error: no case label contains {args.only!r}', file=sys.stderr)
        return 2
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    table = report.markdown(rows, baseline, args.baseline_name)
    print(table)
    if args.write_benchmarks:
        from modzoo.bench.common import update_marked_file
        import triton
        flags = ' '.join((['--quick'] if args.quick else []) + ['--dtype', *args.dtype]
                         + (['--only', repr(args.only)] if args.only else []))
        scope = ('one small model case per op (`--quick`: FocalNet C96 56 px k3/5/7 NCHW, EfficientMod C32 56 px '
                 'k7 NHWC, EfficientMod tile-mul C32 r6, SMT C64 56 px 4 heads NHWC), every autotune candidate'
                 if args.quick else 'every model layer shape and every autotune candidate')
        before = (f' "Before" is `--json` output of the same tool on {args.baseline_name}.' if baseline else '')
        block = (f'{START}\n## Fused kernels: static sm_90 compile report\n\n'
                 f'`python tools/kernel_static_report.py {flags}` (Triton {triton.__version__}; no GPU needed: '
                 f'ptxas, nvdisasm and cuobjdump bundled with Triton), {scope}. Static figures: they depend on the '
                 f'compiler, not on the machine.{before}\n\n{table}\n{END}')
        update_marked_file(os.path.join(ROOT, 'BENCHMARKS.md'), START, END, block)
    return 1 if any(not r['ok'] for r in rows) else 0


if __name__ == '__main__':
    sys.exit(main())
