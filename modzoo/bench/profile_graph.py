"""Where an exported graph spends its time, in ONNX Runtime and OpenVINO, beside the same for another graph.

    python tools/profile_graph.py zoo_efficientmod_s --anchor efficientformerv2_s2
    python tools/profile_graph.py zoo_smt_tiny --anchor convnext_nano --runtimes ort --top 20
    python tools/profile_graph.py a.onnx --anchor b.onnx            # two graphs already written

A modzoo model is exported as ``tools/export_onnx.py --runtime <runtime>`` exports it with its default options
(:func:`modzoo.export.onnx.export_default_graph`: deploy rewrites, that runtime's export forms, onnxslim); a timm
model (the anchor) with plain ``torch.onnx.export`` (TorchScript exporter, opset 17, dynamic batch), as a timm user
would; a path ending in ``.onnx`` is profiled as it is. Random weights (seed 0), one random input.

ONNX Runtime: its own profiler (``SessionOptions.enable_profiling``), the CPU execution provider at full graph
optimisation, so the nodes are those ORT runs after its fusions (``BiasGelu``, ``FusedMatMul``, NCHWc ``Reorder*``).
OpenVINO: the CPU plugin's per-node performance counters (``PERF_COUNT``), the op types after its own fusions.
Times are per forward, averaged over ``--runs`` forwards after ``--warmup``; "kernel total" is the sum over nodes
(a forward's wall time adds the runtime's own overhead); "data movement" is its part in ops that only move data or
compute shapes (``DATA_MOVEMENT_OPS``), the part a leaner graph can save. Profiles of the two graphs are taken one
after the other, so on a busy machine compare the shares more than the milliseconds.
"""
import argparse
import json
import os
import re
import statistics
import tempfile
import time
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

from ..runtimes import OPENVINO, ORT, RUNTIME_NAMES, open_session, require_runtime, RuntimeUnavailable
from ..utils.cli import OneLineArgumentParser
from .common import machine_description
from .report import check_json_output, markdown_table, write_json

__all__ = ['DATA_MOVEMENT_OPS', 'GraphProfile', 'export_timm_onnx', 'export_graph', 'ort_trace_nodes', 'profile_ort',
           'profile_openvino', 'profile_graph', 'side_by_side', 'main']

TIMM_OPSET = 17
# Op types that only move data or compute shapes (layout changes, ONNX Runtime's NCHWc reorders, OpenVINO's
# reorders and shape sub-graphs): a rewrite of the graph can remove them. Every other op is arithmetic the
# architecture asks for (convolutions, matmuls, activations, norms, softmax, element-wise products and sums).
DATA_MOVEMENT_OPS = frozenset({
    'Transpose', 'ReorderInput', 'ReorderOutput', 'Reorder', 'Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Concat',
    'Concatenation', 'Split', 'VariadicSplit', 'Slice', 'StridedSlice', 'Gather', 'Shape', 'ShapeOf', 'Expand',
    'Broadcast', 'Tile', 'Identity', 'Cast', 'Convert', 'Pad', 'ConstantOfShape', 'Range'})


class GraphProfile(dict):
    """One graph in one runtime: ``nodes`` (name, op, ms per forward), ``wall_ms`` (median forward), ``runs``."""

    @property
    def total_ms(self) -> float:
        return sum(n['ms'] for n in self['nodes'])

    @property
    def data_movement_ms(self) -> float:
        """Kernel time in :data:`DATA_MOVEMENT_OPS`."""
        return sum(n['ms'] for n in self['nodes'] if n['op'] in DATA_MOVEMENT_OPS)

    def by_op(self) -> Dict[str, float]:
        ops: Dict[str, float] = defaultdict(float)
        for n in self['nodes']:
            ops[n['op']] += n['ms']
        return dict(sorted(ops.items(), key=lambda kv: -kv[1]))

    def top_nodes(self, top: int) -> List[dict]:
        return sorted(self['nodes'], key=lambda n: -n['ms'])[:top]


# ----------------------------------------------------------------------------------------------------------------
# graphs


def export_timm_onnx(model_name: str, path: str, size: int = 224, opset: int = TIMM_OPSET,
                     model_kwargs: Optional[dict] = None) -> str:
    """A timm model (random weights of the current seed) exported as a timm user would: ``torch.onnx.export`` with
    the TorchScript exporter, ``opset``, a dynamic batch, nothing else."""
    import warnings

    import timm
    import torch
    model = timm.create_model(model_name, **(model_kwargs or {})).eval()
    example = torch.randn(2, 3, size, size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(model, (example,), path, dynamo=False, opset_version=opset, input_names=['input'],
                          output_names=['logits'], dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}})
    return path


