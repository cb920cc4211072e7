"""The prepared GPU check of the fused kernels: ``tools/gpu_check.py`` and ``modzoo-gpu-check`` call :func:`main`.

One run, in this order, each step under a time budget (a step that would start past its share of the budget is
skipped and reported as skipped, never guessed):

1. correctness of every op at the models' per-stage shapes, fp32 (TF32 off) and bf16 activations with fp32 weights
   under autocast: the forced Triton kernel and eager PyTorch in that dtype, each against the reference in float64,
   forward and every gradient; the kernel's two backward passes must agree bit for bit; the time of the first call
   (JIT compilation and autotuning included);
2. end-to-end bf16 training steps (SGD, autocast) of FocalNet-T srf, EfficientMod-s and SMT-S with the kernels
   forced on and off, timm's ``focalnet_tiny_srf`` beside them, with peak memory;
3. forward and forward+backward time of eager PyTorch, ``torch.compile`` and the fused kernel, replayed from CUDA
   graphs over enough input copies to defeat the L2 cache (no Python launch overhead, no cache-hot small stages),
   with peak memory and the roofline: the larger of compulsory bytes / DRAM bandwidth and FMAs / FP32 FMA rate of
   the card (:mod:`modzoo.kernels.gpu_info`), and which of the two bounds applies.

:func:`validated_entries` turns a run into validated-table entries: an (op, dtype) of the measured card qualifies
when every shape matched the fp64 reference, both backward passes agreed, every shape was timed, and the fused
forward+backward summed over the model shapes beat eager's. On the CPU (``dry_run``) the same steps run under the
Triton interpreter on tiny shapes (one case per op, bf16, models of one block per stage and a few channels, the
kernels on for EfficientMod-s only: the interpreter's cost grows with every launch), with ``torch.compile``'s
``aot_eager`` backend instead of Inductor and plain timed calls instead of CUDA graphs; their timings mean nothing,
and their table entries carry a GPU family no card has.
"""
import argparse
import datetime
import importlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from . import validated
from ..utils.marked_blocks import BENCHMARKS, update_marked_file
from .gpu_info import card_peak, gpu_family

__all__ = ['Settings', 'Case', 'build_cases', 'run_check', 'validated_entries', 'report_markdown',
           'E2E_MODELS', 'TOLERANCE', 'main']

START, END = '<!-- kernels:start -->', '<!-- kernels:end -->'

OPS = validated.OPS
DRY_RUN_FAMILY = 'sm00 dry run'
# modzoo models run with the kernels on and off; the timm model is the baseline beside them
E2E_MODELS = ('zoo_focalnet_tiny_srf', 'zoo_efficientmod_s', 'zoo_smt_small', 'timm:focalnet_tiny_srf')
# max |x - fp64| / max |fp64| a kernel may reach, unless it is within 2x of eager PyTorch in the same dtype
TOLERANCE = {'float32': 1e-4, 'float16': 1e-2, 'bfloat16': 5e-2}
# shares of the budget by which each step must have started (a step that finishes early leaves time to the next)
STEP_DEADLINES = {'correctness': 0.45, 'e2e': 0.7, 'timing': 0.95}
# the dry run's model sizes (one block per stage, a few channels: the interpreter's cost grows with the launch
# grid); the GPU run uses the registered sizes
DRY_RUN_MODEL_KWARGS = {
    'zoo_focalnet_tiny_srf': dict(depths=(1, 1, 1, 1), embed_dim=(4, 4, 4, 4)),
    'zoo_efficientmod_s': dict(depths=(1, 1, 1, 1), attention_depth=(0, 0, 1, 1), embed_dim=(4, 4, 4, 4)),
    'zoo_smt_small': dict(depths=(1, 1, 1, 1), embed_dims=(4, 4, 8, 8), sa_num_heads=(-1, -1, 2, 2)),
}


