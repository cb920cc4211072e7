"""The prepared GPU check of the fused kernels: ``tools/gpu_check.py`` and ``modzoo-gpu-check`` call :func:`main`.

Made for one short contact with a lent GPU that has only its own software: it needs torch, Triton, timm and numpy,
nothing installed (``PYTHONPATH=$PWD python tools/gpu_check.py --out DIR`` from a checkout). It prints the versions,
the card and its clocks first, then runs its steps in this order, writing ``gpu_check.json``, the rendered section
``kernels_section.md``, the table ``validated_kernels.json`` and the log ``gpu_check.log`` into ``--out`` after every
step:

1. per op, at the models' per-stage shapes, in the first dtype (bf16 activations with fp32 weights under autocast):
   correctness of the forced Triton kernel and of eager PyTorch against the reference in float64, forward and every
   gradient, whether two backward passes agree bit for bit, the time of the first call (JIT compilation and
   autotuning included); then the forward and forward+backward time of eager PyTorch and of the kernel, replayed
   from CUDA graphs over enough input copies to defeat the L2 cache, with peak memory and the roofline (the larger
   of compulsory bytes / DRAM bandwidth and FMAs / FP32 FMA rate, :mod:`modzoo.kernels.gpu_info`);
2. bf16 training steps (SGD, autocast) of FocalNet-T srf, EfficientMod-s and SMT-S with the kernels forced on and
   off, timm's ``focalnet_tiny_srf`` beside them, with peak memory;
3. step 1 in the other dtypes (fp32, TF32 off);
4. ``torch.compile`` of the reference, timed like the others, last: its compiles cost the most.

A deadline counted from the process's start (imports included) bounds the run: a step that would start past its
phase's share of it is skipped and listed, and at the deadline a watchdog writes what was measured, marks it
stopped, and exits 0. :mod:`modzoo.bench.gpu_check_report` turns the results into verdicts and table entries.

``--dry-run`` runs the same steps on the CPU under the Triton interpreter on tiny shapes (one case per op, models of
one block per stage and a few channels), the CUDA timer's logic behind :class:`modzoo.bench.gpu_probe.CpuStandIn`,
``torch.compile`` with the ``aot_eager`` backend instead of Inductor; its timings mean nothing, and its table entries
carry a GPU family no card has.
"""
import argparse
import datetime
import functools
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, List, Optional, Tuple

import torch

from ..kernels import dispatch, validated
from ..kernels.gpu_info import card_peak, gpu_family
from ..utils.cli import UsageError, check_output_dir, check_output_file
from ..utils.marked_blocks import BENCHMARKS
from .gpu_check_report import END, START, ResultError, parse_result, report_markdown, validated_entries, \
    write_outputs
from .gpu_probe import START_ENV_VAR, CpuStandIn, copy_bandwidth_gbs, environment, kernel_calls, measure_ms, \
    peak_mib, process_start_time
from .report import read_results, write_json, write_text

__all__ = ['Settings', 'Case', 'build_cases', 'plan', 'run_check', 'validated_entries', 'report_markdown',
           'write_outputs', 'Recorder', 'E2E_MODELS', 'TOLERANCE', 'COMMAND', 'START', 'END', 'main']

COMMAND = 'PYTHONPATH=$PWD python tools/gpu_check.py --out DIR'

