"""Core ML export for iPhones and Macs: ``torch.export`` -> coremltools -> ``.mlpackage`` (ML program, fp32 or fp16).

    report = export_coreml(model, 'm.mlpackage', img_size=(224, 224), precision='fp16')
    print(report.format())

The model is exported with ``torch.export`` and decomposed with an empty table (``run_decompositions({})``: core
ATen ops, which coremltools' ExecuTorch-dialect frontend reads); the trace path is not used (under numpy 2 it breaks
on shapes computed from tensors). A conversion that meets an op coremltools has no translation for fails as a
whole: there is no per-op fallback in an ML program, so a written package has every op as a Core ML MIL op, and
:func:`export_coreml` also checks each op type of the saved program against coremltools' registry of core ops.

Core ML predicts only on macOS: on Linux the parity of a package with PyTorch cannot be checked, and the report
says so. What is checked here: the input and output names and shapes, the op histogram, and that no op is custom or
unknown. On a Mac, :func:`main` (``python tools/check_coreml.py PACKAGE MODEL [--checkpoint W]``) runs the package
in Core ML (CPU) and compares it with PyTorch.

coremltools is the ``mobile`` extra: nothing here imports it before an export asks for it.
"""
import contextlib
import dataclasses
import importlib.util
import io
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from modzoo.utils.files import staging_dir

from .executorch import require_mobile_package
from .inputs import photo_images, random_images
from .onnx import (
    FP16_RELATIVE_TOLERANCE, FP32_TOLERANCE, CheckReport, CheckRun, ExportError, InvalidExportInput, model_input_config,
)

__all__ = ['PRECISIONS', 'MACOS_CHECK', 'coreml_available', 'require_coremltools', 'CoreMLReport', 'export_coreml',
           'inspect_package', 'check_coreml', 'main']

_logger = logging.getLogger(__name__)

PRECISIONS = ('fp32', 'fp16')
# Core ML's MIL opset of iOS 16 / macOS 13: the oldest that has every op these models need in an ML program
DEPLOYMENT_TARGET = 'iOS16'
MACOS_CHECK = 'python tools/check_coreml.py {package} {model}{checkpoint}'


def coreml_available() -> bool:
    return importlib.util.find_spec('coremltools') is not None


def require_coremltools() -> None:
    require_mobile_package(coreml_available(), 'coreml', 'coremltools')


@contextlib.contextmanager
def _quiet_coremltools():
    """coremltools prints a line per missing native proxy on Linux and a progress bar per pass: keep them off the
    command's output (they go to the log at debug level)."""
    out, err = io.StringIO(), io.StringIO()
    ct_logger = logging.getLogger('coremltools')
    level = ct_logger.level
    ct_logger.setLevel(logging.ERROR)  # its version warnings go through logging, past the redirects
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        ct_logger.setLevel(level)
    _logger.debug('%s%s', out.getvalue(), err.getvalue())


def _import_ct():
    require_coremltools()
    with _quiet_coremltools():
        import coremltools
    return coremltools


@dataclasses.dataclass
class CoreMLReport:
    """What a Core ML export proved on this machine (not parity, unless run on macOS)."""
    path: str
    precision: str
    size_mib: float
    inputs: List[Tuple[str, Tuple[int, ...]]]
    outputs: List[Tuple[str, Tuple[int, ...]]]
    op_histogram: Dict[str, int]
    unknown_ops: List[str]
    opset: str
    seconds: Dict[str, float] = dataclasses.field(default_factory=dict)
    macos_command: str = ''
    parity: Optional[CheckReport] = None

    def format(self) -> str:
        ops = ', '.join(f'{op} x{n}' for op, n in sorted(self.op_histogram.items(), key=lambda kv: -kv[1]))
        io_text = '; '.join(f'{kind} {name} {"x".join(map(str, shape))}'
                            for kind, items in (('input', self.inputs), ('output', self.outputs))
                            for name, shape in items)
        lines = [f'{os.path.basename(self.path)}: Core ML ML program ({self.opset}), {self.precision}, '
                 f'{self.size_mib:.2f} MiB; {io_text}',
                 f'ops ({sum(self.op_histogram.values())}): {ops}',
                 'unsupported/custom ops: ' + (', '.join(self.unknown_ops) if self.unknown_ops else
                                               'none (every op is a core MIL op; conversion has no fallback)')]
        if self.parity is not None:
            lines.append(self.parity.format())
        else:
            lines.append('parity: UNVERIFIED on this machine (Core ML predicts only on macOS); on a Mac run: '
                         + self.macos_command)
        return '\n'.join(lines)

    def as_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop('parity')
        out['max_abs_diff'] = self.parity.max_abs_diff if self.parity is not None else None
        out['parity_verified'] = self.parity is not None
        return out


