"""Static compile report of modzoo's Triton kernels for a CUDA target, built on a machine without a GPU.

The launch configurations are not written down by hand: every public op's launcher runs on ``meta`` tensors of the
models' real layer shapes (FocalNet T/S/B srf+lrf, EfficientMod xxs..s, SMT T..L, plus k up to 15 and focal level
4) with the kernel launches recorded instead of run. Each recorded launch is specialised the way Triton's JIT
would specialise it (16-byte pointer alignment and integer divisibility by 16 as ``tt.divisibility``, integers
equal to 1 as constants, i64 for integers beyond i32), every autotune candidate is compiled down to a cubin with
Triton's bundled ``ptxas``, and the SASS is read back with Triton's bundled ``nvdisasm``/``cuobjdump``.

Per kernel configuration the report gives registers, local memory (spills), shared memory, and the static SASS
instructions per output element of one tile: each instruction counted once, times the trip count of every
constant-trip loop around it, summed over the bodies of the per-tile (outermost runtime-trip) loops if the kernel
has any, else over the whole kernel, and divided by the tile elements one thread owns. The figures are
machine-independent.

Needs ``TRITON_INTERPRET`` unset (an interpreted kernel cannot be compiled).
"""
import argparse
import contextlib
import dataclasses
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from ..utils.cli import UsageError, check_distinct_paths, check_output_file
from ..utils.marked_blocks import BENCHMARKS
from .report import Block, escape, markdown_table, write_report

ARCH = 90
DTYPES = ('float32', 'bfloat16', 'float16')
_TL_TYPES = {torch.float32: 'fp32', torch.float16: 'fp16', torch.bfloat16: 'bf16', torch.float64: 'fp64',
             torch.int32: 'i32', torch.int64: 'i64'}
_TORCH_DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}
START, END = '<!-- kernel-static:start -->', '<!-- kernel-static:end -->'


def _tuned_kernel_class() -> type:
    """The class of the ops' autotuned kernels, as an op's Triton module lists them in ``TUNED_KERNELS``."""
    from ..kernels.validated import OPS
    tuned = getattr(op_modules(OPS[0])[1], 'TUNED_KERNELS', ())
    # absent before the kernels were autotuned (lets this report run on older kernels for a before/after figure)
    return type(tuned[0]) if tuned else type('NoTunedKernel', (), {})


# ---------------------------------------------------------------------------------------------------------------------
# Model shapes: (label, callable that runs the op's forward and backward launchers on meta tensors)

def op_modules(op: str):
    """``(op module, Triton module)`` of a public op: the op builds its inputs at a model shape
    (``example_inputs``), its Triton module runs its pass plan (``forward_backward``) and lists its kernels."""
    import importlib
    return (importlib.import_module(f'modzoo.kernels.{op}_op'), importlib.import_module(f'modzoo.kernels.{op}_triton'))


def _case(op: str, *shape, **kwargs) -> Callable[[], None]:
    def run():
        module, kernels = op_modules(op)
        args, _ = module.example_inputs(*shape, device='meta', **kwargs)
        kernels.forward_backward(*args)
    return run


def _focal_case(B, C, H, ks, dtype, cl):
    return _case('focal_context', B, C, H, ks, dtype, channels_last=cl)


def _dwconv_case(B, C, H, k, dtype, cl):
    return _case('dwconv_gelu', B, C, H, k, dtype, channels_last=cl)


def _tile_mul_case(B, C, H, r, dtype):
    return _case('gelu_tile_mul', B, C, H, r, dtype)


def _mixed_case(B, C, H, heads, dtype, cl):
    return _case('mixed_dwconv_interleave', B, C, H, [3 + 2 * i for i in range(heads)], dtype, channels_last=cl)