def export_graph(name: str, workdir: str, size: int = 224, batch: int = 1, model_kwargs: Optional[dict] = None,
                 runtime: str = ORT) -> str:
    """The graph of ``name`` for ``runtime``: a ``.onnx`` path as it is, a modzoo model by the default export for
    that runtime (:func:`~modzoo.export.onnx.export_default_graph` with its :func:`~modzoo.export.onnx.export_target`:
    ``tools/export_onnx.py --runtime <runtime>``), a timm model by :func:`export_timm_onnx` (one graph for every
    runtime, written once per ``workdir``). Seed 0 before building, so repeated calls give the same weights (the
    benchmark workers build theirs the same way)."""
    if name.endswith('.onnx'):
        if not os.path.isfile(name):
            raise FileNotFoundError(f'no ONNX graph at {name}')
        return name
    import timm
    import torch

    import modzoo
    from modzoo.export import onnx as zoo_onnx
    from modzoo.models import UnknownModelError
    stem = os.path.join(workdir, re.sub(r'[^\w.-]', '_', name))
    torch.manual_seed(0)
    if name in modzoo.list_models():
        target = zoo_onnx.export_target(runtime)
        path = stem + ('' if target == 'onnx' else f'-{target}') + '.onnx'
        zoo_onnx.export_default_graph(name, path, img_size=(size, size), batch=batch, model_kwargs=model_kwargs,
                                      target=target)
        return path
    if timm.is_model(name):
        path = stem + '.onnx'
        return path if os.path.isfile(path) else export_timm_onnx(name, path, size, model_kwargs=model_kwargs)
    raise UnknownModelError(f'unknown model {name!r}: a modzoo or timm model name, or an .onnx file')


# ----------------------------------------------------------------------------------------------------------------
# runtimes


def _input(session, batch: int, size: int):
    import numpy as np
    return np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(session.input_dtype)


def ort_trace_nodes(trace_path: str, skip_runs: int = 0) -> GraphProfile:
    """Per-node kernel time (ms per forward) in an ONNX Runtime profile, the first ``skip_runs`` forwards left out."""
    with open(trace_path) as f:
        events = json.load(f)
    runs = sorted((e['ts'], e['dur']) for e in events if e.get('cat') == 'Session' and e.get('name') == 'model_run')
    start = runs[skip_runs][0] if len(runs) > skip_runs else 0
    counted = max(len(runs) - skip_runs, 1)
    us: Dict[str, float] = defaultdict(float)
    ops: Dict[str, str] = {}
    for e in events:
        if e.get('cat') == 'Node' and e.get('name', '').endswith('_kernel_time') and e['ts'] >= start:
            node = e['name'][:-len('_kernel_time')]
            us[node] += e['dur']
            ops[node] = e.get('args', {}).get('op_name', '?')
    walls = [dur / 1e3 for ts, dur in runs[skip_runs:]]
    return GraphProfile(nodes=[dict(node=n, op=ops[n], ms=t / 1e3 / counted) for n, t in us.items()],
                        wall_ms=statistics.median(walls) if walls else float('nan'), runs=counted)


def profile_ort(path: str, threads: int = 1, batch: int = 1, size: int = 224, runs: int = 20,
                warmup: int = 3) -> GraphProfile:
    """ONNX Runtime's profiler over ``runs`` forwards after ``warmup``."""
    with tempfile.TemporaryDirectory() as tmp:
        session = open_session(path, ORT, threads, profile_prefix=os.path.join(tmp, 'ort'))
        x = _input(session, batch, size)
        for _ in range(warmup + runs):
            session.run(x)
        trace = session.end_profiling()
        return ort_trace_nodes(trace, skip_runs=warmup)


def profile_openvino(path: str, threads: int = 1, batch: int = 1, size: int = 224, runs: int = 20,
                     warmup: int = 3) -> GraphProfile:
    """OpenVINO's per-node performance counters summed over ``runs`` forwards after ``warmup``."""
    session = open_session(path, OPENVINO, threads, profile=True)
    x = _input(session, batch, size)
    for _ in range(warmup):
        session.run(x)
    us: Dict[str, float] = defaultdict(float)
    ops: Dict[str, str] = {}
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(x)
        walls.append((time.perf_counter() - start) * 1e3)
        for c in session.perf_counters():
            us[c['node']] += c['us']
            ops[c['node']] = c['op']
    return GraphProfile(nodes=[dict(node=n, op=ops[n], ms=t / 1e3 / runs) for n, t in us.items()],
                        wall_ms=statistics.median(walls), runs=runs)