def _convert(model: nn.Module, example: torch.Tensor, precision: str, input_name: str, output_name: str):
    ct = _import_ct()
    program = torch.export.export(model, (example,), strict=False).run_decompositions({})
    with _quiet_coremltools():
        return ct.convert(
            program, convert_to='mlprogram', inputs=[ct.TensorType(name=input_name, shape=tuple(example.shape))],
            outputs=[ct.TensorType(name=output_name)],
            compute_precision=ct.precision.FLOAT16 if precision == 'fp16' else ct.precision.FLOAT32,
            minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET))


def _shapes(features) -> List[Tuple[str, Tuple[int, ...]]]:
    return [(f.name, tuple(int(d) for d in f.type.multiArrayType.shape)) for f in features]


def inspect_package(spec) -> Tuple[Dict[str, int], List[str], str]:
    """(op type -> count, op types that are not core MIL ops, opset) of an ML program's spec."""
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry
    histogram: Counter = Counter()
    opset = ''
    for function in spec.mlProgram.functions.values():
        opset = function.opset
        for op in function.block_specializations[function.opset].operations:
            histogram[op.type] += 1
    known = set(SSAOpRegistry.core_ops)
    unknown = sorted(t for t in histogram if t not in known or t in SSAOpRegistry.custom_ops)
    return dict(histogram), unknown, opset


