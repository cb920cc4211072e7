"""Where an ExecuTorch program spends its time inside XNNPACK, by XNNPACK operator and by node (ETDump).

    python tools/profile_pte.py zoo_efficientmod_xxs
    python tools/profile_pte.py zoo_gridpe_pvt_v2_b0 --int8 --size 160 --top 20
    python tools/profile_pte.py zoo_efficientmod_xxs --int8 --int8-ops gemm

The model (modzoo or timm name, random weights, seed 0) is lowered as ``tools/export_onnx.py --format executorch``
lowers it: its ExecuTorch export forms (``prepare_for_export(model, 'executorch')``), constant folding, XNNPACK's
partitioner; ``--int8`` quantizes with XNNPACK's PT2E quantizer calibrated on random images (the scales do not change
which kernels run). The program then runs ``--runs`` times in ExecuTorch's runtime (one thread) with its event
tracer on, and ExecuTorch's Inspector joins the trace to the program's record. Rows are XNNPACK's own operator names,
which say which kernel ran: ``Convolution (NHWC, F32) IGEMM`` for a depthwise conv is the grouped-GEMM fallback
XNNPACK takes where it has no depthwise micro-kernel (above 5x5), ``DWConv`` the depthwise kernel; ops left outside
the delegate are listed as ``portable: <op>``. Times: median over the runs, ms per forward.
"""
import argparse
import os
import re
import tempfile
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import torch

from ..export.executorch import INT8_OPS
from ..utils.cli import OneLineArgumentParser
from .common import machine_description
from .report import markdown_table

__all__ = ['profile_pte', 'by_operator', 'profile_markdown', 'main']

_RUNTIME_EVENTS = ('Method::execute', 'DELEGATE_CALL', 'Program::load_method', 'Method::init')


def profile_pte(model: torch.nn.Module, size: int, int8: bool = False, runs: int = 10,
                int8_ops: str = 'all') -> List[dict]:
    """``[{'node', 'op', 'ms'}]``: median ms per forward of every event of ``model``'s XNNPACK program (the
    ExecuTorch forms applied to a copy), one thread."""
    import copy
    from executorch.devtools import Inspector
    from modzoo.export.deploy import prepare_for_export
    from modzoo.export.executorch import lowered_program, traced_runs
    form = prepare_for_export(copy.deepcopy(model), 'executorch')
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    calibration = torch.randn(4, 3, size, size).numpy() if int8 else None
    with torch.no_grad():
        program, _, _ = lowered_program(form, x, calibration, etrecord=True, int8_ops=int8_ops)
    with tempfile.TemporaryDirectory() as tmp:
        record, trace = os.path.join(tmp, 'etrecord.bin'), os.path.join(tmp, 'trace.etdp')
        program.get_etrecord().save(record)
        traced_runs(program.buffer, x, runs, trace)
        inspector = Inspector(etdump_path=trace, etrecord=record)
    nodes = []
    for block in inspector.event_blocks:
        for event in block.events:
            if event.name in _RUNTIME_EVENTS or event.perf_data is None:
                continue
            op = re.sub(r'\s*#\d+$', '', event.name)
            nodes.append(dict(node=event.name, op=op if event.is_delegated_op else f'portable: {op}',
                              ms=float(event.perf_data.p50)))
    return nodes


def by_operator(nodes: Sequence[dict]) -> List[tuple]:
    """``[(operator, ms, count)]``, the most time first."""
    ms: Dict[str, float] = defaultdict(float)
    count: Dict[str, int] = defaultdict(int)
    for n in nodes:
        ms[n['op']] += n['ms']
        count[n['op']] += 1
    return sorted(((op, ms[op], count[op]) for op in ms), key=lambda row: -row[1])


def profile_markdown(name: str, nodes: Sequence[dict], top: int) -> List[str]:
    total = sum(n['ms'] for n in nodes) or float('nan')
    lines = [f'#### XNNPACK (ExecuTorch): time by operator of `{name}` (ms per forward, share)', '']
    lines += markdown_table(['operator', 'ms', 'share', 'nodes'],
                            [[op, f'{ms:.3f}', f'{100 * ms / total:.1f}%', count]
                             for op, ms, count in by_operator(nodes)] + [['**total**', f'**{total:.3f}**', '', '']])
    lines += ['', f'#### top {top} nodes', '']
    lines += markdown_table(['node', 'ms', 'share'], [[n['node'], f'{n["ms"]:.3f}', f'{100 * n["ms"] / total:.1f}%']
                                                      for n in sorted(nodes, key=lambda n: -n['ms'])[:top]])
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='modzoo or timm model name')
    parser.add_argument('--size', type=int, default=224, help='input height = width (default 224)')
    parser.add_argument('--int8', action='store_true', help='the int8 program (XNNPACK PT2E quantizer)')
    parser.add_argument('--int8-ops', choices=INT8_OPS,
                        help="with --int8: the ops in int8, as export_onnx.py's --int8-ops (default all)")
    parser.add_argument('--runs', type=int, default=10, help='traced forwards (default 10)')
    parser.add_argument('--top', type=int, default=12, help='nodes listed (default 12)')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ('size', 'runs', 'top'):
        if getattr(args, flag) < 1:
            parser.error(f'--{flag} must be at least 1')
    if args.int8_ops and not args.int8:
        parser.error('--int8-ops chooses the ops of the int8 program: add --int8, or drop it')
    from modzoo.export.executorch import MOBILE_EXTRA_HINT, executorch_available
    if not executorch_available():
        parser.error(f'profiling a .pte needs ExecuTorch: {MOBILE_EXTRA_HINT}')
    from modzoo.export.onnx import build_export_model
    try:
        torch.manual_seed(0)
        model = build_export_model(args.model)
    except (RuntimeError, ValueError) as e:
        parser.error(str(e).strip('"\''))
    nodes = profile_pte(model, args.size, args.int8, args.runs, args.int8_ops or 'all')
    from executorch.version import __version__ as executorch_version
    precision = f'int8, {args.int8_ops or "all"} ops' if args.int8 else 'fp32'
    lines = [f'### ExecuTorch profile: `{args.model}` ({precision})', '',
             f'{machine_description(threads=1)}, executorch {executorch_version}; batch 1, {args.size}x{args.size}, '
             f'{args.runs} traced forwards', ''] + profile_markdown(args.model, nodes, args.top)
    print('\n'.join(lines))
    return 0
