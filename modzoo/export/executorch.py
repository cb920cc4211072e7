"""ExecuTorch export for phones: ``torch.export`` -> XNNPACK partition -> ``.pte``, run back in ExecuTorch's runtime.

    report = export_executorch(model, 'm.pte', img_size=(224, 224))            # fp32, checked and timed
    report = export_executorch(model, 'm-int8.pte', calibration=calib.images)  # int8 (PT2E XNNPACK quantizer)
    print(report.format())

The graph is lowered with ``to_edge_transform_and_lower`` and XNNPACK's partitioner: every subgraph XNNPACK can run
becomes one delegate call, the rest stays on ExecuTorch's portable (reference) kernels. :func:`delegation` counts
how much of the model went where: a *compute node* is an operator call of the edge graph (``getitem`` of a
multi-output op is not one); its share is the number inside XNNPACK delegates over all of them, and the ops left
outside are listed by name. The ``.pte`` is then loaded by ``executorch.runtime`` (the same C++ runtime a phone
runs, here on x86), its logits compared with eager PyTorch, and its latency measured at one thread interleaved with
eager. The batch is fixed at 1: a phone classifies one image at a time.

int8 uses the PT2E flow with XNNPACK's quantizer (symmetric int8, per-channel weights, static activation ranges
calibrated on real images: the same ``--calib-data`` images the ONNX int8 path uses).

ExecuTorch is the ``mobile`` extra: nothing here imports it before an export asks for it.
"""
import dataclasses
import importlib.util
import os
import statistics
import time
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from modzoo.utils.files import atomic_write

from .inputs import photo_images, random_images
from .onnx import (
    FP32_TOLERANCE, CheckReport, CheckRun, ExportError, InvalidExportInput, ParityError, model_input_config,
)

__all__ = [
    'MOBILE_EXTRA_HINT', 'FP32_TOLERANCE', 'executorch_available', 'require_executorch', 'Delegation', 'delegation',
    'INT8_OPS', 'PteProgram', 'fold_float_constants', 'lower_xnnpack', 'quantize_xnnpack', 'lowered_program',
    'traced_runs', 'check_pte', 'time_interleaved', 'ExecuTorchReport', 'export_executorch',
]

MOBILE_EXTRA_HINT = 'pip install -e ".[mobile]" (or tools/setup_env.sh --mm)'
# edge-graph calls that are not compute nodes: unpacking a multi-output op, a delegate call itself, and the
# quantize/dequantize pairs of an int8 graph (XNNPACK folds those inside a partition; counting them would inflate the
# int8 share; the ones left outside are listed apart)
_NOT_COMPUTE = ('getitem', 'executorch_call_delegate')
_QDQ = 'quantized_decomposed'


def executorch_available() -> bool:
    return importlib.util.find_spec('executorch') is not None


def require_mobile_package(available: bool, fmt: str, package: str) -> None:
    """InvalidExportInput (one line with the fix) when ``--format fmt`` lacks ``package`` of the mobile extra."""
    if not available:
        raise InvalidExportInput(f'--format {fmt} needs {package} (the mobile extra): {MOBILE_EXTRA_HINT}')


def require_executorch() -> None:
    require_mobile_package(executorch_available(), 'executorch', 'ExecuTorch')


# ----------------------------------------------------------------------------------------------------------------
# lowering and delegation


@dataclasses.dataclass
class Delegation:
    """Compute nodes of the edge graph inside XNNPACK delegates vs left on portable kernels."""
    delegated: int
    total: int
    partitions: int
    portable_ops: Dict[str, int]  # op name -> count, the nodes XNNPACK did not take
    portable_qdq: int = 0  # int8: quantize/dequantize nodes left outside the delegates (a float boundary each)

    @property
    def share(self) -> float:
        return self.delegated / self.total if self.total else float('nan')

    def format(self) -> str:
        left = ', '.join(f'{op} x{n}' for op, n in sorted(self.portable_ops.items(), key=lambda kv: -kv[1]))
        return (f'XNNPACK delegated {self.delegated}/{self.total} compute nodes ({100 * self.share:.1f}%) in '
                f'{self.partitions} partitions' + (f'; left on portable kernels: {left}' if left else '')
                + (f'; {self.portable_qdq} quantize/dequantize nodes outside' if self.portable_qdq else ''))

    def as_dict(self) -> Dict[str, Any]:
        return dict(dataclasses.asdict(self), share=self.share)