PROFILERS = {ORT: profile_ort, OPENVINO: profile_openvino}


def profile_graph(path: str, runtime: str, **kwargs) -> GraphProfile:
    return PROFILERS[runtime](path, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# report


def _cell(ms: Optional[float], total: float) -> str:
    return '-' if ms is None else f'{ms:.2f} ({100 * ms / total:.0f}%)' if total else f'{ms:.2f}'


def side_by_side(names: Sequence[str], profiles: Sequence[GraphProfile], runtime: str, top: int = 12) -> List[str]:
    """Markdown lines: time by op type of each graph in columns, then each graph's ``top`` nodes."""
    by_op = [p.by_op() for p in profiles]
    totals = [p.total_ms for p in profiles]
    ops = sorted({op for ops in by_op for op in ops}, key=lambda op: -max(ops.get(op, 0.) for ops in by_op))
    lines = [f'#### {RUNTIME_NAMES[runtime]}: time by op type (ms per forward, share of kernel time)', '']
    lines += markdown_table(
        ['op type'] + [f'`{n}`' for n in names],
        [[op] + [_cell(ops_.get(op), t) for ops_, t in zip(by_op, totals, strict=True)] for op in ops]
        + [['**kernel total**'] + [f'**{t:.2f}**' for t in totals],
           ['of which data movement'] + [_cell(p.data_movement_ms, t) for p, t in zip(profiles, totals, strict=True)],
           ['forward (median wall)'] + [f'{p["wall_ms"]:.2f}' for p in profiles],
           ['nodes run'] + [str(len(p['nodes'])) for p in profiles]])
    for name, profile, total in zip(names, profiles, totals, strict=True):
        lines += ['', f'#### {RUNTIME_NAMES[runtime]}: top {top} nodes of `{name}`', '']
        lines += markdown_table(['node', 'op type', 'ms', 'share'],
                                [[f'`{n["node"]}`', n['op'], f'{n["ms"]:.3f}', f'{100 * n["ms"] / total:.1f}%']
                                 for n in profile.top_nodes(top)])
    return lines


# ----------------------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='modzoo model name (exported with tools/export_onnx.py defaults), timm model '
                                      'name or .onnx file')
    parser.add_argument('--anchor', help='a second model (typically timm\'s) or .onnx file to profile beside it')
    parser.add_argument('--runtimes', nargs='+', choices=(ORT, OPENVINO), default=[ORT, OPENVINO])
    parser.add_argument('--threads', type=int, default=1, help='intra-op threads (default 1)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--size', type=int, default=224, help='input height = width (default 224)')
    parser.add_argument('--runs', type=int, default=20, help='profiled forwards per graph (after --warmup)')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--top', type=int, default=12, help='nodes listed per graph')
    parser.add_argument('--json', help='also write the profiles (every node) to this JSON file')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ('threads', 'batch', 'size', 'runs', 'top'):
        if getattr(args, flag) < 1:
            parser.error(f'--{flag} must be at least 1')
    if args.warmup < 0:
        parser.error('--warmup must be at least 0')
    check_json_output(parser, args.json)
    try:
        for runtime in args.runtimes:
            require_runtime(runtime)
    except RuntimeUnavailable as e:
        parser.error(str(e))
    names = [args.model] + ([args.anchor] if args.anchor else [])
    settings = dict(threads=args.threads, batch=args.batch, size=args.size, runs=args.runs, warmup=args.warmup)
    with tempfile.TemporaryDirectory() as workdir:
        try:
            graphs = {runtime: [export_graph(name, workdir, args.size, args.batch, runtime=runtime) for name in names]
                      for runtime in args.runtimes}
        except (FileNotFoundError, ValueError) as e:
            parser.error(str(e).strip('"\''))
        profiles = {runtime: [profile_graph(path, runtime, **settings) for path in paths]
                    for runtime, paths in graphs.items()}
    lines = [f'### Graph profile: {" vs ".join(f"`{n}`" for n in names)}', '',
             f'{machine_description(threads=args.threads, libraries=("onnxruntime",))}; batch {args.batch}, '
             f'{args.size}x{args.size}, {args.runs} forwards after {args.warmup} warm-up', '']
    for runtime, found in profiles.items():
        lines += side_by_side(names, found, runtime, args.top) + ['']
    print('\n'.join(lines))
    if args.json:
        write_json(args.json, dict(models=names, settings=settings, profiles=profiles))
    return 0