def model_cases(dtype: torch.dtype, batch: int = 128, quick: bool = False) -> Iterator[Tuple[str, Callable[[], None]]]:
    """``(label, run)`` per op and model layer shape at 224 px; ``quick``: one small case per op."""
    if quick:
        yield 'focal_context C96 56 k3/5/7 nchw', _focal_case(2, 96, 56, (3, 5, 7), dtype, False)
        yield 'dwconv_gelu C32 56 k7 nhwc', _dwconv_case(2, 32, 56, 7, dtype, True)
        yield 'gelu_tile_mul C32 56 r6', _tile_mul_case(2, 32, 56, 6, dtype)
        yield 'mixed_dwconv C64 56 4 heads nhwc', _mixed_case(2, 64, 56, 4, dtype, True)
        return
    res = (56, 28, 14, 7)
    for layout, cl in (('nchw', False), ('nhwc', True)):
        # FocalNet T/S (96) and B (128); srf k 3/5, lrf k 3/5/7; large fl4 (192) adds a 4th level (k 9)
        for base, levels in ((96, ((3, 5), (3, 5, 7))), (128, ((3, 5), (3, 5, 7))), (192, ((3, 5, 7, 9),))):
            for i, H in enumerate(res):
                for ks in levels:
                    yield (f'focal_context C{base << i} {H} k{"/".join(map(str, ks))} {layout}',
                           _focal_case(batch, base << i, H, ks, dtype, cl))
        # EfficientMod xxs/xs/s context conv (k 7), and the largest kernel the ops take (k 15)
        for C, H in ((32, 56), (64, 28), (128, 14), (144, 14), (256, 7), (288, 7), (312, 7)):
            yield f'dwconv_gelu C{C} {H} k7 {layout}', _dwconv_case(batch, C, H, 7, dtype, cl)
        yield f'dwconv_gelu C96 56 k15 {layout}', _dwconv_case(batch, 96, 56, 15, dtype, cl)
        yield f'focal_context C96 56 k15 {layout}', _focal_case(batch, 96, 56, (15,), dtype, cl)
        # SMT T/S/B (64-256) and L (96-384), stages 1-3, 4 heads (k 3/5/7/9)
        for C, H in ((64, 56), (128, 28), (256, 14), (96, 56), (192, 28), (384, 14)):
            yield f'mixed_dwconv C{C} {H} 4 heads {layout}', _mixed_case(batch, C, H, 4, dtype, cl)
    for C, H in ((32, 56), (64, 28), (144, 14), (312, 7)):
        for r in (1, 4, 6):
            yield f'gelu_tile_mul C{C} {H} r{r}', _tile_mul_case(batch, C, H, r, dtype)


# ---------------------------------------------------------------------------------------------------------------------
# Recording launches and specialising them like the JIT

@dataclasses.dataclass
class Launch:
    kernel: object  # the JITFunction
    args: tuple
    kwargs: dict
    configs: list  # [(constexpr overrides, num_warps, num_stages)]


class _Recorder:
    def __init__(self, kernel, sink: List[Launch]):
        self.kernel, self.sink = kernel, sink

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            k = self.kernel
            if isinstance(k, _tuned_kernel_class()):  # every candidate the autotuner would time for these arguments
                fn = k.fn
                named = dict(zip([a for a in fn.arg_names if a not in kwargs], args, strict=False))  # trailing defaults
                fixed = {n: v for n, v in kwargs.items() if n not in k.tuned_keys}
                configs = [(dict(c.kwargs), c.num_warps, c.num_stages) for c in k.candidates_for(named)]
                self.sink.append(Launch(fn, args, fixed, configs))
            else:
                kwargs = dict(kwargs)
                configs = [({}, kwargs.pop('num_warps', 4), kwargs.pop('num_stages', 3))]
                self.sink.append(Launch(k, args, kwargs, configs))
        return launch