def _op_name(node) -> str:
    target = node.target
    name = getattr(target, '__name__', None) or str(target)
    if hasattr(target, '_op') or 'EdgeOpOverload' in str(type(target)):  # edge ops: aten.native_layer_norm.default
        name = str(getattr(target, '_op', target)).split(':')[0]
    return name.replace('aten::', 'aten.')


def _compute_nodes(graph) -> List[str]:
    return [_op_name(n) for n in graph.nodes
            if n.op == 'call_function' and not any(s in str(n.target) for s in _NOT_COMPUTE)]


def delegation(edge_program) -> Delegation:
    """:class:`Delegation` of a lowered edge program (``ExportedProgram`` after ``to_edge_transform_and_lower``)."""
    from executorch.exir.lowered_backend_module import get_lowered_backend_modules
    graph_module = edge_program.graph_module
    lowered = get_lowered_backend_modules(graph_module)
    delegated = sum(1 for m in lowered for op in _compute_nodes(m.original_module.graph) if _QDQ not in op)
    outside = _compute_nodes(graph_module.graph)
    portable = Counter(op for op in outside if _QDQ not in op)
    return Delegation(delegated=delegated, total=delegated + sum(portable.values()), partitions=len(lowered),
                      portable_ops=dict(portable), portable_qdq=sum(_QDQ in op for op in outside))


def lower_xnnpack(program: torch.export.ExportedProgram, fold_constants: bool = True, etrecord: bool = False):
    """The edge program manager of ``program`` with XNNPACK's partitioner applied.

    ``fold_constants``: first evaluate every subgraph that depends only on weights and constants (ExecuTorch's
    constant propagation, :func:`fold_float_constants`): at the fixed export size, GridPE's rotation tables (arange,
    exp, cos, sin and their casts) become constants of the program instead of portable-kernel work on every run.
    ``etrecord``: keep the record ExecuTorch's Inspector joins a runtime trace to (``get_etrecord()`` of the
    ``to_executorch()`` result; ``modzoo.bench.profile_pte``)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    if fold_constants:
        program = fold_float_constants(program)
    return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()], generate_etrecord=etrecord)


def fold_float_constants(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``program`` with its constant subgraphs evaluated, except the dequantize ops of an int8 graph: an int8
    weight stays int8 with its dequantize (XNNPACK fuses the pair into an int8 kernel) instead of folding back to
    fp32. ExecuTorch skips those ops only in its edge dialect; this runs on the ATen graph, so they are named here
    (``aten.full`` stays too, as ExecuTorch's default: folding it can only grow the file)."""
    from executorch.exir.operator.util import _QUANT_PRIMITIVES
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass
    keep = {op for op in _QUANT_PRIMITIVES if 'dequantize' in str(op)} | {torch.ops.aten.full.default}
    return constant_prop_pass(program, custom_skip_targets=keep)


# which ops an int8 program quantizes: 'all' that XNNPACK's quantizer supports (ExecuTorch's recipe), or 'gemm'
# layers only (fully-connected layers and full convolutions), depthwise convolutions and element-wise ops left float32
INT8_OPS = ('all', 'gemm')


