#!/usr/bin/env python
"""GPU benchmark of modzoo's fused Triton kernels against eager PyTorch and torch.compile.

    python tools/bench_kernels.py                                   # every op, bf16 + fp32, batch 128 at 224
    python tools/bench_kernels.py --ops focal_context --dtype bfloat16 --no-compile
    python tools/bench_kernels.py --e2e zoo_focalnet_tiny_srf zoo_efficientmod_s zoo_smt_small
    python tools/bench_kernels.py --write-benchmarks                # refresh the kernels section of BENCHMARKS.md
    python tools/bench_kernels.py --dry-run                         # CPU: exercise the script under the interpreter

Per op, at the per-stage shapes of FocalNet-T (srf and lrf), EfficientMod-s and SMT-S at 224 (batch 128), with the
inputs laid out as the models produce them (channel slices of a 1x1-conv output, permuted channels-last views):

* forward and forward+backward time (median, ``triton.testing.do_bench``, L2 flushed) of eager PyTorch (the
  reference in ``modzoo.kernels.reference``), ``torch.compile`` of that reference (static shapes, default mode) and
  the fused kernel (``set_backend('triton')``);
* achieved bandwidth, twice: the op's compulsory DRAM traffic (each input read once, each output written once) / time
  against the card's nominal peak, and the traffic the fused kernels move by design (intermediate levels, ``dz``
  buffers, halo re-reads not counted) / time against a measured device-to-device copy, i.e. how close the kernels
  run to the memory system's practical limit;
* peak memory above the inputs during one call (forward: the output; forward+backward: saved tensors, temporaries and
  gradients), beside the time;
* the fused kernel's max error against eager, checked before any timing.

``--e2e`` times whole training steps (SGD, bf16 autocast, channels-last optional) of timm models with the kernels on
and off; the models must call ``modzoo.kernels`` (the kernel calls seen in one step are reported, so an unwired model
shows 0). Without a CUDA GPU the script refuses, except with ``--dry-run``, which runs every code path on tiny shapes
on the CPU under the Triton interpreter (timings meaningless, marked as such, never written to BENCHMARKS.md).
"""
import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, 'BENCHMARKS.md')
START, END = '<!-- kernels:start -->', '<!-- kernels:end -->'
OPS = ('focal_context', 'dwconv_gelu', 'gelu_tile_mul', 'mixed_dwconv_interleave')