@dataclass
class Settings:
    device: str = 'cuda'
    dry_run: bool = False
    dtypes: Tuple[str, ...] = ('bfloat16', 'float32')
    ops: Tuple[str, ...] = OPS
    batch: int = 128
    resolution: int = 224
    channel_div: int = 1            # shrinks channel counts (dry run)
    stages: Tuple[int, ...] = (1, 2, 3, 4)
    cases_per_op: int = 0           # > 0: only the first cases of each op (dry run)
    use_compile: bool = True
    compile_backend: str = 'inductor'
    budget_s: float = 420.0
    graph_calls: int = 20           # calls captured in one CUDA graph
    replays: int = 5                # timed replays (median)
    e2e_models: Tuple[str, ...] = E2E_MODELS
    e2e_kernel_models: Tuple[str, ...] = E2E_MODELS[:3]   # the models also run with the kernels on
    e2e_batch: int = 128
    e2e_resolution: int = 224
    e2e_warmup: int = 3
    e2e_steps: int = 10

    @classmethod
    def for_dry_run(cls, **overrides) -> 'Settings':
        base = dict(device='cpu', dry_run=True, batch=1, resolution=16, channel_div=24, stages=(1,), cases_per_op=1,
                    dtypes=('bfloat16',), compile_backend='aot_eager', graph_calls=1, replays=1, e2e_batch=2,
                    e2e_resolution=32, e2e_warmup=0, e2e_steps=1,
                    # kernels on for one model: the same code path for each, and the interpreter is slow
                    e2e_kernel_models=('zoo_efficientmod_s',))
        base.update(overrides)
        return cls(**base)


# ---------------------------------------------------------------------------------------------------------------------
# cases: the models' per-stage shapes, laid out as the models produce them

@dataclass
class Case:
    op: str
    label: str
    stage: int                       # 1-4
    make: Callable                   # (device, dtype) -> (op args, leaf tensors that get gradients)
    fwd_bytes: int                   # compulsory traffic (inputs read once, outputs written once)
    bwd_bytes: int
    fwd_fmas: int
    bwd_fmas: int


def _stage_hw(resolution: int, stage: int) -> int:
    return math.ceil(resolution / (4 * 2 ** (stage - 1)))


def _example_inputs(op: str) -> Callable:
    # the op's module, not the op function the package exports under the same name
    return importlib.import_module(f'{__package__}.{op}').example_inputs