@contextlib.contextmanager
def recording_launches() -> Iterator[List[Launch]]:
    """Swap every tuned kernel of the ops' Triton modules for a recorder while the block runs, wherever a launcher
    looks it up: in the op's module or in the module that defines the kernel (the shared depthwise conv every conv
    op launches lives in the kernels' utilities)."""
    from ..kernels.validated import OPS
    tuned_kernel = _tuned_kernel_class()
    sink: List[Launch] = []
    saved = []
    modules = [op_modules(op)[1] for op in OPS]
    tuned = [k for mod in modules for k in mod.TUNED_KERNELS]
    homes = [sys.modules[getattr(k.fn, 'fn', k.fn).__module__] for k in tuned]
    for mod in dict.fromkeys(modules + homes):
        for name, obj in list(vars(mod).items()):
            if isinstance(obj, tuned_kernel) and any(obj is k for k in tuned):
                saved.append((mod, name, obj))
                setattr(mod, name, _Recorder(obj, sink))
    try:
        yield sink
    finally:
        for mod, name, obj in saved:
            setattr(mod, name, obj)


def _int_type(v: int) -> str:
    if -2 ** 31 <= v < 2 ** 31:
        return 'i32'
    return 'u64' if v >= 2 ** 63 else 'i64'


def specialise(launch: Launch) -> Iterator[dict]:
    """One compile spec per autotune candidate: ``fn, signature, constexprs, attrs, num_warps, num_stages``."""
    fn = launch.kernel
    # parameters declared constexpr are specialised on their value however they are passed
    declared = {p.name for p in inspect.signature(fn.fn).parameters.values() if 'constexpr' in str(p.annotation)}
    for overrides, num_warps, num_stages in launch.configs:
        constexprs = dict(launch.kwargs, **overrides)
        values = dict(zip([a for a in fn.arg_names if a not in constexprs], launch.args, strict=False))
        sig, attrs = {}, {}
        for i, name in enumerate(fn.arg_names):
            if name in constexprs:
                sig[name] = 'constexpr'
                continue
            v = values[name]
            if name in declared:
                sig[name] = 'constexpr'
                constexprs[name] = v
                continue
            if isinstance(v, torch.Tensor):
                sig[name] = '*' + _TL_TYPES[v.dtype]
                aligned = (v.storage_offset() * v.element_size()) % 16 == 0  # allocations are 256-byte aligned
            elif isinstance(v, bool):
                sig[name], aligned = 'i1', False
            elif isinstance(v, int):
                if v == 1:  # the JIT turns an integer 1 into a constant
                    sig[name] = 'constexpr'
                    constexprs[name] = 1
                    continue
                sig[name], aligned = _int_type(v), v % 16 == 0
            elif isinstance(v, float):
                sig[name], aligned = 'fp32', False
            elif v is None:
                sig[name] = 'constexpr'
                constexprs[name] = None
                continue
            else:
                raise TypeError(f'{fn.__name__}: cannot specialise argument {name}={v!r}')
            if aligned:
                attrs[(i,)] = [['tt.divisibility', 16]]
        yield dict(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs, num_warps=num_warps,
                   num_stages=num_stages)


def _spec_key(spec: dict) -> tuple:
    return (spec['fn'].__name__, tuple(sorted(spec['signature'].items())), tuple(sorted(spec['attrs'])),
            tuple(sorted((k, str(v)) for k, v in spec['constexprs'].items())), spec['num_warps'], spec['num_stages'])


def collect_specs(dtypes: Sequence[str] = DTYPES, quick: bool = False, batch: int = 128, only: str = ''
                  ) -> List[dict]:
    """Every distinct compile spec the launchers produce on the model shapes (cases whose label contains
    ``only``), with the cases that use it."""
    seen: Dict[tuple, dict] = {}
    for dtype in dtypes:
        for label, run in model_cases(_TORCH_DTYPES[dtype], batch=batch, quick=quick):
            if only not in label:
                continue
            with recording_launches() as launches:
                run()
            for launch in launches:
                for spec in specialise(launch):
                    key = _spec_key(spec)
                    if key not in seen:
                        seen[key] = dict(spec, dtype=dtype, cases=[])
                    seen[key]['cases'].append(label)
    return list(seen.values())