def _replace_package(staged: str, output: str) -> None:
    """Moves the staged package to ``output``; a package already there (a folder with a Manifest.json) is replaced,
    anything else refused."""
    if os.path.lexists(output):
        if not os.path.isfile(os.path.join(output, 'Manifest.json')):
            raise InvalidExportInput(f'{output} exists and is not a Core ML package: move it away or pass another '
                                     f'--output')
        old = staged + '.old'
        os.replace(output, old)
        os.replace(staged, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.makedirs(os.path.dirname(output), exist_ok=True)
        os.replace(staged, output)


def _package_mib(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files) / 2 ** 20


def export_coreml(
        model: nn.Module,
        output: Union[str, os.PathLike],
        img_size: Tuple[int, int] = (224, 224),
        precision: str = 'fp32',
        input_name: str = 'image',
        output_name: str = 'logits',
        metadata: Optional[Dict[str, Any]] = None,
        macos_command: str = '',
) -> CoreMLReport:
    """Convert ``model`` (eval, one NCHW image, batch 1) to an ML program at ``output`` (``.mlpackage``).

    ``precision``: ``'fp32'`` or ``'fp16'`` (weights and compute; inputs and outputs stay fp32). ``metadata``:
    strings stored in the package's user-defined metadata (with the input's mean/std). Nothing is written unless
    the conversion and the op check succeed; on macOS the package is also compared with PyTorch
    (:func:`check_coreml`)."""
    if precision not in PRECISIONS:
        raise InvalidExportInput(f'Core ML precision {precision!r}: choose one of {", ".join(PRECISIONS)}')
    output = os.path.abspath(os.fspath(output))
    if not output.endswith('.mlpackage'):
        raise InvalidExportInput(f'a Core ML package name ends in .mlpackage, got {os.path.basename(output)!r}')
    model.eval()
    cfg = model_input_config(model)
    example = random_images(1, img_size, cfg['in_chans'])
    start = time.perf_counter()
    try:
        with torch.no_grad():
            mlmodel = _convert(model, example, precision, input_name, output_name)
    except InvalidExportInput:
        raise
    except Exception as e:
        detail = str(e).strip().splitlines()
        raise ExportError(f'Core ML conversion failed ({type(e).__name__}: {detail[-1] if detail else ""})') from e
    seconds = dict(convert=time.perf_counter() - start)
    meta = dict(modzoo_input=json.dumps(dict(name=input_name, shape=list(example.shape), mean=cfg['mean'],
                                             std=cfg['std'])), modzoo_precision=precision,
                **{k: str(v) for k, v in (metadata or {}).items()})
    mlmodel.user_defined_metadata.update(meta)
    spec = mlmodel.get_spec()
    histogram, unknown, opset = inspect_package(spec)
    if unknown:
        raise ExportError(f'the Core ML program has ops that are not core MIL ops: {", ".join(unknown)}')
    report = CoreMLReport(path=output, precision=precision, size_mib=0.0, inputs=_shapes(spec.description.input),
                          outputs=_shapes(spec.description.output), op_histogram=histogram, unknown_ops=unknown,
                          opset=opset, seconds=seconds, macos_command=macos_command)
    with staging_dir(output) as staging:
        staged = os.path.join(staging, os.path.basename(output))
        with _quiet_coremltools():
            mlmodel.save(staged)
        if platform.system() == 'Darwin':
            report.parity = check_coreml(staged, model, img_size, precision)
        report.size_mib = _package_mib(staged)
        _replace_package(staged, output)
    return report


def check_coreml(package: str, reference: nn.Module, img_size: Tuple[int, int], precision: str = 'fp32') \
        -> CheckReport:
    """macOS only: the package's logits (Core ML on the CPU) against ``reference`` on a random and a photographic
    image; fp32 within 1e-4, fp16 within 2e-2 x max(1, max |logit|)."""
    ct = _import_ct()
    if platform.system() != 'Darwin':
        raise InvalidExportInput('Core ML predicts only on macOS: run this check on a Mac')
    mlmodel = ct.models.MLModel(package, compute_units=ct.ComputeUnit.CPU_ONLY)
    spec = mlmodel.get_spec()
    input_name, output_name = spec.description.input[0].name, spec.description.output[0].name
    cfg = model_input_config(reference)
    fp16 = precision == 'fp16'
    report = CheckReport(tolerance=FP16_RELATIVE_TOLERANCE if fp16 else FP32_TOLERANCE, relative=fp16,
                         provider=f'Core ML {precision} (CPU)')
    for kind in ('random', 'photo'):
        if kind == 'photo':
            x, report.photo_source = photo_images(1, img_size, cfg['mean'], cfg['std'], cfg['in_chans'])
        else:
            x = random_images(1, img_size, cfg['in_chans'], seed=1)
        with torch.no_grad():
            ref = reference(x).float().numpy()
        got = np.asarray(mlmodel.predict({input_name: x.numpy()})[output_name], dtype=np.float32)
        report.runs.append(CheckRun(kind, 1, tuple(img_size), float(np.abs(got - ref).max()),
                                    float(np.abs(ref).max())))
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``tools/check_coreml.py PACKAGE MODEL [--checkpoint W] [--num-classes N]``: on a Mac, the package's logits
    against PyTorch. Exit status: 0 match, 1 mismatch, 2 bad input (including: not macOS)."""
    from modzoo.utils.cli import OneLineArgumentParser
    from .onnx import build_export_model
    parser = OneLineArgumentParser(description='Compare a Core ML package with PyTorch (macOS only).')
    parser.add_argument('package', help='the .mlpackage written by tools/export_onnx.py --format coreml')
    parser.add_argument('model', help='the registered model name it was exported from')
    parser.add_argument('--checkpoint', help='the weights it was exported with')
    parser.add_argument('--num-classes', type=int, default=None)
    args = parser.parse_args(argv)
    if platform.system() != 'Darwin':
        parser.error(f'Core ML predicts only on macOS; this is {platform.system()}: run this command on a Mac')
    if not os.path.isfile(os.path.join(args.package, 'Manifest.json')):
        parser.error(f'{args.package} is not a Core ML package (no Manifest.json in it)')
    ct = _import_ct()
    package = ct.models.MLModel(args.package, skip_model_load=True)
    shape = tuple(int(d) for d in package.get_spec().description.input[0].type.multiArrayType.shape)
    precision = package.user_defined_metadata.get('modzoo_precision', 'fp32')
    model = build_export_model(args.model, checkpoint=args.checkpoint, num_classes=args.num_classes)
    report = check_coreml(args.package, model, shape[2:], precision)
    print(report.format())
    return 0 if report.passed else 1


if __name__ == '__main__':
    sys.exit(main())