# Nominal DRAM bandwidth (vendor datasheets), GB/s, matched against torch.cuda.get_device_name()
PEAK_BANDWIDTH_GBS = [
    ('H200', 4800), ('H100 NVL', 3900), ('H100 PCIe', 2000), ('H100', 3350), ('GH200', 4000),
    ('A100-SXM4-80GB', 2039), ('A100 80GB PCIe', 1935), ('A100', 1555), ('L40S', 864), ('L4', 300),
    ('A10G', 600), ('RTX 4090', 1008), ('RTX 3090', 936), ('V100', 900), ('T4', 320),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--ops', nargs='+', default=list(OPS), choices=OPS)
    p.add_argument('--dtype', nargs='+', default=['bfloat16', 'float32'], choices=['float32', 'float16', 'bfloat16'])
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--resolution', type=int, default=224)
    p.add_argument('--no-compile', action='store_true', help='skip the torch.compile column (saves compile time)')
    p.add_argument('--warmup', type=int, default=25, help='do_bench warmup, ms')
    p.add_argument('--rep', type=int, default=100, help='do_bench measuring time, ms')
    p.add_argument('--e2e', nargs='*', default=[], metavar='MODEL',
                   help='timm model names for the training-step comparison (kernels on vs off)')
    p.add_argument('--e2e-batch', type=int, default=128)
    p.add_argument('--e2e-steps', type=int, default=20)
    p.add_argument('--e2e-compile', action='store_true', help='also time torch.compile(model) in both modes')
    p.add_argument('--channels-last', action='store_true', help='e2e: run the models in channels_last')
    p.add_argument('--write-benchmarks', nargs='?', const=BENCHMARKS, default=None, metavar='PATH',
                   help=f'replace the section between {START} and {END} (default file: BENCHMARKS.md)')
    p.add_argument('--json', default=None, metavar='PATH', help='also write the raw results as JSON')
    p.add_argument('--stages', nargs='+', type=int, default=None, metavar='S',
                   help='only these stages (1-4); default all (stage 1 only with --dry-run)')
    p.add_argument('--dry-run', action='store_true',
                   help='CPU, Triton interpreter, tiny shapes: checks the script, not the speed')
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------------------
# cases: the models' per-stage shapes

@dataclass
class Case:
    op: str
    label: str          # e.g. "FocalNet-T srf s1 96x56^2"
    make: Callable      # (device, dtype) -> (args for the op, list of leaf tensors that get gradients)
    fwd_bytes: int      # compulsory traffic of the forward, bytes
    bwd_bytes: int      # compulsory traffic of the backward, bytes
    stage: int = 0
    moved_bytes: int = 0  # what the fused kernels move by design, forward + backward (0: the compulsory traffic)


def _stage_hw(resolution: int, stage: int) -> int:
    return math.ceil(resolution / (4 * 2 ** stage))


def build_cases(ops: Sequence[str], batch: int, resolution: int, channel_div: int, elt: Dict[str, int]) -> List[Case]:
    """``channel_div`` shrinks channel counts (dry run only). ``elt``: bytes per element of the op's dtype."""
    import torch
    cases: List[Case] = []
    B = batch

    if 'focal_context' in ops:
        for variant, sizes in (('srf', (3, 5)), ('lrf', (3, 5, 7))):
            L = len(sizes)
            for s, C in enumerate((96, 192, 384, 768)):
                C = max(1, C // channel_div)
                H = _stage_hw(resolution, s)

                def make(device, dtype, C=C, H=H, sizes=sizes, L=L):
                    f = torch.randn(B, 2 * C + L + 1, H, H, device=device, dtype=dtype)  # output of the 1x1 `f`
                    ctx, gates = _leaf_like(f[:, C:2 * C]), _leaf_like(f[:, 2 * C:])
                    kernels = [(torch.randn(C, 1, k, k, device=device) / k).requires_grad_() for k in sizes]
                    return (ctx, gates, kernels, False), [ctx, gates, *kernels]

                n, g = B * C * H * H, B * (L + 1) * H * H
                cases.append(Case('focal_context', f'FocalNet-T {variant} s{s + 1} {C}x{H}²', make,
                                  fwd_bytes=(2 * n + g) * elt['act'], bwd_bytes=(3 * n + 2 * g) * elt['act'], stage=s,
                                  moved_bytes=focal_moved_elements(L, n, g) * elt['act']))

    if 'dwconv_gelu' in ops:
        for s, C in enumerate((32, 64, 144, 312)):
            C = max(1, C // channel_div)
            H = _stage_hw(resolution, s)

            def make(device, dtype, C=C, H=H):
                x = _leaf_like(torch.randn(B, H, H, C, device=device, dtype=dtype).permute(0, 3, 1, 2))
                w = (torch.randn(C, 1, 7, 7, device=device) / 7).requires_grad_()
                b = torch.randn(C, device=device).requires_grad_()
                return (x, w, b), [x, w, b]

            n = B * C * H * H
            # backward: dz pass (read x, dy; write dz) + transposed conv (read dz, write dx)
            cases.append(Case('dwconv_gelu', f'EfficientMod-s s{s + 1} {C}x{H}² k7', make,
                              fwd_bytes=2 * n * elt['act'], bwd_bytes=3 * n * elt['act'], stage=s,
                              moved_bytes=7 * n * elt['act']))

    if 'gelu_tile_mul' in ops:
        for s, C in enumerate((32, 64, 144, 312)):
            C = max(1, C // channel_div)
            H = _stage_hw(resolution, s)
            for r in (6, 1):
                def make(device, dtype, C=C, H=H, r=r):
                    v = torch.randn(B, H, H, r * C, device=device, dtype=dtype).requires_grad_()
                    ctx = torch.randn(B, H, H, C, device=device, dtype=dtype).requires_grad_()
                    return (v, ctx, r > 1), [v, ctx]

                m = B * H * H * C
                cases.append(Case('gelu_tile_mul', f'EfficientMod-s s{s + 1} {C}x{H}² r{r}', make,
                                  fwd_bytes=(2 * r + 1) * m * elt['act'], bwd_bytes=(3 * r + 2) * m * elt['act'],
                                  stage=s))

    if 'mixed_dwconv_interleave' in ops:
        for s, C in enumerate((64, 128, 256)):  # SMT-S: SAM blocks in stages 1-3, 4 heads, k = 3, 5, 7, 9
            C = max(4, C // channel_div)
            H = _stage_hw(resolution, s)

            def make(device, dtype, C=C, H=H):
                # the model feeds `s(x).permute(0, 3, 1, 2)`: a channels-last view of a (B, H, W, C) Linear output
                x = _leaf_like(torch.randn(B, H, H, C, device=device, dtype=dtype).permute(0, 3, 1, 2))
                ws = [(torch.randn(C // 4, 1, k, k, device=device) / k).requires_grad_() for k in (3, 5, 7, 9)]
                bs = [torch.randn(C // 4, device=device).requires_grad_() for _ in range(4)]
                return (x, ws, bs), [x, *ws, *bs]

            n = B * C * H * H
            cases.append(Case('mixed_dwconv_interleave', f'SMT-S s{s + 1} {C}x{H}² h4', make,
                              fwd_bytes=2 * n * elt['act'], bwd_bytes=3 * n * elt['act'], stage=s))
    return cases


def focal_moved_elements(L: int, n: int, g: int) -> int:
    """Elements the focal-context kernels read + write by design (``n`` = ctx elements, ``g`` = gate elements);
    see the pass plan in ``modzoo/kernels/_focal_triton.py``."""
    fwd = 2 * n if L >= 2 else 0                                      # level 1: ctx -> c_1
    for level in range(2, L):                                         # c_{l-1} -> c_l, running gated sum
        fwd += 3 * n + (n if level >= 3 else 0)
    fwd += n                                                          # mean pass over c_L (recomputed)
    fwd += 2 * n + (n if L >= 3 else 0) + g                           # final pass
    bwd = 2 * n * (L - 1) + n + g                                     # recompute c_1..c_{L-1}; global level
    bwd += 3 * n + 4 * n * (L - 1) + L * g                            # level passes L .. 1
    bwd += 2 * n                                                      # transposed conv -> dctx
    return fwd + bwd


def _leaf_like(t):
    """A leaf tensor that keeps ``t``'s strides (a channel slice stays a slice of a bigger buffer)."""
    t = t.detach()
    return t.requires_grad_()


# ---------------------------------------------------------------------------------------------------------------------
# timing and memory

class Runner:
    def __init__(self, device, dry_run: bool, warmup: int, rep: int):
        self.device = device
        self.dry_run = dry_run
        self.warmup = warmup
        self.rep = rep

    def time_ms(self, fn: Callable, grad_to_none: Optional[List] = None) -> float:
        if self.dry_run:  # the interpreter: one timed call, just to run the code path
            fn()
            start = time.perf_counter()
            fn()
            return (time.perf_counter() - start) * 1e3
        from triton.testing import do_bench
        return do_bench(fn, warmup=self.warmup, rep=self.rep, grad_to_none=grad_to_none, return_mode='median')

    def peak_mib(self, fn: Callable, grad_to_none: Optional[List] = None) -> float:
        """Memory allocated during one call above what was allocated before it (MiB); NaN on the CPU."""
        import torch
        if self.device.type != 'cuda':
            return float('nan')
        for t in grad_to_none or []:
            t.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        for t in grad_to_none or []:
            t.grad = None
        return peak / 2 ** 20


def copy_bandwidth_gbs(device) -> float:
    """Achievable DRAM bandwidth: a 1 GiB device-to-device copy (read + write)."""
    import torch
    from triton.testing import do_bench
    src = torch.empty(2 ** 28, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode='median')
    return 2 * src.numel() * 4 / ms / 1e6


def nominal_bandwidth_gbs(name: str) -> Optional[float]:
    for key, gbs in PEAK_BANDWIDTH_GBS:
        if key.lower() in name.lower():
            return float(gbs)
    return None


# ---------------------------------------------------------------------------------------------------------------------
# one op case

TOLERANCE = {'float32': 1e-4, 'float16': 2e-2, 'bfloat16': 8e-2}  # max |fused - eager| / max(1, max |eager|)


def _flat_grads(leaves):
    return [t.grad for t in leaves]


def _rel_err(a, b) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1.0)).item()


def run_case(case: Case, dtype_name: str, runner: Runner, use_compile: bool, compile_backend: str) -> dict:
    import torch
    import modzoo.kernels as K
    from modzoo.kernels import reference as R

    dtype = getattr(torch, dtype_name)
    op = getattr(K, case.op)
    ref = getattr(R, f'{case.op}_reference')
    args, leaves = case.make(runner.device, dtype)
    row = dict(op=case.op, case=case.label, dtype=dtype_name)

    # low precision runs as in mixed-precision training: activations in `dtype`, float32 weights, autocast on
    amp = torch.autocast(runner.device.type, dtype=dtype, enabled=dtype != torch.float32)

    # correctness first: fused vs eager, forward and every gradient
    with K.use_backend('torch'), amp:
        expected = ref(*args)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    want = [g.clone() for g in _flat_grads(leaves)]
    for t in leaves:
        t.grad = None
    with K.use_backend('triton'), amp:
        out = op(*args)
    out.backward(grad)
    errs = [_rel_err(out, expected)] + [_rel_err(g, w) for g, w in zip(_flat_grads(leaves), want)]
    row['max_rel_err'] = max(errs)
    row['correct'] = row['max_rel_err'] <= TOLERANCE[dtype_name]
    for t in leaves:
        t.grad = None
    del out, expected, want

    impls = {'eager': ('torch', ref), 'fused': ('triton', op)}
    if use_compile:
        torch._dynamo.reset()
        impls['compile'] = ('torch', torch.compile(ref, dynamic=False, backend=compile_backend))
    for name, (backend, fn) in impls.items():
        with K.use_backend(backend):
            def fwd():
                with torch.no_grad(), amp:
                    return fn(*args)

            def fwd_bwd():
                with amp:
                    y = fn(*args)
                y.backward(grad)

            row[f'{name}_fwd_ms'] = runner.time_ms(fwd)
            row[f'{name}_fwdbwd_ms'] = runner.time_ms(fwd_bwd, grad_to_none=leaves)
            row[f'{name}_fwd_mib'] = runner.peak_mib(fwd)
            row[f'{name}_fwdbwd_mib'] = runner.peak_mib(fwd_bwd, grad_to_none=leaves)
    row['fwd_gb'] = case.fwd_bytes / 1e9
    row['fwdbwd_gb'] = (case.fwd_bytes + case.bwd_bytes) / 1e9
    row['moved_gb'] = (case.moved_bytes or case.fwd_bytes + case.bwd_bytes) / 1e9
    row['fused_moved_gbs'] = row['moved_gb'] / row['fused_fwdbwd_ms'] * 1e3
    for name in impls:
        row[f'{name}_fwd_gbs'] = row['fwd_gb'] / row[f'{name}_fwd_ms'] * 1e3
        row[f'{name}_fwdbwd_gbs'] = row['fwdbwd_gb'] / row[f'{name}_fwdbwd_ms'] * 1e3
    return row


# ---------------------------------------------------------------------------------------------------------------------
# end-to-end training step

def _count_kernel_calls(model, x, y, loss_fn) -> Dict[str, int]:
    """modzoo custom-op calls in one forward+backward (0 when the model does not call modzoo.kernels)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    counts: Dict[str, int] = {}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == 'modzoo':
                name = func._schema.name.split('::')[1]
                counts[name] = counts.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    with Count():
        loss_fn(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counts


def run_e2e(name: str, args, runner: Runner) -> List[dict]:
    import timm
    import torch
    import modzoo  # noqa: F401  (registers zoo_* models)
    import modzoo.kernels as K

    device = runner.device
    res = 32 if args.dry_run else args.resolution
    batch = 2 if args.dry_run else args.e2e_batch
    steps = 1 if args.dry_run else args.e2e_steps
    kwargs = dict(num_classes=10) if args.dry_run else {}
    rows = []
    for compiled in ((False, True) if args.e2e_compile else (False,)):
        for backend in ('torch', 'triton'):
            torch.manual_seed(0)
            model = timm.create_model(name, **kwargs).to(device).train()
            fmt = torch.channels_last if args.channels_last else torch.contiguous_format
            model = model.to(memory_format=fmt)
            x = torch.randn(batch, 3, res, res, device=device).to(memory_format=fmt)
            y = torch.randint(0, model.num_classes, (batch,), device=device)
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            loss_fn = torch.nn.CrossEntropyLoss()
            autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == 'cuda')
            with K.use_backend(backend):
                with autocast:
                    calls = _count_kernel_calls(model, x, y, loss_fn)
                step_model = torch.compile(model) if compiled else model

                def step():
                    with autocast:
                        loss = loss_fn(step_model(x), y)
                    loss.backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)

                for _ in range(1 if args.dry_run else 3):  # warm-up (and compilation)
                    step()
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                times = []
                for _ in range(steps):
                    if device.type == 'cuda':
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    step()
                    if device.type == 'cuda':
                        torch.cuda.synchronize()
                    times.append((time.perf_counter() - start) * 1e3)
                peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == 'cuda' else float('nan')
            rows.append(dict(model=name, kernels=backend, compiled=compiled, step_ms=statistics.median(times),
                             img_s=batch / statistics.median(times) * 1e3, peak_gib=peak,
                             kernel_calls=sum(calls.values()), calls=calls))
            del model, opt, step_model
            if device.type == 'cuda':
                torch.cuda.empty_cache()
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# reporting

def _fmt(v, digits=3):
    if isinstance(v, float):
        if math.isnan(v):
            return '–'
        return f'{v:.{digits}f}'
    return str(v)


def op_table(rows: List[dict], use_compile: bool, peak_gbs: Optional[float], copy_gbs: Optional[float]) -> str:
    impls = ['eager'] + (['compile'] if use_compile else []) + ['fused']
    names = '/'.join(impls)
    ratios = 'vs eager' + (' / vs compile' if use_compile else '')
    head = ['op', 'shape', 'dtype', f'fwd ms ({names})', f'fwd speed-up ({ratios})',
            f'fwd+bwd ms ({names})', f'fwd+bwd speed-up ({ratios})',
            'fused fwd+bwd GB/s compulsory (% peak)', 'fused fwd+bwd GB/s moved (% copy)',
            f'fwd+bwd peak MiB ({names})', 'max rel err']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [r['op'], r['case'], r['dtype']]
        for mode in ('fwd', 'fwdbwd'):
            cells.append(' / '.join(_fmt(r[f'{i}_{mode}_ms']) for i in impls))
            speed = [r[f'eager_{mode}_ms'] / r[f'fused_{mode}_ms']]
            if use_compile:
                speed.append(r[f'compile_{mode}_ms'] / r[f'fused_{mode}_ms'])
            cells.append(' / '.join(f'{v:.2f}×' for v in speed))
        gbs, moved = r['fused_fwdbwd_gbs'], r['fused_moved_gbs']
        cells += [f'{gbs:.0f} (' + (f'{100 * gbs / peak_gbs:.0f}%' if peak_gbs else '–') + ')',
                  f'{moved:.0f} (' + (f'{100 * moved / copy_gbs:.0f}%' if copy_gbs else '–') + ')',
                  ' / '.join(_fmt(r[f'{i}_fwdbwd_mib'], 0) for i in impls),
                  f"{r['max_rel_err']:.1e}" + ('' if r['correct'] else ' **MISMATCH**')]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def e2e_table(rows: List[dict]) -> str:
    lines = ['| model | compiled | kernels | step ms | img/s | peak GiB | modzoo kernel calls / step | speed-up |',
             '|---|---|---|---|---|---|---|---|']
    base = {}
    for r in rows:
        key = (r['model'], r['compiled'])
        if r['kernels'] == 'torch':
            base[key] = r['step_ms']
        speed = base[key] / r['step_ms'] if key in base else float('nan')
        lines.append(f"| {r['model']} | {r['compiled']} | {r['kernels']} | {_fmt(r['step_ms'], 1)} | "
                     f"{_fmt(r['img_s'], 0)} | {_fmt(r['peak_gib'], 2)} | {r['kernel_calls']} | {_fmt(speed, 2)} |")
    return '\n'.join(lines)


def write_section(path: str, body: str) -> None:
    from tools._bench_common import update_marked_file
    update_marked_file(path, START, END, f'{START}\n{body.rstrip()}\n{END}')


# ---------------------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        # must be set before modzoo's Triton kernels are imported (they are decorated at import)
        os.environ['TRITON_INTERPRET'] = '1'
    sys.path.insert(0, ROOT)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print('bench_kernels.py needs a CUDA GPU: torch.cuda.is_available() is False on this machine.\n'
              'Run it on a GPU machine, or use --dry-run to check the script on the CPU (Triton interpreter, tiny '
              'shapes, no meaningful timings).', file=sys.stderr)
        return 2
    if args.dry_run and args.write_benchmarks:
        print('--dry-run timings are meaningless; refusing to write them to BENCHMARKS.md', file=sys.stderr)
        return 2
    import triton

    import modzoo.kernels as K

    device = torch.device('cpu' if args.dry_run else 'cuda')
    runner = Runner(device, args.dry_run, args.warmup, args.rep)
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    if args.dry_run:
        batch, resolution, channel_div = 1, 32, 8
        card, peak_gbs, copy_gbs = 'CPU (dry run: Triton interpreter)', None, None
        compile_backend = 'aot_eager'  # traces like inductor, no C++ codegen: the code path, quickly
    else:
        batch, resolution, channel_div = args.batch, args.resolution, 1
        card = torch.cuda.get_device_name()
        peak_gbs = nominal_bandwidth_gbs(card)
        copy_gbs = copy_bandwidth_gbs(device)
        compile_backend = 'inductor'
    use_compile = not args.no_compile
    header = (f'{card}; torch {torch.__version__}, triton {triton.__version__}; batch {batch} at {resolution}²; '
              f'{datetime.date.today().isoformat()}')
    print(header)
    if not args.dry_run:
        print(f'nominal DRAM bandwidth {peak_gbs or "unknown"} GB/s, measured copy {copy_gbs:.0f} GB/s')

    rows = []
    for dtype in args.dtype:
        elt = {'act': torch.tensor([], dtype=getattr(torch, dtype)).element_size()}
        stages = args.stages or ([1] if args.dry_run else [1, 2, 3, 4])
        for case in build_cases(args.ops, batch, resolution, channel_div, elt):
            if case.stage + 1 not in stages:
                continue
            row = run_case(case, dtype, runner, use_compile, compile_backend)
            rows.append(row)
            print(f"{row['op']:<24} {row['case']:<32} {dtype:<9} "
                  f"eager {row['eager_fwdbwd_ms']:.3f} ms  fused {row['fused_fwdbwd_ms']:.3f} ms (fwd+bwd)  "
                  f"err {row['max_rel_err']:.1e}{'' if row['correct'] else '  MISMATCH'}", flush=True)
            if device.type == 'cuda':
                torch.cuda.empty_cache()

    e2e_rows = []
    for name in args.e2e:
        e2e_rows += run_e2e(name, args, runner)

    tables = [op_table(rows, use_compile, peak_gbs, copy_gbs)] if rows else []
    if e2e_rows:
        tables.append(e2e_table(e2e_rows))
    report = '\n\n'.join(tables)
    print('\n' + report)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(header=header, peak_gbs=peak_gbs, copy_gbs=copy_gbs, ops=rows, e2e=e2e_rows), f, indent=1)
    if args.write_benchmarks:
        cmd = 'python tools/bench_kernels.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
        body = (f'## Fused kernels (Triton) vs eager PyTorch and torch.compile\n\n{header}. Command: `{cmd.strip()}`.\n'
                f'Nominal DRAM bandwidth {peak_gbs or "unknown"} GB/s; measured device-to-device copy '
                f'{copy_gbs:.0f} GB/s. Times are medians of `triton.testing.do_bench` (L2 flushed). GB/s compulsory = '
                f'inputs read once + outputs written once, / time; GB/s moved = what the fused passes read and '
                f'write by design, / time; peak MiB = memory allocated above the inputs during one call; '
                f'low precision = activations in that dtype under autocast, float32 weights.\n\n{report}\n')
        write_section(args.write_benchmarks, body)
        print(f'wrote {args.write_benchmarks}')
    bad = [r for r in rows if not r['correct']]
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