# ---------------------------------------------------------------------------------------------------------------------
# SASS

def _nv_tool(name: str) -> str:
    import triton
    return os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin', name)


def _run_on_cubin(tool: str, flags: List[str], cubin: bytes) -> str:
    with tempfile.NamedTemporaryFile(suffix='.cubin') as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([_nv_tool(tool), *flags, f.name], capture_output=True, text=True).stdout


def resource_usage(cubin: bytes) -> Dict[str, int]:
    text = _run_on_cubin('cuobjdump', ['--dump-resource-usage'], cubin)
    usage = {}
    for key in ('REG', 'STACK', 'SHARED', 'LOCAL'):
        m = re.search(rf'\b{key}:(\d+)', text)
        usage[key.lower()] = int(m.group(1)) if m else -1
    return usage


_INSTR = re.compile(r'/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;')
_LABEL = re.compile(r'^\s*(\.L_x_\d+):')
_BRANCH = re.compile(r'\bBRA\b.*`\((\.L_x_\d+)\)')


def parse_sass(text: str) -> Tuple[List[Tuple[int, str]], Dict[str, int]]:
    """``([(address, instruction)], {label: address})`` of the first kernel in ``nvdisasm -c`` output."""
    instrs, labels, pending = [], {}, []
    for line in text.splitlines():
        m = _LABEL.match(line)
        if m:
            pending.append(m.group(1))
            continue
        m = _INSTR.search(line)
        if m:
            addr = int(m.group(1), 16)
            for lab in pending:
                labels[lab] = addr
            pending = []
            instrs.append((addr, m.group(2)))
    return instrs, labels


_CMP = re.compile(r'U?ISETP\.\w+[\w.]*\s+U?P\w+,\s*U?PT,\s*(U?R\d+),\s*(\S+?)\s*(?:,|$)')