OPS = validated.OPS
DRY_RUN_FAMILY = 'sm00 dry run'
# modzoo models run with the kernels on and off; the timm model is the baseline beside them
E2E_MODELS = ('zoo_focalnet_tiny_srf', 'zoo_efficientmod_s', 'zoo_smt_small', 'timm:focalnet_tiny_srf')
# max |x - fp64| / max |fp64| a kernel may reach, unless it is within 2x of eager PyTorch in the same dtype
TOLERANCE = {'float32': 1e-4, 'float16': 1e-2, 'bfloat16': 5e-2}
# shares of the deadline by which each phase's steps must have started; the watchdog stops the run at 1.0
PHASE_SHARES = {'first dtype': 0.55, 'training': 0.75, 'other dtypes': 0.88, 'torch.compile': 0.96}
# seconds per step on an H100/H200, ASSUMED (never measured here: no GPU has run this yet) for --plan's estimate:
# a check compiles and autotunes the op's forward and backward kernels; a training run builds a model, compiles its
# kernels in the warm-up and takes 10 steps; a torch.compile row runs Inductor on the forward and the backward
ASSUMED_STEP_S = {'check': (2.0, 4.0), 'time': (1.0, 2.5), 'train': (8.0, 20.0), 'compile': (8.0, 15.0)}
# the dry run's model sizes (one block per stage, a few channels: the interpreter's cost grows with the launch
# grid); the GPU run uses the registered sizes
DRY_RUN_MODEL_KWARGS = {
    'zoo_focalnet_tiny_srf': dict(depths=(1, 1, 1, 1), embed_dim=(4, 4, 4, 4)),
    'zoo_efficientmod_s': dict(depths=(1, 1, 1, 1), attention_depth=(0, 0, 1, 1), embed_dim=(4, 4, 4, 4)),
    'zoo_smt_small': dict(depths=(1, 1, 1, 1), embed_dims=(4, 4, 8, 8), sa_num_heads=(-1, -1, 2, 2)),
    'timm:focalnet_tiny_srf': dict(depths=(1, 1, 1, 1), embed_dim=8),
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
    deadline_s: float = 400.0       # from process start
    graph_calls: int = 20           # calls captured in one CUDA graph
    replays: int = 5                # timed replays (median)
    warmup: int = 3                 # calls before capture (at least one per input copy)
    copy_numel: int = 2 ** 28       # float32 values of the bandwidth probe (1 GiB)
    e2e_models: Tuple[str, ...] = E2E_MODELS
    e2e_kernel_models: Tuple[str, ...] = E2E_MODELS[:3]   # the models also run with the kernels on
    e2e_batch: int = 128
    e2e_resolution: int = 224
    e2e_warmup: int = 3
    e2e_steps: int = 10

    @classmethod
    def for_dry_run(cls, **overrides) -> 'Settings':
        base = dict(device='cpu', dry_run=True, batch=1, resolution=16, channel_div=24, stages=(1,), cases_per_op=1,
                    compile_backend='aot_eager', graph_calls=1, replays=1, warmup=1, copy_numel=2 ** 10, e2e_batch=2,
                    e2e_resolution=32, e2e_warmup=0, e2e_steps=1)
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
    layout: str                      # as the dispatch names it (modzoo.kernels.dispatch.tensor_layout)
    kernel_sizes: Tuple[int, ...]    # depthwise kernel sizes, () for an op without one


def _stage_hw(resolution: int, stage: int) -> int:
    return math.ceil(resolution / (4 * 2 ** (stage - 1)))


def _example_inputs(op: str) -> Callable:
    # the op's module (modzoo.kernels.<op>_op); modzoo.kernels.<op> is the op function
    return importlib.import_module(f'modzoo.kernels.{op}_op').example_inputs


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
                                  n * (taps + L + 1), 2 * n * (taps + L + 1), 'last_dim_contiguous', sizes))
    if 'dwconv_gelu' in settings.ops:
        for s, C in enumerate((32, 64, 144, 312), 1):
            C, H = max(4, C // div), _stage_hw(res, s)

            def make(device, dtype, C=C, H=H):
                return _example_inputs('dwconv_gelu')(B, C, H, 7, dtype, device)

            n = B * C * H * H
            cases.append(Case('dwconv_gelu', f'EfficientMod-s s{s} {C}x{H}² k7', s, make,
                              2 * n * act_bytes, 3 * n * act_bytes, 49 * n, 2 * 49 * n, 'channels_last', (7,)))
    if 'gelu_tile_mul' in settings.ops:
        for s, C in enumerate((32, 64, 144, 312), 1):
            C, H = max(4, C // div), _stage_hw(res, s)
            for r in (6, 1):
                def make(device, dtype, C=C, H=H, r=r):
                    return _example_inputs('gelu_tile_mul')(B, C, H, r, dtype, device)

                m = B * H * H * C
                cases.append(Case('gelu_tile_mul', f'EfficientMod-s s{s} {C}x{H}² r{r}', s, make,
                                  (2 * r + 1) * m * act_bytes, (3 * r + 2) * m * act_bytes, r * m, 2 * r * m,
                                  'last_dim_contiguous', ()))
    if 'mixed_dwconv_interleave' in settings.ops:
        for s, C in enumerate((64, 128, 256), 1):  # SMT-S: SAM blocks in stages 1-3, 4 heads, k = 3, 5, 7, 9
            C, H = max(4, C // div), _stage_hw(res, s)

            def make(device, dtype, C=C, H=H):
                return _example_inputs('mixed_dwconv_interleave')(B, C, H, (3, 5, 7, 9), dtype, device)

            n = B * C * H * H
            taps = (9 + 25 + 49 + 81) / 4
            cases.append(Case('mixed_dwconv_interleave', f'SMT-S s{s} {C}x{H}² h4', s, make,
                              2 * n * act_bytes, 3 * n * act_bytes, int(n * taps), int(2 * n * taps),
                              'channels_last', (3, 5, 7, 9)))
    cases = [c for c in cases if c.stage in settings.stages]
    if settings.cases_per_op:
        cases = [c for c in cases if [d.op for d in cases].index(c.op) + settings.cases_per_op
                 > cases.index(c)]
    return cases


# ---------------------------------------------------------------------------------------------------------------------
# machinery

def _cuda_api(settings: Settings):
    return CpuStandIn() if settings.dry_run else torch.cuda


def _attempt(fn: Callable[[], dict], what: dict, log: Callable[[str], None]) -> dict:
    """``fn()``, or ``what`` with the error when it raises: one crash must not cost the rest of the run."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 -- recorded in the results and the report, and fails the run
        message = f'{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}'
        log(f'ERROR  {" ".join(str(v) for v in what.values() if not isinstance(v, list))}: {message}')
        return dict(what, error=message)


def _map_args(args, fn):
    if isinstance(args, torch.Tensor):
        return fn(args)
    if isinstance(args, (list, tuple)):
        return type(args)(_map_args(a, fn) for a in args)
    return args


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


# ---------------------------------------------------------------------------------------------------------------------
# the steps

def _ops():
    import modzoo.kernels as K
    return K


def check_case(case: Case, dtype_name: str, device: torch.device, cuda) -> dict:
    """Correctness against float64, determinism and the first call's time of the forced kernel at one shape."""
    K = _ops()
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
        cuda.synchronize(device)
        start = time.perf_counter()
        with amp, dispatch.observe_calls() as seen:
            y = op(*args)
        grad = torch.randn_like(y)
        y.backward(grad)
        cuda.synchronize(device)
        first_call_s = time.perf_counter() - start
        fused = [y.detach()] + grads()
        with amp:
            y = op(*args)
        y.backward(grad)
        again = [y.detach()] + grads()
    deterministic = all(torch.equal(a, b) for a, b in zip(fused, again, strict=True))
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
    fused_err = max(_rel_err(a, b) for a, b in zip(fused, exact, strict=True))
    eager_err = max(_rel_err(a, b) for a, b in zip(eager, exact, strict=True))
    correct = fused_err <= max(TOLERANCE[dtype_name], 2 * eager_err)
    call = next(c for c in seen if c['op'] == case.op)  # what the dispatch saw: the table entry's key
    return dict(_what(case, dtype_name), layout=call['layout'], arg_dtypes=call['dtypes'],
                kernel_sizes=call['kernel_sizes'] or list(case.kernel_sizes), fused_err=fused_err,
                eager_err=eager_err, correct=correct, deterministic=deterministic, first_call_s=first_call_s)


def _what(case: Case, dtype: str) -> dict:
    return dict(op=case.op, case=case.label, stage=case.stage, dtype=dtype, layout=case.layout,
                kernel_sizes=list(case.kernel_sizes), arg_dtypes=[])


def _inputs(case: Case, dtype_name: str, device: torch.device, l2_bytes: int):
    traffic = case.fwd_bytes + case.bwd_bytes
    n_inputs = 1 if device.type != 'cuda' else max(1, min(16, math.ceil(3 * l2_bytes / max(1, traffic))))
    inputs = [case.make(device, getattr(torch, dtype_name)) for _ in range(n_inputs)]
    with torch.no_grad(), _amp(device, getattr(torch, dtype_name)):
        grads = [torch.randn_like(getattr(_ops(), f'{case.op}_reference')(*args)) for args, _ in inputs]
    return inputs, grads


def _time_impl(row: dict, name: str, backend: str, fn, inputs, grads, device, dtype, settings: Settings,
               cuda) -> None:
    amp = _amp(device, dtype)
    with _ops().use_backend(backend):
        def fwd(i):
            with amp:
                fn(*inputs[i][0])

        def fwd_bwd(i):
            with amp:
                y = fn(*inputs[i][0])
            y.backward(grads[i])

        timing = (len(inputs), settings.graph_calls, settings.replays, settings.warmup)
        row[f'{name}_fwd_ms'], graphed_fwd = measure_ms(cuda, device, fwd, *timing)
        row[f'{name}_fwdbwd_ms'], graphed_bwd = measure_ms(cuda, device, fwd_bwd, *timing)
        row[f'{name}_graphed'] = graphed_fwd and graphed_bwd
        for _, leaves in inputs:
            for t in leaves:
                t.grad = None
        row[f'{name}_fwdbwd_mib'] = peak_mib(cuda, device, lambda: fwd_bwd(0))


def time_case(case: Case, dtype_name: str, device: torch.device, settings: Settings, peak, l2_bytes: int,
              cuda) -> dict:
    """Forward and forward+backward time of eager PyTorch and of the kernel at one shape, with the roofline."""
    K = _ops()
    dtype = getattr(torch, dtype_name)
    inputs, grads = _inputs(case, dtype_name, device, l2_bytes)
    row = dict(op=case.op, case=case.label, stage=case.stage, dtype=dtype_name, input_copies=len(inputs))
    _time_impl(row, 'eager', 'torch', getattr(K, f'{case.op}_reference'), inputs, grads, device, dtype, settings,
               cuda)
    _time_impl(row, 'fused', 'triton', getattr(K, case.op), inputs, grads, device, dtype, settings, cuda)
    for mode, nbytes, fmas in (('fwd', case.fwd_bytes, case.fwd_fmas),
                               ('fwdbwd', case.fwd_bytes + case.bwd_bytes, case.fwd_fmas + case.bwd_fmas)):
        row[f'{mode}_bytes'], row[f'{mode}_fmas'] = nbytes, fmas
        if peak is not None:
            mem_ms = nbytes / (peak.bandwidth_gbs * 1e9) * 1e3
            fma_ms = fmas / (peak.fp32_tflops * 1e12 / 2) * 1e3
            row[f'{mode}_roof_ms'] = max(mem_ms, fma_ms)
            row[f'{mode}_bound'] = 'memory' if mem_ms >= fma_ms else 'compute'
            row[f'{mode}_roofline_pct'] = 100 * row[f'{mode}_roof_ms'] / row[f'fused_{mode}_ms']
    inputs.clear()  # free the copies before emptying the cache
    cuda.empty_cache()
    return row


def compile_case(case: Case, dtype_name: str, device: torch.device, settings: Settings, l2_bytes: int,
                 cuda) -> dict:
    """``torch.compile`` of the reference at one shape: the first call (compilation) and the times."""
    K = _ops()
    dtype = getattr(torch, dtype_name)
    inputs, grads = _inputs(case, dtype_name, device, l2_bytes)
    row = dict(op=case.op, case=case.label, dtype=dtype_name)
    start = time.perf_counter()
    compiled = torch.compile(getattr(K, f'{case.op}_reference'), dynamic=False, backend=settings.compile_backend)
    try:
        with _amp(device, dtype):
            y = compiled(*inputs[0][0])
        y.backward(grads[0])
        cuda.synchronize(device)
        row['compile_first_call_s'] = time.perf_counter() - start
    except Exception as e:  # noqa: BLE001 -- torch.compile's failure is reported and costs only its column
        row['compile_error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}'
        return row
    for _, leaves in inputs:
        for t in leaves:
            t.grad = None
    _time_impl(row, 'compile', 'torch', compiled, inputs, grads, device, dtype, settings, cuda)
    inputs.clear()
    cuda.empty_cache()
    return row


def run_e2e(model_name: str, kernels: str, device: torch.device, settings: Settings, cuda) -> dict:
    import timm

    import modzoo  # noqa: F401  (registers the zoo_* models)
    K = _ops()
    timm_name = model_name.split(':', 1)[1] if model_name.startswith('timm:') else model_name
    kwargs = dict(DRY_RUN_MODEL_KWARGS.get(model_name, {}), num_classes=10) if settings.dry_run else {}
    torch.manual_seed(0)
    if settings.dry_run and model_name == 'timm:focalnet_tiny_srf':  # its entry point fixes the depths
        model = timm.models.focalnet.FocalNet(**kwargs)
    else:
        model = timm.create_model(timm_name, **kwargs)
    model = model.to(device).train()
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

    times, calls = [], {}
    with K.use_backend(kernels):
        for i in range(settings.e2e_warmup + settings.e2e_steps):
            if i == settings.e2e_warmup:
                cuda.reset_peak_memory_stats(device)
            cuda.synchronize(device)
            start = time.perf_counter()
            if i == 0:  # the first step counts the kernel calls (a warm-up step on a GPU; the dry run has none)
                calls = kernel_calls(step)
            else:
                step()
            cuda.synchronize(device)
            if i >= settings.e2e_warmup:
                times.append((time.perf_counter() - start) * 1e3)
    peak = cuda.max_memory_allocated(device) / 2 ** 30 if device.type == 'cuda' else float('nan')
    step_ms = statistics.median(times)
    del step, model, opt
    cuda.empty_cache()
    return dict(model=model_name, kernels=kernels, batch=batch, resolution=res, step_ms=step_ms,
                img_s=batch / step_ms * 1e3, peak_gib=peak, kernel_calls=sum(calls.values()), calls=calls)


# ---------------------------------------------------------------------------------------------------------------------
# the plan and the run

@dataclass
class Step:
    phase: str      # a key of PHASE_SHARES
    kind: str       # check, time, train, compile (a key of ASSUMED_STEP_S)
    what: str
    case: Optional[Case] = None
    dtype: str = ''
    model: str = ''
    kernels: str = ''


def plan(settings: Settings) -> List[Step]:
    """Every step of a run with these settings, in the order they run."""
    act = {d: torch.tensor([], dtype=getattr(torch, d)).element_size() for d in settings.dtypes}
    cases = {d: build_cases(settings, act[d]) for d in settings.dtypes}
    steps: List[Step] = []

    def round_robin(dtype):  # every op's first shape before any op's second: a deadline leaves none unchecked
        per_op = [[c for c in cases[dtype] if c.op == op] for op in settings.ops]
        return [group[i] for i in range(max(map(len, per_op), default=0)) for group in per_op if i < len(group)]

    def ops_phase(phase, dtype):
        for c in round_robin(dtype):
            steps.append(Step(phase, 'check', f'check {c.op} {c.label} {dtype}', c, dtype))
            steps.append(Step(phase, 'time', f'time {c.op} {c.label} {dtype}', c, dtype))

    if settings.dtypes:
        ops_phase('first dtype', settings.dtypes[0])
    for model in settings.e2e_models:
        for kernels in ('torch', 'triton') if model in settings.e2e_kernel_models else ('torch',):
            steps.append(Step('training', 'train', f'train {model} kernels={kernels}', model=model, kernels=kernels))
    for dtype in settings.dtypes[1:]:
        ops_phase('other dtypes', dtype)
    if settings.use_compile:
        for dtype in settings.dtypes:
            for c in round_robin(dtype):
                steps.append(Step('torch.compile', 'compile', f'torch.compile {c.op} {c.label} {dtype}', c, dtype))
    return steps


def estimate_s(steps: List[Step]) -> Tuple[float, float]:
    """(low, high) seconds of a GPU run of ``steps`` at the ASSUMED per-step costs (not a measurement)."""
    return (sum(ASSUMED_STEP_S[s.kind][0] for s in steps), sum(ASSUMED_STEP_S[s.kind][1] for s in steps))


class Recorder:
    """Writes the results into ``out_dir`` after every step, atomically; the watchdog finishes from its last copy."""

    def __init__(self, out_dir: Optional[str], command: str, started: float, log_file: Optional[str] = None):
        self.out_dir, self.command, self.started = out_dir, command, started
        self.lock = threading.Lock()
        self.snapshot: Optional[str] = None
        self.log_file = log_file
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)

    def log(self, line: str) -> None:
        print(line, flush=True)
        if self.log_file:
            with open(self.log_file, 'a') as f:
                f.write(line + '\n')

    def save(self, result: dict) -> None:
        result['elapsed_s'] = time.time() - self.started
        result['entries'], result['verdicts'] = validated_entries(result)
        with self.lock:
            self.snapshot = json.dumps(dict(result, command=self.command), indent=1)
            if self.out_dir:
                self._write(json.loads(self.snapshot), self.out_dir)

    def _write(self, result: dict, out_dir: str) -> None:
        write_json(os.path.join(out_dir, 'gpu_check.json'), result)
        write_text(os.path.join(out_dir, 'kernels_section.md'), report_markdown(result, self.command))
        validated.write_table(os.path.join(out_dir, 'validated_kernels.json'), [result['gpu_family']],
                              result['entries'])


def run_check(settings: Settings, recorder: Optional[Recorder] = None, started: Optional[float] = None) -> dict:
    """Run every step of :func:`plan` that starts in time; the results (also saved by ``recorder`` after each)."""
    import triton
    started = process_start_time() if started is None else started
    recorder = recorder or Recorder(None, 'run_check', started)
    log = recorder.log
    device, cuda = torch.device(settings.device), _cuda_api(settings)
    env = environment(device)
    log('environment: ' + ', '.join(f'{k} {v}' for k, v in env.items()))
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
    steps = plan(settings)
    result = dict(card=name, gpu_family=family, dry_run=settings.dry_run, torch=torch.__version__,
                  triton=triton.__version__, date=datetime.date.today().isoformat(), environment=env,
                  settings={k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()},
                  peak=asdict(peak) if peak else None, copy_gbs=None, plan=[s.what for s in steps], steps_done=0,
                  finished=False, stopped_at_deadline=False, correctness=[], timing=[], e2e=[], compile=[],
                  skipped=[], errors=[])
    recorder.save(result)
    try:
        result['copy_gbs'] = copy_bandwidth_gbs(cuda, device, settings.copy_numel, settings.graph_calls,
                                                settings.replays)
    except Exception as e:  # noqa: BLE001 -- a probe, not a check
        log(f'[probe] copy bandwidth failed: {type(e).__name__}: {e}')
    log(f'{name} ({family}); {len(steps)} steps; deadline {settings.deadline_s:.0f} s from process start, '
        f'{time.time() - started:.0f} s gone')
    crashed = set()
    with _Tf32Off():
        for i, step in enumerate(steps):
            result['steps_done'] = i
            elapsed = time.time() - started
            if elapsed > PHASE_SHARES[step.phase] * settings.deadline_s:
                result['skipped'].append(step.what)
                result['steps_done'] = i + 1
                log(f'[deadline] {elapsed:.0f} s gone: skipping {step.what}')
                continue
            key = (step.case.op, step.case.label, step.dtype) if step.case else None
            if step.kind == 'check':
                row = _attempt(functools.partial(check_case, step.case, step.dtype, device, cuda),
                               _what(step.case, step.dtype), log)
                result['correctness'].append(row)
                if 'error' in row:
                    crashed.add(key)
                else:
                    log(f"check  {row['op']:<24} {row['case']:<28} {row['dtype']:<9} err {row['fused_err']:.1e} "
                        f"(eager {row['eager_err']:.1e}) "
                        f"{'deterministic' if row['deterministic'] else 'NONDETERMINISTIC'} first call "
                        f"{row['first_call_s']:.2f} s{'' if row['correct'] else '  MISMATCH'}")
            elif step.kind == 'time':
                if key in crashed:  # its kernel crashed: timing it would only crash again
                    log(f'[skip] {step.what}: its check crashed')
                    result['steps_done'] = i + 1
                    continue
                row = _attempt(functools.partial(time_case, step.case, step.dtype, device, settings, peak, l2_bytes,
                                                 cuda),
                               dict(op=step.case.op, case=step.case.label, dtype=step.dtype), log)
                result['timing'].append(row)
                if 'error' not in row:
                    log(f"time   {row['op']:<24} {row['case']:<28} {row['dtype']:<9} fwd eager "
                        f"{row['eager_fwd_ms']:.3f} fused {row['fused_fwd_ms']:.3f} ms; fwd+bwd eager "
                        f"{row['eager_fwdbwd_ms']:.3f} fused {row['fused_fwdbwd_ms']:.3f} ms")
            elif step.kind == 'train':
                row = _attempt(functools.partial(run_e2e, step.model, step.kernels, device, settings, cuda),
                               dict(model=step.model, kernels=step.kernels), log)
                result['e2e'].append(row)
                if 'error' not in row:
                    log(f"train  {row['model']:<24} kernels {row['kernels']:<6} {row['step_ms']:.1f} ms/step, "
                        f"{row['kernel_calls']} kernel calls, peak {row['peak_gib']:.2f} GiB")
            else:
                row = _attempt(functools.partial(compile_case, step.case, step.dtype, device, settings, l2_bytes, cuda),
                               dict(op=step.case.op, case=step.case.label, dtype=step.dtype), log)
                result['compile'].append(row)
                if 'error' not in row and 'compile_error' not in row:
                    log(f"compile {row['op']:<23} {row['case']:<28} {row['dtype']:<9} first call "
                        f"{row['compile_first_call_s']:.1f} s; fwd {row['compile_fwd_ms']:.3f} ms, fwd+bwd "
                        f"{row['compile_fwdbwd_ms']:.3f} ms")
            if device.type == 'cuda':
                torch.cuda.empty_cache()
            result['errors'] = [dict(step=part, **r) for part in ('correctness', 'timing', 'e2e', 'compile')
                                for r in result[part] if 'error' in r]
            result['steps_done'] = i + 1
            recorder.save(result)
    result['finished'], result['steps_done'] = True, len(steps)
    recorder.save(result)
    return result


def stop_at_deadline(recorder: Recorder, deadline_s: float, finish: Callable[[dict], None],
                     exit: Callable[[int], None] = os._exit) -> threading.Timer:
    """A watchdog: at ``deadline_s`` from the process's start it marks the last saved results stopped, lists the
    steps not done, hands them to ``finish`` and exits the process with status 0 (``exit``: tests)."""
    def fire():
        for _ in range(30):  # a deadline already past at the start: the run's first save comes within seconds
            if recorder.snapshot is not None:
                break
            time.sleep(0.5)
        acquired = recorder.lock.acquire(timeout=30)  # a save in progress finishes first
        try:
            result = json.loads(recorder.snapshot) if recorder.snapshot else None
        finally:
            if acquired:
                recorder.lock.release()
        if result is not None:
            result['stopped_at_deadline'] = True
            result['skipped'] += result['plan'][result['steps_done']:]
            result['elapsed_s'] = time.time() - recorder.started
            recorder.log(f"[deadline] {deadline_s:.0f} s from process start: stopping during "
                         f"{(result['plan'][result['steps_done']:] or ['the end'])[0]}; writing what was measured")
            try:
                finish(result)
            except Exception as e:  # noqa: BLE001 -- the files of the last step are already in --out
                recorder.log(f'[deadline] writing failed: {type(e).__name__}: {e}')
        sys.stdout.flush()
        sys.stderr.flush()
        exit(0)

    timer = threading.Timer(max(0.0, recorder.started + deadline_s - time.time()), fire)
    timer.daemon = True
    timer.start()
    return timer


# ---------------------------------------------------------------------------------------------------------------------
# command line (tools/gpu_check.py, modzoo-gpu-check)

HELP_EPILOG = f"""On a lent GPU, from a bare checkout (no install; torch, Triton, timm and numpy are enough):

    {COMMAND}

It prints the versions, the card and its clocks first and writes gpu_check.json, kernels_section.md,
validated_kernels.json and gpu_check.log into DIR after every step; at the deadline (--deadline-s, counted from the
process's start) it writes what it has and exits 0. `--plan` lists the steps and an estimate of their time.
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog='gpu_check.py', description='The prepared GPU check of modzoo\'s fused Triton '
                                'kernels: one bounded run on an H100/H200.', epilog=HELP_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default=None, metavar='DIR', help='folder for gpu_check.json, kernels_section.md, '
                   'validated_kernels.json and gpu_check.log, rewritten after every step')
    p.add_argument('--dry-run', action='store_true', help='CPU, Triton interpreter, tiny shapes')
    p.add_argument('--plan', action='store_true', help='print the steps of the run and an estimate of its time; '
                   'run nothing')
    p.add_argument('--from-json', default=None, metavar='FILE', help='write BENCHMARKS.md and the table from the '
                   'gpu_check.json of an earlier run instead of running')
    p.add_argument('--deadline-s', type=float, default=400.0,
                   help='stop this many seconds after the process started, imports included (default 400)')
    p.add_argument('--dtype', nargs='+', default=None, choices=['bfloat16', 'float32', 'float16'],
                   help='activation dtypes, the first one before the training steps (default: bfloat16 float32)')
    p.add_argument('--no-compile', action='store_true', help='skip the torch.compile rows')
    p.add_argument('--no-write', action='store_true', help='write only into --out, not BENCHMARKS.md or the table')
    p.add_argument('--benchmarks', default=BENCHMARKS, metavar='PATH', help='BENCHMARKS.md to update')
    p.add_argument('--table', default=None, metavar='PATH', help='validated-kernel table to update (default: the '
                   'packaged modzoo/data/validated_kernels.json)')
    return p.parse_args(argv)


def _fail(message: str) -> int:
    print(f'gpu_check.py: {message}', file=sys.stderr)
    return 2


def _output_problem(args, table: str) -> Optional[str]:
    """What is wrong with a file this command would write (checked before it measures or writes anything)."""
    try:
        if args.out:
            check_output_dir(args.out, '--out')
        if not (args.no_write or args.dry_run):
            check_output_file(args.benchmarks, '--benchmarks')
            check_output_file(table, '--table')
            if os.path.exists(table):
                validated.load_table(table)  # a table that is not one is not replaced
    except (UsageError, validated.TableError) as e:
        return str(e)
    return None


def _from_json(args, table: str) -> int:
    """Write BENCHMARKS.md and the table from a saved GPU run, only once the whole file has passed its checks."""
    fix = 'pass the gpu_check.json a GPU run wrote'
    try:
        result = parse_result(read_results(args.from_json, fix=fix))
    except (UsageError, ResultError) as e:
        return _fail(f'--from-json {args.from_json}: {e}' if isinstance(e, ResultError) else str(e))
    if result['dry_run']:
        return _fail(f'{args.from_json} is from a --dry-run; its timings mean nothing, refusing to write them')
    try:
        write_outputs(result, str(result.get('command', COMMAND)), None if args.no_write else args.benchmarks,
                      None if args.no_write else table)
    except (ValueError, OSError) as e:  # e.g. a BENCHMARKS.md whose markers a broken render left doubled
        return _fail(f'{args.benchmarks}: {e}')
    return 0


def _settings(args) -> Settings:
    overrides = dict(deadline_s=args.deadline_s, use_compile=not args.no_compile)
    if args.dtype:
        overrides['dtypes'] = tuple(args.dtype)
    return Settings.for_dry_run(**overrides) if args.dry_run else Settings(**overrides)


def main(argv=None) -> int:
    """Exit status 0 when every check passed or the deadline came first, 1 when one failed, 2 on bad arguments.

    As the program (``argv`` None) its deadline counts from the process's start and a watchdog ends the process
    there; called with ``argv`` (from Python), it counts from the call and only skips the steps that would start late.
    """
    as_program = argv is None
    started = process_start_time() if as_program else time.time()
    if hasattr(sys.stdout, 'reconfigure'):
        sys.stdout.reconfigure(line_buffering=True)  # a log read through a pipe (tee) arrives line by line
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    if args.plan:
        steps = plan(_settings(args))
        low, high = estimate_s(steps)
        kinds = {k: sum(s.kind == k for s in steps) for k in ASSUMED_STEP_S}
        for s in steps:
            print(f'{s.phase:<13} {s.what}')
        print(f'{len(steps)} steps ({", ".join(f"{n} {k}" for k, n in kinds.items())}); at the assumed per-step '
              f'costs of an H100/H200 (not measured) {low:.0f}-{high:.0f} s, cut at the deadline '
              f'{args.deadline_s:.0f} s')
        return 0
    if args.dry_run:
        if args.from_json or args.table or args.benchmarks != BENCHMARKS or args.no_write:
            return _fail('--dry-run writes only into --out; drop --from-json, --table, --benchmarks and --no-write')
        if os.environ.get('TRITON_INTERPRET') != '1':
            # Triton reads the flag when it is first imported, and timm imports it with modzoo: run again with it set
            env = dict(os.environ, TRITON_INTERPRET='1', **{START_ENV_VAR: repr(started)})
            return subprocess.call([sys.executable, '-m', 'modzoo.bench.gpu_check', *argv], env=env)
    table = args.table or validated.DEFAULT_TABLE
    problem = _output_problem(args, table)
    if problem:
        return _fail(problem)
    if args.from_json:
        return _from_json(args, table)
    if not args.dry_run and not torch.cuda.is_available():
        return _fail('needs a CUDA GPU (torch.cuda.is_available() is False); use --dry-run to check the script on '
                     'the CPU')
    settings = _settings(args)
    command = ('PYTHONPATH=$PWD python tools/gpu_check.py ' + ' '.join(argv)).strip()
    out_dir = args.out or (tempfile.mkdtemp(prefix='gpu_check_dry_run_') if args.dry_run else None)
    # a dry run writes only the files of --out (the recorder's); a GPU run also BENCHMARKS.md and the table
    benchmarks, table = (None, None) if args.no_write or args.dry_run else (args.benchmarks, table)
    recorder = Recorder(out_dir, command, started, os.path.join(out_dir, 'gpu_check.log') if out_dir else None)

    def finish(result):
        if out_dir:
            recorder._write(result, out_dir)
            print(f'wrote {out_dir}/gpu_check.json, kernels_section.md, validated_kernels.json, gpu_check.log',
                  flush=True)
        write_outputs(result, command, benchmarks, table)

    if as_program:
        stop_at_deadline(recorder, settings.deadline_s, finish)
    result = run_check(settings, recorder, started)
    with recorder.lock:  # the watchdog must not fire into the final writes
        finish(result)
        for r in result['errors']:
            print(f"FAILED {r['step']} "
                  f"{' '.join(str(r[k]) for k in ('op', 'case', 'model', 'kernels', 'dtype') if k in r)}: "
                  f"{r['error']}", file=sys.stderr)
        bad = [r for r in result['correctness'] if 'error' not in r and not (r['correct'] and r['deterministic'])]
        for r in bad:
            print(f"FAILED {r['op']} {r['case']} {r['dtype']}: err {r['fused_err']:.1e} (eager "
                  f"{r['eager_err']:.1e}), deterministic={r['deterministic']}", file=sys.stderr)
        sys.stdout.flush()
        return 1 if bad or result['errors'] else 0


if __name__ == '__main__':
    sys.exit(main())