def _is_gemm_layer(node) -> bool:
    """Whether ``int8_ops='gemm'`` quantizes ``node``: a fully-connected layer, a convolution other than a depthwise
    one, or a ReLU the quantizer fuses into one. On x86 XNNPACK 1.5.1's int8 depthwise convolution, multiply and
    add are slower than its float32 ones (``tools/profile_pte.py``; README "On a phone"), its int8 GEMMs faster."""
    aten = torch.ops.aten
    if node.op != 'call_function':  # a layer's weight and bias: they go with their layer
        return True
    if node.target in (aten.linear.default, aten.relu.default, aten.relu_.default, aten.hardtanh.default,
                       aten.hardtanh_.default):
        return True
    if node.target != aten.conv2d.default:
        return False
    groups = node.args[6] if len(node.args) > 6 else node.kwargs.get('groups', 1)
    weight = node.args[1].meta.get('val')
    return groups == 1 or weight is None or weight.shape[1] != 1


def quantize_xnnpack(model: nn.Module, example: torch.Tensor, calibration: np.ndarray, batch: int = 1,
                     int8_ops: str = 'all') -> nn.Module:
    """``model`` quantized by PT2E with XNNPACK's quantizer (symmetric int8, per-channel weights, static activation
    ranges from ``calibration``, N x C x H x W float32 images run ``batch`` at a time), its constant subgraphs
    folded first (:func:`fold_float_constants`). ``int8_ops``: one of :data:`INT8_OPS`."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    if int8_ops not in INT8_OPS:
        raise ValueError(f'int8_ops={int8_ops!r}: choose from {", ".join(INT8_OPS)}')
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    if int8_ops == 'gemm':
        quantizer.set_filter_function(_is_gemm_layer)
    # float constant subgraphs (GridPE's tables) folded before the quantizer sees them: otherwise it puts a
    # quantize/dequantize pair on each table, which stops the folding after quantization at the pair
    graph = fold_float_constants(torch.export.export(model, (example,), strict=False)).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for i in range(0, len(calibration), batch):
            prepared(torch.from_numpy(np.ascontiguousarray(calibration[i:i + batch])))
    return convert_pt2e(prepared)


# ----------------------------------------------------------------------------------------------------------------
# running a .pte


class PteProgram:
    """A ``.pte`` loaded in ExecuTorch's runtime: ``run(x)`` returns the first output as a float32 tensor.

    ExecuTorch's thread pool (XNNPACK's threads) is set to one thread before the first program loads and never
    resized afterwards: a delegate keeps the pool it was loaded with, and resizing it under a loaded program
    corrupts the heap. One thread is what the reports measure (a phone's one big core)."""

    def __init__(self, source: Union[str, bytes]):
        from executorch.runtime import Runtime
        _single_thread_pool()
        runtime = Runtime.get()
        self._source = source if isinstance(source, bytes) else os.fspath(source)  # the runtime does not copy bytes
        self._program = runtime.load_program(self._source)
        self.method = self._program.load_method('forward')

    def run(self, x: torch.Tensor) -> torch.Tensor:
        return self.method.execute((x.contiguous(),))[0].float()


def _single_thread_pool() -> None:
    from executorch.extension.pybindings import portable_lib
    if portable_lib._threadpool_get_thread_count() != 1:
        portable_lib._unsafe_reset_threadpool(1)


def traced_runs(buffer: bytes, x: torch.Tensor, runs: int, etdump_path: str) -> None:
    """Run the program in ``buffer`` ``runs`` times on ``x`` in ExecuTorch's runtime (one thread, as
    :class:`PteProgram`) with its event tracer on, and write the trace (ETDump) to ``etdump_path``."""
    from executorch.extension.pybindings import portable_lib
    _single_thread_pool()
    module = portable_lib._load_for_executorch_from_buffer(buffer, enable_etdump=True)
    for _ in range(runs):
        module.forward((x.contiguous(),))
    module.write_etdump_result_to_file(etdump_path)


def check_pte(pte: PteProgram, reference: nn.Module, img_size: Tuple[int, int], tolerance: float = FP32_TOLERANCE,
              provider: str = 'ExecuTorch (XNNPACK)') -> Tuple[CheckReport, float]:
    """(logit differences on a random and a photographic image, top-1 agreement % over both) of ``pte`` vs
    ``reference`` in PyTorch."""
    cfg = model_input_config(reference)
    report = CheckReport(tolerance=tolerance, relative=False, provider=provider)
    agree = []
    for kind in ('random', 'photo'):
        if kind == 'photo':
            x, report.photo_source = photo_images(1, img_size, cfg['mean'], cfg['std'], cfg['in_chans'])
        else:
            x = random_images(1, img_size, cfg['in_chans'], seed=1)
        with torch.no_grad():
            ref = reference(x).float()
        got = pte.run(x)
        if tuple(got.shape) != tuple(ref.shape):
            raise ParityError(f'the .pte gives shape {tuple(got.shape)}, PyTorch {tuple(ref.shape)}')
        report.runs.append(CheckRun(kind, 1, tuple(img_size), float((got - ref).abs().max()), float(ref.abs().max())))
        agree += (got.argmax(-1) == ref.argmax(-1)).tolist()
    return report, 100.0 * sum(agree) / len(agree)


def time_interleaved(runners: Dict[str, Any], x: torch.Tensor, repeats: int = 20, warmup: int = 3,
                     threads: int = 1) -> Dict[str, float]:
    """Median milliseconds of one forward of each runner (a callable taking ``x``), interleaved round by round
    (order flipped every round), PyTorch at ``threads`` threads (ExecuTorch's pool is one thread:
    :class:`PteProgram`)."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    times: Dict[str, List[float]] = {name: [] for name in runners}
    try:
        with torch.no_grad():
            for i in range(warmup + repeats):
                for name in (list(runners) if i % 2 == 0 else list(runners)[::-1]):
                    start = time.perf_counter()
                    runners[name](x)
                    if i >= warmup:
                        times[name].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(torch_threads)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


# ----------------------------------------------------------------------------------------------------------------
# the export


@dataclasses.dataclass
class ExecuTorchReport:
    """What one ``.pte`` export proved: delegation, parity with eager, size, latency."""
    path: str
    precision: str  # 'fp32' | 'int8' | 'int8 (gemm layers)'
    size_mib: float
    delegation: Delegation
    parity: Optional[CheckReport] = None
    top1_agreement: Optional[float] = None  # % of check images where the .pte and eager pick the same class
    latency_ms: Dict[str, float] = dataclasses.field(default_factory=dict)  # 'pte', 'eager'
    int8_check: Any = None  # quantize.AgreementReport on held-out images (int8 only)
    seconds: Dict[str, float] = dataclasses.field(default_factory=dict)
    latency_repeats: int = 0

    @property
    def latency_ratio(self) -> Optional[float]:
        """.pte latency / eager latency (below 1: the .pte is faster)."""
        if 'pte' in self.latency_ms and self.latency_ms.get('eager'):
            return self.latency_ms['pte'] / self.latency_ms['eager']
        return None

    def format(self) -> str:
        lines = [f'{os.path.basename(self.path)}: ExecuTorch {self.precision}, {self.size_mib:.2f} MiB; '
                 f'{self.delegation.format()}']
        if self.parity is not None and self.precision == 'fp32':
            lines.append(self.parity.format())
        if self.parity is not None:
            lines.append(f'parity: max abs diff {self.parity.max_abs_diff:.2e} (ExecuTorch {self.precision} vs PyTorch '
                         f'fp32), top-1 agreement {self.top1_agreement:.0f}% on {len(self.parity.runs)} images')
        if self.int8_check is not None:
            lines.append(_format_int8_check(self.int8_check))
        if self.latency_ratio is not None:
            others = ''.join(f', {name} {ms:.2f} ms' for name, ms in self.latency_ms.items()
                             if name not in ('pte', 'eager'))
            lines.append(f'latency at 1 thread: .pte {self.latency_ms["pte"]:.2f} ms, eager '
                         f'{self.latency_ms["eager"]:.2f} ms{others} ({self.latency_ratio:.2f}x eager; interleaved, '
                         f'median of {self.latency_repeats}; load {os.getloadavg()[0]:.1f})')
        return '\n'.join(lines)

    def as_dict(self) -> Dict[str, Any]:
        out = dict(path=self.path, precision=self.precision, size_mib=self.size_mib,
                   delegation=self.delegation.as_dict(), top1_agreement=self.top1_agreement,
                   latency_ms=self.latency_ms, latency_ratio=self.latency_ratio, seconds=self.seconds)
        if self.parity is not None:
            out.update(max_abs_diff=self.parity.max_abs_diff, parity_passed=self.parity.passed)
        if self.int8_check is not None:
            out['int8_check'] = self.int8_check.as_dict()
        return out


def _format_int8_check(check) -> str:
    """One or two lines of a quantize.AgreementReport of an int8 .pte against fp32 eager."""
    text = (f'int8 .pte vs fp32 eager on {check.images} held-out images: top-1 agreement {check.top1_agreement:.2f}%, '
            f'logit error max {check.max_logit_error:.3g} mean {check.mean_logit_error:.3g}')
    if check.int8_top1 is not None:
        text += (f'\naccuracy: fp32 eager top-1 {check.fp32_top1:.2f}%, int8 .pte top-1 {check.int8_top1:.2f}% '
                 f'({check.int8_top1 - check.fp32_top1:+.2f} points)')
    elif check.accuracy_note:
        text += f'\naccuracy not reported: {check.accuracy_note}'
    return text


def lowered_program(model: nn.Module, example: torch.Tensor, calibration: Optional[np.ndarray],
                    etrecord: bool = False, int8_ops: str = 'all'):
    """(ExecuTorch program manager, Delegation, seconds per step) for ``model`` on ``example``: int8 when
    ``calibration`` images are given (``int8_ops``: :func:`quantize_xnnpack`); ``etrecord``: keep the record a
    profile needs (:func:`lower_xnnpack`)."""
    seconds = {}
    start = time.perf_counter()
    graph = quantize_xnnpack(model, example, calibration, int8_ops=int8_ops) if calibration is not None else model
    if calibration is not None:
        seconds['quantize'] = time.perf_counter() - start
    try:
        program = torch.export.export(graph, (example,), strict=False)
        seconds['export'] = time.perf_counter() - start - sum(seconds.values())
        edge = lower_xnnpack(program, etrecord=etrecord)
        seconds['lower'] = time.perf_counter() - start - sum(seconds.values())
        stats = delegation(edge.exported_program())
        executorch_program = edge.to_executorch()
        seconds['to_executorch'] = time.perf_counter() - start - sum(seconds.values())
    except Exception as e:
        detail = str(e).strip().splitlines()
        raise ExportError(f'ExecuTorch lowering failed ({type(e).__name__}: {detail[0] if detail else ""})') from e
    return executorch_program, stats, seconds


def export_executorch(
        model: nn.Module,
        output: Union[str, os.PathLike],
        img_size: Tuple[int, int] = (224, 224),
        calibration: Optional[np.ndarray] = None,
        check: bool = True,
        reference: Optional[nn.Module] = None,
        latency_repeats: int = 20,
        extra_timers: Optional[Dict[str, Any]] = None,
        int8_ops: str = 'all',
) -> ExecuTorchReport:
    """Lower ``model`` (eval, one NCHW image, batch 1) to XNNPACK, check the ``.pte`` and write it to ``output``.

    ``calibration``: images (N, C, H, W float32) for an int8 ``.pte`` (PT2E, XNNPACK quantizer, on the ops
    ``int8_ops`` names: :data:`INT8_OPS`); None for fp32.
    ``check``: compare with ``reference`` (default ``model``) in ExecuTorch's runtime; an fp32 ``.pte`` off by more
    than :data:`FP32_TOLERANCE` raises :class:`ParityError` and nothing is written (int8 logits differ by design:
    the caller checks their agreement). ``latency_repeats`` > 0 times the ``.pte`` against eager (and
    ``extra_timers``, ``{name: callable(x)}``) at one thread. Nothing is written unless every step succeeded.
    """
    require_executorch()
    model.eval()
    reference = reference if reference is not None else model
    output = os.path.abspath(os.fspath(output))
    if not output.endswith('.pte'):
        raise InvalidExportInput(f'an ExecuTorch program file name ends in .pte, got {os.path.basename(output)!r}')
    cfg = model_input_config(model)
    example = random_images(1, img_size, cfg['in_chans'])
    with torch.no_grad():
        program, stats, seconds = lowered_program(model, example, calibration, int8_ops=int8_ops)
    buffer = program.buffer
    pte = PteProgram(buffer)
    precision = 'fp32' if calibration is None else 'int8' if int8_ops == 'all' else f'int8 ({int8_ops} layers)'
    report = ExecuTorchReport(path=output, precision=precision,
                              size_mib=len(buffer) / 2 ** 20, delegation=stats, seconds=seconds)
    if check:
        tolerance = FP32_TOLERANCE if calibration is None else float('inf')
        report.parity, report.top1_agreement = check_pte(pte, reference, img_size, tolerance)
        if not report.parity.passed:
            raise ParityError(report.parity.format())
    if latency_repeats > 0:
        runners = dict(pte=pte.run, eager=reference, **(extra_timers or {}))
        report.latency_ms = time_interleaved(runners, example, repeats=latency_repeats)
        report.latency_repeats = latency_repeats
    with atomic_write(output) as f:
        f.write(buffer)
    return report


def held_out_agreement(pte_path: str, reference: nn.Module, held_out, num_classes: Optional[int] = None):
    """quantize.AgreementReport of the ``.pte`` at ``pte_path`` against eager ``reference`` on ``held_out``
    (a CalibrationSet): top-1 agreement, logit error, and both accuracies when its labels are the model's classes."""
    from .quantize import AgreementReport
    if not len(held_out):
        raise InvalidExportInput('no held-out images for the int8 check; raise --check-images')
    pte = PteProgram(pte_path)
    got, ref = [], []
    with torch.no_grad():
        for image in held_out.images:
            x = torch.from_numpy(np.ascontiguousarray(image[None]))
            got.append(pte.run(x).numpy()[0])
            ref.append(reference(x).float().numpy()[0])
    got, ref = np.stack(got).astype(np.float64), np.stack(ref).astype(np.float64)
    err = np.abs(got - ref)
    report = AgreementReport(runtime='executorch', images=len(got),
                             top1_agreement=100.0 * float((got.argmax(-1) == ref.argmax(-1)).mean()),
                             max_logit_error=float(err.max()), mean_logit_error=float(err.mean()))
    labels = held_out.labels
    if labels is not None and num_classes == len(held_out.classes):
        report.fp32_top1 = 100.0 * float((ref.argmax(-1) == labels).mean())
        report.int8_top1 = 100.0 * float((got.argmax(-1) == labels).mean())
    elif labels is not None:
        report.accuracy_note = (f'the calibration folder has {len(held_out.classes)} classes, the model '
                                f'{num_classes}')
    return report


def default_pte_path(model_name: str, int8: bool = False) -> str:
    return model_name.replace('/', '_').replace(':', '_') + ('-int8' if int8 else '') + '.pte'


def write_report_json(path: str, reports: Sequence[Any], extra: Optional[Dict[str, Any]] = None) -> None:
    """The run's parity report (every export's ``as_dict``) as JSON at ``path``, written atomically."""
    import json
    with atomic_write(path, 'w') as f:
        f.write(json.dumps(dict(extra or {}, exports=[r.as_dict() for r in reports]), indent=1) + '\n')