def build_cases(settings: Settings, act_bytes: int) -> List[Case]:
    B, res, div = settings.batch, settings.resolution, settings.channel_div
    cases: List[Case] = []
    if 'focal_context' in settings.ops:
        for variant, sizes in (('srf', (3, 5)), ('lrf', (3, 5, 7))):
            L, taps = len(sizes), sum(k * k for k in sizes)
            for s, C in enumerate((96, 192, 384, 768), 1):
                C, H = max(4, C // div), _stage_hw(res, s)

                def make(device, dtype, C=C, H=H, sizes=sizes):
                    return _example_inputs('focal_context')(B, C, H, sizes, dtype, device)

                n, g = B * C * H * H, B * (L + 1) * H * H
                cases.append(Case('focal_context', f'FocalNet-T {variant} s{s} {C}x{H}²', s, make,
                                  (2 * n + g) * act_bytes, (3 * n + 2 * g) * act_bytes,
                                  n * (taps + L + 1), 2 * n * (taps + L + 1)))
    if 'dwconv_gelu' in settings.ops:
        for s, C in enumerate((32, 64, 144, 312), 1):
            C, H = max(4, C // div), _stage_hw(res, s)

            def make(device, dtype, C=C, H=H):
                return _example_inputs('dwconv_gelu')(B, C, H, 7, dtype, device)

            n = B * C * H * H
            cases.append(Case('dwconv_gelu', f'EfficientMod-s s{s} {C}x{H}² k7', s, make,
                              2 * n * act_bytes, 3 * n * act_bytes, 49 * n, 2 * 49 * n))
    if 'gelu_tile_mul' in settings.ops:
        for s, C in enumerate((32, 64, 144, 312), 1):
            C, H = max(4, C // div), _stage_hw(res, s)
            for r in (6, 1):
                def make(device, dtype, C=C, H=H, r=r):
                    return _example_inputs('gelu_tile_mul')(B, C, H, r, dtype, device)

                m = B * H * H * C
                cases.append(Case('gelu_tile_mul', f'EfficientMod-s s{s} {C}x{H}² r{r}', s, make,
                                  (2 * r + 1) * m * act_bytes, (3 * r + 2) * m * act_bytes, r * m, 2 * r * m))
    if 'mixed_dwconv_interleave' in settings.ops:
        for s, C in enumerate((64, 128, 256), 1):  # SMT-S: SAM blocks in stages 1-3, 4 heads, k = 3, 5, 7, 9
            C, H = max(4, C // div), _stage_hw(res, s)

            def make(device, dtype, C=C, H=H):
                return _example_inputs('mixed_dwconv_interleave')(B, C, H, (3, 5, 7, 9), dtype, device)

            n = B * C * H * H
            taps = (9 + 25 + 49 + 81) / 4
            cases.append(Case('mixed_dwconv_interleave', f'SMT-S s{s} {C}x{H}² h4', s, make,
                              2 * n * act_bytes, 3 * n * act_bytes, int(n * taps), int(2 * n * taps)))
    cases = [c for c in cases if c.stage in settings.stages]
    if settings.cases_per_op:
        cases = [c for c in cases if [d.op for d in cases].index(c.op) + settings.cases_per_op
                 > cases.index(c)]
    return cases


# ---------------------------------------------------------------------------------------------------------------------
# machinery

class Budget:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.perf_counter()
        self.skipped: List[str] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self, step: str, what: str) -> bool:
        if self.elapsed() <= STEP_DEADLINES[step] * self.seconds:
            return True
        self.skipped.append(f'{step}: {what}')
        print(f'[budget] {self.elapsed():.0f} s elapsed: skipping {step} of {what}', flush=True)
        return False


def _attempt(fn: Callable[[], dict], what: dict, log: Callable[[str], None]) -> dict:
    """``fn()``, or ``what`` with the error when it raises: one crash must not cost the rest of the run."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 -- recorded in the results and the report, and fails the run
        message = f'{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}'
        log(f'ERROR  {" ".join(str(v) for v in what.values())}: {message}')
        return dict(what, error=message)


def _map_args(args, fn):
    if isinstance(args, torch.Tensor):
        return fn(args)
    if isinstance(args, (list, tuple)):
        return type(args)(_map_args(a, fn) for a in args)
    return args


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    want = want.double()
    return ((got.double() - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def _amp(device: torch.device, dtype: torch.dtype):
    # low precision as in mixed-precision training: activations in `dtype`, float32 weights, autocast on; without
    # autocast's cast cache, which CUDA graph capture does not allow
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32, cache_enabled=False)


class _Tf32Off:
    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def measure_ms(device: torch.device, call: Callable[[int], None], n_inputs: int, settings: Settings
               ) -> Tuple[float, bool]:
    """Median time of one ``call(i)`` (``i`` cycles over ``n_inputs`` input copies) and whether CUDA graphs were
    used. On CUDA the calls are captured ``graph_calls`` at a time into one graph and replayed; should capture fail,
    they are timed as plain launches (flagged)."""
    k = settings.graph_calls
    if device.type != 'cuda':  # the dry run: the interpreter's timings mean nothing, so no warm-up either
        times = []
        for _ in range(settings.replays):
            start = time.perf_counter()
            for i in range(k):
                call(i % n_inputs)
            times.append((time.perf_counter() - start) * 1e3 / k)
        return statistics.median(times), False
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up (compilation, autotuning, lazy init) outside the capture
        for i in range(max(3, n_inputs)):
            call(i % n_inputs)
    torch.cuda.current_stream(device).wait_stream(side)
    torch.cuda.synchronize(device)
    graphed = True
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for i in range(k):
                call(i % n_inputs)
        run = graph.replay
    except Exception as e:  # noqa: BLE001 -- some calls cannot be captured; time them as launches instead
        print(f'[timing] CUDA graph capture failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); timing '
              f'plain launches', flush=True)
        torch.cuda.synchronize(device)
        graphed = False

        def run():
            for i in range(k):
                call(i % n_inputs)
    run()
    torch.cuda.synchronize(device)
    times = []
    for _ in range(settings.replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / k)
    del run
    if graphed:
        del graph
    return statistics.median(times), graphed


def peak_mib(device: torch.device, call: Callable[[], None]) -> float:
    """Memory allocated during one call above what was allocated before it (MiB); NaN on the CPU."""
    if device.type != 'cuda':
        return float('nan')
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    call()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20


def kernel_calls(fn: Callable[[], None]) -> Dict[str, int]:
    """modzoo custom-op calls made by ``fn`` (0 when a model does not reach ``modzoo.kernels``)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    counts: Dict[str, int] = {}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == 'modzoo':
                name = func._schema.name.split('::')[1]
                counts[name] = counts.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return counts


# ---------------------------------------------------------------------------------------------------------------------
# step 1: correctness, determinism, first call

def check_case(case: Case, dtype_name: str, device: torch.device) -> dict:
    import modzoo.kernels as K
    dtype = getattr(torch, dtype_name)
    op, ref = getattr(K, case.op), getattr(K, f'{case.op}_reference')
    args, leaves = case.make(device, dtype)
    amp = _amp(device, dtype)

    def grads():
        out = [t.grad for t in leaves]
        for t in leaves:
            t.grad = None
        return out

    with K.use_backend('triton'):
        _sync(device)
        start = time.perf_counter()
        with amp:
            y = op(*args)
        grad = torch.randn_like(y)
        y.backward(grad)
        _sync(device)
        first_call_s = time.perf_counter() - start
        fused = [y.detach()] + grads()
        with amp:
            y = op(*args)
        y.backward(grad)
        again = [y.detach()] + grads()
    deterministic = all(torch.equal(a, b) for a, b in zip(fused, again))
    with K.use_backend('torch'):
        with amp:
            y = ref(*args)
        y.backward(grad)
        eager = [y.detach()] + grads()
        # the float64 reference of the same inputs (an op's low-precision inputs are exact in float64)
        leaves64 = {id(t): t.detach().double().requires_grad_() for t in leaves}
        args64 = _map_args(args, lambda t: leaves64.get(id(t), t))
        y64 = ref(*args64)
        y64.backward(grad.double())
        exact = [y64.detach()] + [leaves64[id(t)].grad for t in leaves]
    fused_err = max(_rel_err(a, b) for a, b in zip(fused, exact))
    eager_err = max(_rel_err(a, b) for a, b in zip(eager, exact))
    correct = fused_err <= max(TOLERANCE[dtype_name], 2 * eager_err)
    return dict(op=case.op, case=case.label, stage=case.stage, dtype=dtype_name, fused_err=fused_err,
                eager_err=eager_err, correct=correct, deterministic=deterministic, first_call_s=first_call_s)


# ---------------------------------------------------------------------------------------------------------------------
# step 3: timing and roofline

def time_case(case: Case, dtype_name: str, device: torch.device, settings: Settings, peak, l2_bytes: int) -> dict:
    import modzoo.kernels as K
    dtype = getattr(torch, dtype_name)
    op, ref = getattr(K, case.op), getattr(K, f'{case.op}_reference')
    amp = _amp(device, dtype)
    traffic = case.fwd_bytes + case.bwd_bytes
    n_inputs = 1 if device.type != 'cuda' else max(1, min(16, math.ceil(3 * l2_bytes / max(1, traffic))))
    inputs = [case.make(device, dtype) for _ in range(n_inputs)]
    with torch.no_grad(), amp:
        grads = [torch.randn_like(ref(*args)) for args, _ in inputs]
    row = dict(op=case.op, case=case.label, stage=case.stage, dtype=dtype_name, input_copies=n_inputs)
    impls = {'eager': ('torch', ref), 'fused': ('triton', op)}
    if settings.use_compile:
        # one compiled function per row, timed through the forward of the training graph as well, so each row
        # compiles once
        start = time.perf_counter()
        compiled = torch.compile(ref, dynamic=False, backend=settings.compile_backend)
        try:
            with amp:
                y = compiled(*inputs[0][0])
            y.backward(grads[0])
            _sync(device)
            row['compile_first_call_s'] = time.perf_counter() - start
            impls['compile'] = ('torch', compiled)
        except Exception as e:  # noqa: BLE001 -- torch.compile's failure is reported and does not cost the row
            row['compile_error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}'
            print(f"[timing] torch.compile failed on {case.label} {dtype_name}: {row['compile_error']}", flush=True)
        for _, leaves in inputs:
            for t in leaves:
                t.grad = None
    for name, (backend, fn) in impls.items():
        with K.use_backend(backend):
            def fwd(i, fn=fn):
                with amp:
                    fn(*inputs[i][0])

            def fwd_bwd(i, fn=fn):
                with amp:
                    y = fn(*inputs[i][0])
                y.backward(grads[i])

            row[f'{name}_fwd_ms'], graphed_fwd = measure_ms(device, fwd, n_inputs, settings)
            row[f'{name}_fwdbwd_ms'], graphed_bwd = measure_ms(device, fwd_bwd, n_inputs, settings)
            row[f'{name}_graphed'] = graphed_fwd and graphed_bwd
            for _, leaves in inputs:
                for t in leaves:
                    t.grad = None
            row[f'{name}_fwdbwd_mib'] = peak_mib(device, lambda: fwd_bwd(0))
    for mode, nbytes, fmas in (('fwd', case.fwd_bytes, case.fwd_fmas),
                               ('fwdbwd', traffic, case.fwd_fmas + case.bwd_fmas)):
        row[f'{mode}_bytes'], row[f'{mode}_fmas'] = nbytes, fmas
        if peak is not None:
            mem_ms = nbytes / (peak.bandwidth_gbs * 1e9) * 1e3
            fma_ms = fmas / (peak.fp32_tflops * 1e12 / 2) * 1e3
            row[f'{mode}_roof_ms'] = max(mem_ms, fma_ms)
            row[f'{mode}_bound'] = 'memory' if mem_ms >= fma_ms else 'compute'
            row[f'{mode}_roofline_pct'] = 100 * row[f'{mode}_roof_ms'] / row[f'fused_{mode}_ms']
    inputs.clear()  # free the copies before emptying the cache
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return row


def copy_bandwidth_gbs(device: torch.device, settings: Settings) -> Optional[float]:
    """Achieved DRAM bandwidth of a 1 GiB device-to-device copy (read + write); None on the CPU."""
    if device.type != 'cuda':
        return None
    src = torch.empty(2 ** 28, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms, _ = measure_ms(device, lambda i, src=src, dst=dst: dst.copy_(src), 1, settings)
    del src, dst
    return 2 * 2 ** 28 * 4 / ms / 1e6


# ---------------------------------------------------------------------------------------------------------------------
# step 2: end-to-end training steps

def run_e2e(model_name: str, kernels: str, device: torch.device, settings: Settings) -> dict:
    import timm
    import modzoo  # noqa: F401  (registers the zoo_* models)
    import modzoo.kernels as K
    timm_name = model_name.split(':', 1)[1] if model_name.startswith('timm:') else model_name
    kwargs = dict(DRY_RUN_MODEL_KWARGS.get(model_name, {}), num_classes=10) if settings.dry_run else {}
    torch.manual_seed(0)
    model = timm.create_model(timm_name, **kwargs).to(device).train()
    batch, res = settings.e2e_batch, settings.e2e_resolution
    x = torch.randn(batch, 3, res, res, device=device)
    y = torch.randint(0, model.num_classes, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    def step(model=model, opt=opt):
        with autocast:
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    with K.use_backend(kernels):
        calls = kernel_calls(step)
        for _ in range(settings.e2e_warmup):
            step()
        _sync(device)
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(settings.e2e_steps):
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times.append((time.perf_counter() - start) * 1e3)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == 'cuda' else float('nan')
    step_ms = statistics.median(times)
    del step, model, opt
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return dict(model=model_name, kernels=kernels, batch=batch, resolution=res, step_ms=step_ms,
                img_s=batch / step_ms * 1e3, peak_gib=peak, kernel_calls=sum(calls.values()), calls=calls)


# ---------------------------------------------------------------------------------------------------------------------
# the run

def run_check(settings: Settings, log: Callable[[str], None] = print) -> dict:
    import triton
    device = torch.device(settings.device)
    budget = Budget(settings.budget_s)
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
        family = gpu_family(torch.cuda.get_device_capability(device), name)
        l2_bytes = torch.cuda.get_device_properties(device).L2_cache_size
    else:
        # a family no GPU has, so that the dry run's table entries go through the same checks and never match
        name, family, l2_bytes = 'CPU (dry run: Triton interpreter)', DRY_RUN_FAMILY, 0
    peak = card_peak(name) if device.type == 'cuda' else None
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
    if hasattr(torch._dynamo.config, 'recompile_limit'):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
    result = dict(card=name, gpu_family=family, dry_run=settings.dry_run, torch=torch.__version__,
                  triton=triton.__version__, date=datetime.date.today().isoformat(),
                  settings={k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()},
                  peak=asdict(peak) if peak else None, copy_gbs=copy_bandwidth_gbs(device, settings),
                  correctness=[], e2e=[], timing=[])
    log(f'{name} ({family}); torch {torch.__version__}, triton {triton.__version__}; budget {settings.budget_s:.0f} s')
    cases = {dtype: build_cases(settings, torch.tensor([], dtype=getattr(torch, dtype)).element_size())
             for dtype in settings.dtypes}
    with _Tf32Off():
        for dtype in settings.dtypes:
            for case in cases[dtype]:
                if not budget.allows('correctness', f'{case.op} {case.label} {dtype}'):
                    continue
                row = _attempt(lambda: check_case(case, dtype, device),
                               dict(op=case.op, case=case.label, dtype=dtype), log)
                result['correctness'].append(row)
                if 'error' in row:
                    continue
                log(f"check  {row['op']:<24} {row['case']:<28} {dtype:<9} err {row['fused_err']:.1e} "
                    f"(eager {row['eager_err']:.1e}) {'deterministic' if row['deterministic'] else 'NONDETERMINISTIC'}"
                    f" first call {row['first_call_s']:.2f} s{'' if row['correct'] else '  MISMATCH'}")
                if device.type == 'cuda':
                    torch.cuda.empty_cache()
    for model_name in settings.e2e_models:
        for kernels in ('torch', 'triton') if model_name in settings.e2e_kernel_models else ('torch',):
            if not budget.allows('e2e', f'{model_name} kernels={kernels}'):
                continue
            row = _attempt(lambda: run_e2e(model_name, kernels, device, settings),
                           dict(model=model_name, kernels=kernels), log)
            result['e2e'].append(row)
            if 'error' in row:
                continue
            log(f"train  {model_name:<24} kernels {kernels:<6} {row['step_ms']:.1f} ms/step, "
                f"{row['kernel_calls']} kernel calls, peak {row['peak_gib']:.2f} GiB")
    with _Tf32Off():
        for dtype in settings.dtypes:
            for case in cases[dtype]:
                if not budget.allows('timing', f'{case.op} {case.label} {dtype}'):
                    continue
                row = _attempt(lambda: time_case(case, dtype, device, settings, peak, l2_bytes),
                               dict(op=case.op, case=case.label, dtype=dtype), log)
                result['timing'].append(row)
                if 'error' in row:
                    continue
                log(f"time   {row['op']:<24} {row['case']:<28} {dtype:<9} fwd+bwd eager "
                    f"{row['eager_fwdbwd_ms']:.3f} ms, fused {row['fused_fwdbwd_ms']:.3f} ms")
    result['errors'] = [dict(step=step, **r) for step in ('correctness', 'e2e', 'timing') for r in result[step]
                        if 'error' in r]
    result['skipped'] = budget.skipped
    result['elapsed_s'] = budget.elapsed()
    result['entries'], result['verdicts'] = validated_entries(result)
    return result


def validated_entries(result: dict) -> Tuple[List[dict], List[dict]]:
    """(table entries, one verdict per measured (op, dtype)) for the card of a :func:`run_check` result."""
    entries, verdicts = [], []
    settings = result['settings']
    for op in settings['ops']:
        for dtype in settings['dtypes']:
            checked = [r for r in result['correctness'] if r['op'] == op and r['dtype'] == dtype]
            timed = [r for r in result['timing'] if r['op'] == op and r['dtype'] == dtype and 'error' not in r]
            expected = len(build_cases(Settings(**{**settings, 'ops': (op,)}), 1))
            eager = sum(r['eager_fwdbwd_ms'] for r in timed)
            fused = sum(r['fused_fwdbwd_ms'] for r in timed)
            if any('error' in r for r in checked):
                reason = 'crashed: ' + next(r['error'] for r in checked if 'error' in r)
            elif len(checked) < expected:
                reason = f'only {len(checked)} of {expected} shapes checked'
            elif not all(r['correct'] for r in checked):
                reason = 'mismatch against the fp64 reference'
            elif not all(r['deterministic'] for r in checked):
                reason = 'two backward passes differ'
            elif len(timed) < expected:
                reason = f'only {len(timed)} of {expected} shapes timed'
            elif fused >= eager:
                reason = f'not faster than eager (fwd+bwd over the shapes: {fused:.3f} vs {eager:.3f} ms)'
            else:
                reason = None
            verdict = dict(op=op, dtype=dtype, validated=reason is None,
                           reason=reason or f'fwd+bwd {eager / fused:.2f}x faster than eager over the shapes')
            verdicts.append(verdict)
            if reason is None:
                entries.append(dict(op=op, dtype=dtype, gpu=result['gpu_family'], card=result['card'],
                                    speedup_vs_eager=round(eager / fused, 3), date=result['date']))
    return entries, verdicts


# ---------------------------------------------------------------------------------------------------------------------
# report

def _f(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return '–'
    return f'{v:.{digits}f}' if isinstance(v, float) else str(v)


def report_markdown(result: dict, command: str) -> str:
    """The kernel section of BENCHMARKS.md for a :func:`run_check` result."""
    peak, s = result['peak'], result['settings']
    impls = ['eager'] + (['compile'] if s['use_compile'] else []) + ['fused']
    lines = [
        '## Fused kernels (Triton): GPU check', '',
        f"{result['card']} (`{result['gpu_family']}`); torch {result['torch']}, triton {result['triton']}; "
        f"{result['date']}; {result['elapsed_s']:.0f} s. Command: `{command}`.",
        '',
        'Peaks used for the roofline: ' + (f"{peak['bandwidth_gbs']:.0f} GB/s DRAM, {peak['fp32_tflops']} FP32 "
                                           f'TFLOP/s (datasheet)' if peak else 'unknown card, no roofline')
        + (f"; measured device-to-device copy {result['copy_gbs']:.0f} GB/s." if result['copy_gbs'] else '.'),
        '',
        '### Correctness (against the reference in float64, forward and every gradient; TF32 off)', '',
        '| op | shape | dtype | fused err | eager err | two backwards equal | first call s | verdict |',
        '|---|---|---|---|---|---|---|---|']
    for r in result['correctness']:
        if 'error' in r:
            lines.append(f"| {r['op']} | {r['case']} | {r['dtype']} | – | – | – | – | **ERROR** {r['error']} |")
            continue
        lines.append(f"| {r['op']} | {r['case']} | {r['dtype']} | {r['fused_err']:.1e} | {r['eager_err']:.1e} | "
                     f"{'yes' if r['deterministic'] else '**no**'} | {r['first_call_s']:.2f} | "
                     f"{'ok' if r['correct'] else '**MISMATCH**'} |")
    lines += ['', '### Validated-table verdicts (`auto` runs the kernel only where validated)', '',
              '| op | dtype | validated | why |', '|---|---|---|---|']
    for v in result['verdicts']:
        lines.append(f"| {v['op']} | {v['dtype']} | {'yes' if v['validated'] else 'no'} | {v['reason']} |")
    names = '/'.join(impls)
    lines += ['', f'### Op timing (batch {s["batch"]} at {s["resolution"]}², CUDA-graph replays; ms per call)', '',
              f'| op | shape | dtype | fwd ms ({names}) | fwd+bwd ms ({names}) | fwd+bwd speed-up vs eager | '
              f'fwd+bwd roofline % (bound) | fwd+bwd peak MiB ({names}) |',
              '|---|---|---|---|---|---|---|---|']
    for r in result['timing']:
        if 'error' in r:
            lines.append(f"| {r['op']} | {r['case']} | {r['dtype']} | **ERROR** {r['error']} | | | | |")
            continue
        graphed = all(r.get(f'{i}_graphed', True) for i in impls)
        lines.append(
            f"| {r['op']} | {r['case']} | {r['dtype']} | {' / '.join(_f(r.get(f'{i}_fwd_ms')) for i in impls)} | "
            f"{' / '.join(_f(r.get(f'{i}_fwdbwd_ms')) for i in impls)}{'' if graphed else ' (launches)'} | "
            f"{r['eager_fwdbwd_ms'] / r['fused_fwdbwd_ms']:.2f}× | "
            + (f"{r['fwdbwd_roofline_pct']:.0f}% ({r['fwdbwd_bound']})" if 'fwdbwd_roofline_pct' in r else '–')
            + f" | {' / '.join(_f(r.get(f'{i}_fwdbwd_mib'), 0) for i in impls)} |")
    lines += ['', f"### Training steps (bf16 autocast, SGD, batch {s['e2e_batch']} at {s['e2e_resolution']}²)", '',
              '| model | kernels | step ms | img/s | peak GiB | kernel calls / step | speed-up vs kernels off | '
              'speed-up vs timm focalnet_tiny_srf |',
              '|---|---|---|---|---|---|---|---|']
    off = {r['model']: r['step_ms'] for r in result['e2e'] if r['kernels'] == 'torch' and 'error' not in r}
    for r in result['e2e']:
        if 'error' in r:
            lines.append(f"| {r['model']} | {r['kernels']} | **ERROR** {r['error']} | | | | |")
            continue
        speed = off[r['model']] / r['step_ms'] if r['model'] in off else float('nan')
        vs_timm = off['timm:focalnet_tiny_srf'] / r['step_ms'] if 'timm:focalnet_tiny_srf' in off else float('nan')
        lines.append(f"| {r['model']} | {'n/a' if r['model'].startswith('timm:') else r['kernels']} | "
                     f"{r['step_ms']:.1f} | {r['img_s']:.0f} | {_f(r['peak_gib'], 2)} | {r['kernel_calls']} | "
                     f"{_f(speed, 2)}× | {_f(vs_timm, 2)}× |")
    if result['skipped']:
        lines += ['', f"Skipped by the time budget ({s['budget_s']:.0f} s): " + '; '.join(result['skipped']) + '.']
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------------------------------
# command line (tools/gpu_check.py, modzoo-gpu-check)

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description='The prepared GPU check of modzoo\'s fused Triton kernels: one run of at '
                                'most 8 minutes on an H100/H200.')
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
    """The section and the table, into ``out_dir`` (with the raw results), ``benchmarks`` and ``table``."""
    section = report_markdown(result, command)
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
    """Exit status 0 when every check passed, 1 when one failed, 2 on bad arguments or no GPU."""
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    if args.dry_run:
        if args.from_json or args.table or args.benchmarks != BENCHMARKS or args.no_write:
            return _fail('--dry-run writes only into --out; drop --from-json, --table, --benchmarks and --no-write')
        if os.environ.get('TRITON_INTERPRET') != '1':
            # Triton reads the flag when it is first imported, and timm imports it with modzoo: run again with it set
            env = dict(os.environ, TRITON_INTERPRET='1')
            return subprocess.call([sys.executable, '-m', f'{__package__}.gpu_check', *argv], env=env)
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

    if not args.dry_run and not torch.cuda.is_available():
        return _fail('needs a CUDA GPU (torch.cuda.is_available() is False); use --dry-run to check the script on '
                     'the CPU')
    overrides = dict(budget_s=args.budget_s, use_compile=not args.no_compile)
    if args.dtype:
        overrides['dtypes'] = tuple(args.dtype)
    settings = Settings.for_dry_run(**overrides) if args.dry_run else Settings(**overrides)
    result = run_check(settings)
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