def _trip_count(body: List[str]) -> Optional[int]:
    """A loop's constant trip count: its last compare tests a counter, stepped by an immediate, against an
    immediate (``body``: the loop's own instructions, nested loops left out). None for a runtime bound."""
    compares = [m for m in map(_CMP.search, body) if m and '.EX ' not in m.group(0)]  # .EX: a 64-bit high half
    if not compares or not compares[-1].group(2).startswith('0x'):
        return None
    reg, bound = compares[-1].group(1), int(compares[-1].group(2), 16)
    for ins in body:
        step = re.search(rf'(?:U?IADD3|VIADD)\S*\s+{reg},\s*(?:U?P\w+,\s*)?{reg},\s*(0x[0-9a-f]+)', ins)
        if step and int(step.group(1), 16) > 0:
            return max(1, bound // int(step.group(1), 16))
    return None


def sass_figures(text: str) -> dict:
    """Instruction counts of one kernel's SASS: total, loops, and the trip-weighted count of the per-tile work."""
    instrs, labels = parse_sass(text)
    index = {addr: i for i, (addr, _) in enumerate(instrs)}
    spans = []
    for i, (addr, ins) in enumerate(instrs):
        m = _BRANCH.search(ins)
        if m and m.group(1) in labels and labels[m.group(1)] < addr:  # a backward branch (not the end trap)
            spans.append((index[labels[m.group(1)]], i))
    loops = []  # (start index, end index, trip count or None)
    for s, e in spans:
        nested = [(a, b) for a, b in spans if s <= a and b <= e and (a, b) != (s, e)]
        own = [ins for j, (_, ins) in enumerate(instrs[s:e + 1], s) if not any(a <= j <= b for a, b in nested)]
        loops.append((s, e, _trip_count(own)))
    weights = [1] * len(instrs)
    for start, end, trips in loops:
        if trips:
            for i in range(start, end + 1):
                weights[i] *= trips
    runtime = [(s, e) for s, e, t in loops if t is None]
    # the per-tile work: every outermost loop with a runtime trip count (the loops over a program's tiles; a
    # second pass over them inside a constant-trip tap loop counts times its taps), else the whole kernel
    outer = [(s, e) for s, e in runtime if not any(a <= s and e <= b and (a, b) != (s, e) for a, b in runtime)]
    region = sorted({i for s, e in outer for i in range(s, e + 1)}) if outer else range(len(instrs))
    return dict(instructions=len(instrs), loops=len(loops), constant_loops=sum(1 for loop in loops if loop[2]),
                trips=[t for _, _, t in loops], per_tile=sum(weights[i] for i in region),
                per_tile_is_loop=bool(runtime))


def elements_per_thread(constexprs: dict, num_warps: int) -> float:
    c = constexprs
    if 'BLOCK_M' in c:
        tile = c['BLOCK_M'] * c['BLOCK_C']
    else:
        tile = c['BLOCK_C'] * c['TH'] * c['TW']
    return tile / (32 * num_warps)


def compile_spec(spec: dict, arch: int = ARCH) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    fn = spec['fn']
    row = dict(kernel=fn.__name__, dtype=spec['dtype'], num_warps=spec['num_warps'], cases=spec['cases'],
               config={k: v for k, v in spec['constexprs'].items()
                       if k.isupper() and v is not None and not isinstance(v, bool)},
               flags=sorted(k for k, v in spec['constexprs'].items() if v is True))
    start = time.perf_counter()
    try:
        src = ASTSource(fn=fn, signature=spec['signature'], constexprs=spec['constexprs'], attrs=spec['attrs'])
        compiled = triton.compile(src, target=GPUTarget('cuda', arch, 32),
                                  options=dict(num_warps=spec['num_warps'], num_stages=spec['num_stages']))
        cubin = compiled.asm['cubin']
        figures = sass_figures(_run_on_cubin('nvdisasm', ['-c'], cubin))
        ept = elements_per_thread(spec['constexprs'], spec['num_warps'])
        row.update(ok=True, **resource_usage(cubin), shared_bytes=int(compiled.metadata.shared), **figures,
                   elements_per_thread=ept, per_element=round(figures['per_tile'] / ept, 1))
    except Exception as e:  # report every failure, not just the first
        row.update(ok=False, error=f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else e}')
    row['seconds'] = round(time.perf_counter() - start, 2)
    return row


def static_report(dtypes: Sequence[str] = DTYPES, quick: bool = False, arch: int = ARCH, only: str = '',
                  log: Optional[Callable[[str], None]] = print) -> List[dict]:
    from ..kernels import interpreter_enabled
    if interpreter_enabled():
        raise RuntimeError('the static report needs TRITON_INTERPRET unset (interpreted kernels cannot be compiled)')
    specs = collect_specs(dtypes, quick=quick, only=only)
    rows = []
    for n, spec in enumerate(specs, 1):
        row = compile_spec(spec, arch)
        rows.append(row)
        if log:
            cfg = ' '.join(f'{k}={v}' for k, v in row['config'].items())
            if row['ok']:
                log(f"[{n}/{len(specs)}] ok   {row['kernel']:<26} {row['dtype']:<8} {cfg} nw={row['num_warps']}: "
                    f"regs {row['reg']} local {row['local']} smem {row['shared_bytes']} "
                    f"instr/elem {row['per_element']} ({row['seconds']:.1f}s)")
            else:
                log(f"[{n}/{len(specs)}] FAIL {row['kernel']:<26} {row['dtype']:<8} {cfg}: {row['error']}")
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# Markdown

def _summarise(rows: List[dict]) -> List[dict]:
    """One line per (kernel, dtype): ranges over its configurations."""
    groups: Dict[Tuple[str, str], List[dict]] = {}
    for r in rows:
        if r['ok']:
            groups.setdefault((r['kernel'], r['dtype']), []).append(r)
    out = []
    for (kernel, dtype), rs in sorted(groups.items()):
        def rng(key, rs=rs):
            lo, hi = min(r[key] for r in rs), max(r[key] for r in rs)
            return f'{lo}' if lo == hi else f'{lo}-{hi}'
        out.append(dict(kernel=kernel, dtype=dtype, configs=len(rs), regs=rng('reg'), local=rng('local'),
                        smem=rng('shared_bytes'), per_element=rng('per_element')))
    return out


# The figure a kernel is judged by, per dtype: its configurations at k = 7 (SMT's: every configuration, its four
# heads k = 3/5/7/9 counted per element of one head's tile; kernels without a kernel size: every configuration).
JUDGED_K = 7
# Per kernel: (FMAs, tensors moved) per element at k = 7, for the roofline column. FocalNet's passes move 2-4
# tensors (its last level's final pass: src, the partial sum and out, plus gates); SMT's figures sum its 4 heads.
WORK_AT_K7 = {
    '_dwconv_act_fwd_kernel': (49, 2),
    '_focal_fwd_kernel': (49, 3),
    '_mixed_dw_fwd_kernel': (9 + 25 + 49 + 81, 8),
    '_dwconv_gelu_bwd_kernel': (2 * 49, 3),
    '_focal_bwd_level_kernel': (2 * 49, 4),
    '_mixed_dw_bwd_kernel': (2 * (9 + 25 + 49 + 81), 12),
    '_focal_bwd_global_kernel': (0, 1),
    '_tile_mul_fwd_kernel': (0, 3),
    '_tile_mul_bwd_kernel': (0, 5),
}
# H100 SXM: 33.5 T FP32 FMA/s (the SM issues one warp instruction per scheduler and clock, so every instruction
# takes an FMA's issue slot) against 3.35 TB/s of HBM3: a kernel is issue-bound above 10 instructions per byte.
INSTR_PER_BYTE_BALANCE = 33.5e12 / 3.35e12
_BYTES = {'float32': 4, 'bfloat16': 2, 'float16': 2}


def judged_rows(rows: List[dict], kernel: str, dtype: str) -> List[dict]:
    rs = [r for r in rows if r['ok'] and r['kernel'] == kernel and r['dtype'] == dtype]
    if any('K' in r['config'] for r in rs):
        return [r for r in rs if r['config'].get('K') == JUDGED_K]
    return rs


def _range_cell(rs: List[dict]) -> str:
    if not rs:
        return '–'
    lo, hi = min(r['per_element'] for r in rs), max(r['per_element'] for r in rs)
    # ptxas reports registers spilled by a fully unrolled kernel as stack, not local memory
    spills = sum(1 for r in rs if r['local'] > 0 or r['stack'] > 0)
    return (f'{lo}' if lo == hi else f'{lo}–{hi}') + (f' ({spills} of {len(rs)} spill)' if spills else '')


def _bound(kernel: str, dtype: str, per_element: float) -> str:
    fmas, tensors = WORK_AT_K7.get(kernel, (0, 1))
    intensity = per_element / (tensors * _BYTES[dtype])
    return f"{'FP32 issue' if intensity > INSTR_PER_BYTE_BALANCE else 'DRAM'} ({intensity:.1f} instr/B)"


def comparison_markdown(runs: Sequence[Tuple[str, List[dict]]]) -> List[str]:
    """Instructions per element of every kernel at k = 7 per run (the last is the current one), the FMAs they
    must do, and the roofline bound at the last run's best configuration."""
    last = runs[-1][1]
    kernels = sorted({r['kernel'] for _, rows in runs for r in rows if r['ok']})
    dtypes = [d for d in ('float32', 'bfloat16') if any(r['dtype'] == d for _, rows in runs for r in rows)]
    lines = [f'Instructions per element at k = {JUDGED_K} (range over the autotune candidates; SMT: its four heads, '
             'k = 3/5/7/9, summed per element of one head\'s tile), the FMAs per element they must issue, and the '
             f'roofline bound of the best candidate of the last column: an H100 SXM issues '
             f'{INSTR_PER_BYTE_BALANCE:.0f} FP32-rate instructions per byte of HBM3 traffic, so a kernel above that '
             'many instructions per byte moved is issue-bound (FP32 FMA roofline), below it DRAM-bound. "Spill": '
             'candidates with local memory or a stack (ptxas puts the spills of a fully unrolled kernel there).', '']

    def row(kernel, dtype):
        best = judged_rows(last, kernel, dtype)
        bound = _bound(kernel, dtype, min(r['per_element'] for r in best)) if best else '–'
        return [f'`{kernel}`', dtype, *(_range_cell(judged_rows(rows, kernel, dtype)) for _, rows in runs),
                WORK_AT_K7.get(kernel, ('–',))[0], bound]

    lines += markdown_table(['kernel', 'dtype', *(name for name, _ in runs), 'FMAs', 'bound'],
                            (row(kernel, dtype) for kernel in kernels for dtype in dtypes))
    return lines + ['']


def markdown(rows: List[dict], baselines: Sequence[Tuple[str, List[dict]]] = (), name: str = 'now') -> str:
    """The report as markdown; ``baselines``: ``(name, rows)`` of earlier runs (other commits or Triton versions),
    compared with this one (``name``) kernel by kernel."""
    ok = [r for r in rows if r['ok']]
    failed = [r for r in rows if not r['ok']]
    lines = [
        f'{len(ok)}/{len(rows)} kernel configurations compile for sm_{ARCH}; '
        f'{sum(1 for r in ok if r["local"] > 0)} spill to local memory; '
        f'{sum(1 for r in ok if r["stack"] > 0)} use a call stack (at most '
        f'{max([r["stack"] for r in ok] or [0])} bytes per thread). '
        'Instructions per element: static SASS instructions of one tile, constant-trip loops counted times their '
        'trip count, divided by the tile elements one thread owns (SASS from Triton\'s bundled nvdisasm).',
        '',
    ]
    if baselines:
        lines += comparison_markdown(list(baselines) + [(name, rows)])
    lines += markdown_table(
        ['kernel', 'dtype', 'configs', 'registers', 'local bytes', 'shared bytes', 'instr / element'],
        ([f"`{s['kernel']}`", s['dtype'], s['configs'], s['regs'], s['local'], s['smem'], s['per_element']]
         for s in _summarise(rows)))
    for r in failed:
        lines.append(f"\nFAILED: `{r['kernel']}` {r['dtype']} {escape(r['config'])}: {escape(r['error'])}")
    return '\n'.join(lines)


def _median(vals):
    vals = sorted(vals)
    return vals[len(vals) // 2] if vals else None


# ---------------------------------------------------------------------------------------------------------------------
# Command line (tools/kernel_static_report.py, modzoo-kernel-static-report)

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Compile every modzoo Triton kernel configuration used at the '
                                     "models' layer shapes for sm_90, without a GPU, and report registers, spills, "
                                     'shared memory and SASS instructions per output element.')
    parser.add_argument('--dtype', nargs='+', default=['float32', 'bfloat16', 'float16'],
                        choices=['float32', 'bfloat16', 'float16'], help='activation dtypes (weights stay fp32)')
    parser.add_argument('--quick', action='store_true', help='one small case per op instead of every model shape')
    parser.add_argument('--only', default='', metavar='TEXT', help='only the cases whose label contains TEXT')
    parser.add_argument('--json', metavar='PATH', help='write every row (one per compiled configuration) here')
    parser.add_argument('--baseline', metavar='PATH', action='append', default=[],
                        help='an earlier --json output, shown as "before" (repeat for several)')
    parser.add_argument('--baseline-name', action='append', default=[],
                        help='how the table names each --baseline, in order (default: baseline)')
    parser.add_argument('--name', default='now', help="how the comparison table names this run's column")
    parser.add_argument('--note', default='', help='a sentence added to the BENCHMARKS.md section (e.g. how the '
                        'baselines were produced)')
    parser.add_argument('--write-benchmarks', action='store_true', help='replace the section in BENCHMARKS.md')
    parser.add_argument('--from-json', metavar='PATH', help='render an earlier --json output instead of compiling')
    parser.add_argument('--force', action='store_true', help='overwrite an existing --json file')
    return parser.parse_args(argv)


def _load_json(path: str, what: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f'error: cannot read {what}{path}: {e}', file=sys.stderr)
        return None


def main(argv=None) -> int:
    """Exit status 1 when a configuration fails to compile, 2 on bad arguments."""
    args = parse_args(argv)
    if os.environ.get('TRITON_INTERPRET', '0') not in ('', '0'):
        print('error: TRITON_INTERPRET is set; unset it (interpreted kernels cannot be compiled)', file=sys.stderr)
        return 2
    if args.json and os.path.exists(args.json) and not args.force:
        print(f'error: {args.json} exists; pass --force to overwrite it', file=sys.stderr)
        return 2
    try:  # --force allows replacing an earlier report, never a file this run reads
        if args.json:
            check_output_file(args.json, '--json')
        check_distinct_paths({'--json': args.json}, {'--from-json': args.from_json, **{
            f'--baseline {i + 1}': path for i, path in enumerate(args.baseline)}})
    except UsageError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if len(args.baseline_name) > len(args.baseline):
        print('error: more --baseline-name than --baseline', file=sys.stderr)
        return 2
    baselines = []
    for i, path in enumerate(args.baseline):
        base = _load_json(path, 'the baseline ')
        if base is None:
            return 2
        baselines.append((args.baseline_name[i] if i < len(args.baseline_name) else 'baseline', base))
    if args.from_json:
        rows = _load_json(args.from_json, '')
        if rows is None:
            return 2
    else:
        rows = static_report(args.dtype, quick=args.quick, only=args.only)
    if not rows:
        print(f'error: no case label contains {args.only!r}', file=sys.stderr)
        return 2
    table = markdown(rows, baselines, args.name)
    print(table)
    write_report(rows, args.json, [section_block(args, baselines, table)] if args.write_benchmarks else [])
    return 1 if any(not r['ok'] for r in rows) else 0


def section_block(args: argparse.Namespace, baselines: Sequence[Tuple[str, List[dict]]], table: str) -> Block:
    """The BENCHMARKS.md section: the command and compiler, what was compiled, the baselines, the report."""
    import triton
    flags = ' '.join((['--quick'] if args.quick else []) + ['--dtype', *args.dtype]
                     + (['--only', repr(args.only)] if args.only else []))
    scope = ('one small model case per op (`--quick`: FocalNet C96 56 px k3/5/7 NCHW, EfficientMod C32 56 px '
             'k7 NHWC, EfficientMod tile-mul C32 r6, SMT C64 56 px 4 heads NHWC), every autotune candidate'
             if args.quick else 'every model layer shape and every autotune candidate')
    before = (' The other columns are `--json` outputs of the same tool and flags: '
              + '; '.join(n for n, _ in baselines) + '.' if baselines else '')
    before += f' {args.note}' if args.note else ''
    return Block(BENCHMARKS, START, END,
                 '## Fused kernels: static sm_90 compile report\n\n'
                 f'`python tools/kernel_static_report.py {flags}` (Triton {triton.__version__}; no GPU needed: '
                 f'ptxas, nvdisasm and cuobjdump bundled with Triton), {scope}. Static figures: they depend on '
                 f'the compiler, not on the machine.{before}\n\n{table}')
