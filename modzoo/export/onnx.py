"""ONNX export of modzoo models, proven right in ONNX Runtime (and OpenVINO).

:func:`build_export_model` creates a model the way an export wants it (timm ``exportable=True``, optional checkpoint
through the family's strict loader, ``features_only`` wrapper, deployment rewrites); :func:`export_onnx` writes the
graph atomically (a temporary folder beside the target, renamed into place only after every check passed, so a failed
or interrupted export never leaves a file behind); :func:`check_onnx` runs ONNX Runtime (CPU execution
provider) or OpenVINO (CPU plugin) on random and photographic inputs at several batches/sizes and compares with
PyTorch.

Exporter: the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) is the default. Measured on this
project's models (BENCHMARKS.md, "ONNX export") it exports every model, matches PyTorch to ~1e-6 with dynamic
batch *and* size, and is much faster than the dynamo exporter, which keeps the every-model CI check affordable.
Where a graph cannot follow the input size it fails loudly at export time, while the dynamo exporter silently bakes
in adaptive-pooling kernels (PVT v2 b2-li). ``exporter='dynamo'`` is available for users who need torch.export
semantics.
"""
import contextlib
import fnmatch
import io
import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from modzoo.models import checkpoint_num_classes
from modzoo.utils.files import publish, staging_dir, writes_through

from .deploy import prepare_for_export
from .inputs import IMAGENET_MEAN, IMAGENET_STD, photo_images, random_images

_logger = logging.getLogger(__name__)

__all__ = [
    'EXPORTERS', 'DEFAULT_EXPORTER', 'DYNAMIC_MODES', 'SPATIALLY_STATIC', 'ExportError', 'InvalidExportInput',
    'ParityError', 'validate_export_args', 'require_optional', 'checkpoint_num_classes',
    'CheckReport', 'ExportResult', 'build_export_model', 'export_onnx', 'check_onnx', 'find_nonstandard_ops',
    'spatial_export_blocker', 'default_output_path', 'model_input_config', 'check_plan', 'foreign_weights_file',
    'check_weights_file', 'DEFAULT_DEPLOY', 'DEFAULT_SIMPLIFY', 'export_target', 'export_default_graph',
]

EXPORTERS = ('torchscript', 'dynamo')
DEFAULT_EXPORTER = 'torchscript'
# LayerNormalization (every family) needs opset 17; the dynamo exporter's own minimum is 18.
DEFAULT_OPSET = {'torchscript': 17, 'dynamo': 18}
MIN_OPSET = 14  # scaled_dot_product_attention
DYNAMIC_MODES = ('none', 'batch', 'batch,spatial')
FP32_TOLERANCE = 1e-4
# fp16 weights and activations: allowed max abs diff relative to max(1, max |reference|)
FP16_RELATIVE_TOLERANCE = 2e-2
# protobuf cannot serialise a message of 2 GiB or more; stay clear of the limit for the graph itself
EXTERNAL_DATA_THRESHOLD = int(1.8 * 2 ** 30)
STANDARD_DOMAINS = ('', 'ai.onnx', 'ai.onnx.ml')
MAX_SIDE = 8192
# tools/export_onnx.py's defaults (--no-deploy / --no-simplify turn them off), which the benchmarks and the graph
# profiler export with too (export_default_graph): BatchNorm folding and export forms (prepare_for_export), then
# onnxslim, whose constant folding turns everything computed from static sizes (GridPE's rotation tables at a fixed
# input size, shape arithmetic) into constants. The Python API's export_onnx keeps simplify=False: onnxslim costs
# seconds per graph, and the every-model export tests do not need it.
DEFAULT_DEPLOY = True
DEFAULT_SIMPLIFY = True

# Models whose exported graph cannot follow the input's height/width, with the reason (fnmatch patterns on the
# model name). ``--dynamic batch,spatial`` refuses them; a batch-only export at a fixed size works for all.
SPATIALLY_STATIC: Dict[str, str] = {}


class ExportError(RuntimeError):
    """An export that cannot be done, with a message meant for the user (the CLI prints it and exits non-zero)."""


class InvalidExportInput(ExportError):
    """The request itself cannot work (an impossible size, a bad option, an unusable output path)."""


class ParityError(ExportError):
    """ONNX Runtime's outputs differ from PyTorch's by more than the tolerance."""


def spatial_export_blocker(model_name: str) -> Optional[str]:
    """Why ``model_name`` cannot be exported with a dynamic height/width (None when it can)."""
    arch = model_name.split('.')[0]
    for pattern, reason in SPATIALLY_STATIC.items():
        if fnmatch.fnmatch(arch, pattern):
            return reason
    return None


# ----------------------------------------------------------------------------------------------------------------
# model preparation


def _features_wrapper(model: nn.Module, model_name: str, model_kwargs: Mapping[str, Any]) -> nn.Module:
    """Wrap a (possibly checkpoint-loaded) classification model exactly as ``features_only=True`` would."""
    from timm.models._features import FeatureGetterNet
    import modzoo
    with torch.device('meta'):  # only to read the family's default feature configuration
        probe = modzoo.create_model(model_name, features_only=True, **model_kwargs)
    if not isinstance(probe, FeatureGetterNet):
        raise ExportError(
            f'{model_name}: features_only builds a {type(probe).__name__}; modzoo models use '
            f"feature_cfg=dict(feature_cls='getter') (FeatureGetterNet)")
    return FeatureGetterNet(model, out_indices=list(probe.out_indices), norm=probe.norm)


def build_export_model(
        model_name: str,
        checkpoint: Optional[Union[str, os.PathLike]] = None,
        features: bool = False,
        deploy: bool = False,
        num_classes: Optional[int] = None,
        trust_pickle: bool = False,
        model_kwargs: Optional[Mapping[str, Any]] = None,
        target: str = 'onnx',
) -> nn.Module:
    """An eval-mode model ready for export.

    * ``exportable=True`` is passed to timm so models take their export-friendly paths.
    * ``checkpoint`` goes through :func:`modzoo.load_checkpoint` (any container, official or modzoo layout, strict:
      a checkpoint that does not fit raises :class:`~modzoo.CheckpointMismatchError`). The classifier follows the
      checkpoint: a different class count resizes it, a headless checkpoint removes it, unless ``num_classes``
      says otherwise.
    * ``features`` wraps the model as ``features_only=True`` would (after loading, so a classification checkpoint
      loads strictly).
    * ``deploy`` applies :func:`~modzoo.export.deploy.prepare_for_export` (BatchNorm folding, re-param hooks and
      the modules' export forms for ``target``: ``'onnx'``, ONNX Runtime's graph, or ``'openvino'``).

    Unknown names raise :class:`modzoo.models.UnknownModelError` with suggestions.
    """
    import modzoo
    from modzoo.models import open_checkpoint, recorded_kwargs
    ckpt = open_checkpoint(checkpoint, trusted=trust_pickle) if checkpoint is not None else None
    # the recorded model unless the user gave kwargs (the load then refuses any the record contradicts)
    kwargs = recorded_kwargs(ckpt, model_name, model_kwargs) if ckpt is not None else dict(model_kwargs or {})
    if num_classes is not None:
        kwargs['num_classes'] = num_classes
    model = modzoo.create_model(model_name, exportable=True, **kwargs)
    if ckpt is not None:
        if num_classes is None:
            ckpt_classes = checkpoint_num_classes(model, ckpt.state_dict)
            if ckpt_classes is not None and ckpt_classes != getattr(model, 'num_classes', ckpt_classes):
                _logger.info('classifier resized to the checkpoint: %d -> %d classes', model.num_classes, ckpt_classes)
                model.reset_classifier(ckpt_classes)
        modzoo.load_checkpoint(model, ckpt, non_finite_option=None)
    if features:
        model = _features_wrapper(model, model_name, kwargs)
    model.eval()
    if deploy:
        prepare_for_export(model, target)
    return model


def model_input_config(model: nn.Module) -> Dict[str, Any]:
    """``in_chans``, ``mean``, ``std`` and the default ``input_size`` of a (possibly wrapped) timm model."""
    inner = getattr(model, 'model', model)
    cfg = dict(getattr(inner, 'pretrained_cfg', None) or getattr(model, 'pretrained_cfg', None) or {})
    in_chans = getattr(inner, 'in_chans', None) or cfg.get('input_size', (3,))[0]
    return dict(
        in_chans=int(in_chans),
        mean=tuple(cfg.get('mean', IMAGENET_MEAN)),
        std=tuple(cfg.get('std', IMAGENET_STD)),
        input_size=tuple(cfg.get('input_size', (in_chans, 224, 224))),
    )


def default_output_path(model_name: str, features: bool = False, fp16: bool = False) -> str:
    suffix = ('-features' if features else '') + ('-fp16' if fp16 else '')
    return model_name.replace('/', '_').replace(':', '_') + suffix + '.onnx'


# ----------------------------------------------------------------------------------------------------------------
# graph inspection


def _iter_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and len(attr.g.node):
                yield from _iter_nodes(attr.g)
            for sub in attr.graphs:
                yield from _iter_nodes(sub)


def find_nonstandard_ops(model_proto) -> List[str]:
    """``domain::op_type`` of every node that plain ONNX Runtime could not run without a custom-op library.

    That is any node outside the standard ONNX domains, any op type the ONNX schema registry does not know, any
    model-local function, and anything that names Triton or modzoo.
    """
    import onnx
    bad = set()
    for node in _iter_nodes(model_proto.graph):
        qualified = f'{node.domain or "ai.onnx"}::{node.op_type}'
        lowered = qualified.lower()
        if node.domain not in STANDARD_DOMAINS or 'triton' in lowered or 'modzoo' in lowered:
            bad.add(qualified)
        elif not onnx.defs.has(node.op_type, node.domain):
            bad.add(qualified)
    for fn in model_proto.functions:
        bad.add(f'{fn.domain}::{fn.name} (local function)')
    return sorted(bad)


def _initializer_bytes(model_proto) -> int:
    total = 0
    for init in model_proto.graph.initializer:
        if init.raw_data:
            total += len(init.raw_data)
        else:
            total += int(np.prod(init.dims, dtype=np.int64)) * 4
    return total


# ----------------------------------------------------------------------------------------------------------------
# parity check


@dataclass
class CheckRun:
    inputs: str
    batch: int
    size: Tuple[int, int]
    max_abs_diff: float
    ref_max_abs: float


@dataclass
class CheckReport:
    """Per-run ORT vs PyTorch differences; ``max_abs_diff`` is the figure to report."""
    tolerance: float
    relative: bool
    runs: List[CheckRun] = field(default_factory=list)
    photo_source: str = ''
    provider: str = 'ONNX Runtime (CPU EP)'

    @property
    def max_abs_diff(self) -> float:
        return max((r.max_abs_diff for r in self.runs), default=float('nan'))

    def _limit(self, run: CheckRun) -> float:
        return self.tolerance * max(1.0, run.ref_max_abs) if self.relative else self.tolerance

    @property
    def passed(self) -> bool:
        return bool(self.runs) and all(r.max_abs_diff <= self._limit(r) for r in self.runs)

    def format(self) -> str:
        kind = f'{self.tolerance:g} x max(1, max|ref|)' if self.relative else f'{self.tolerance:g}'
        lines = [f'{self.provider} vs PyTorch, tolerance {kind}:']
        for r in self.runs:
            lines.append(
                f'  {r.inputs:<6} batch {r.batch}  {r.size[0]}x{r.size[1]}  max |diff| {r.max_abs_diff:.3e}  '
                f'(max |ref| {r.ref_max_abs:.3g})' + ('' if r.max_abs_diff <= self._limit(r) else '  FAIL'))
        if self.photo_source:
            lines.append(f'  photo inputs: {self.photo_source}')
        lines.append(f'max abs diff {self.max_abs_diff:.3e} over {len(self.runs)} runs: '
                     + ('PASS' if self.passed else 'FAIL'))
        return '\n'.join(lines)


def _flatten_outputs(out: Any) -> List[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in _flatten_outputs(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _flatten_outputs(v)]
    raise ExportError(f'model output of type {type(out).__name__} cannot be exported (tensors, lists, tuples only)')


CheckRunSpec = Tuple[int, Tuple[int, int], str]  # (batch, (height, width), 'random' | 'photo')


def check_plan(
        img_size: Tuple[int, int],
        dynamic: str,
        batch: int = 1,
        photos: bool = True,
        other_sizes: Optional[Sequence[Tuple[int, int]]] = None,
        other_batches: Optional[Sequence[int]] = None,
) -> List[CheckRunSpec]:
    """The runs :func:`check_onnx` does by default.

    Batches 1 and 3 with a dynamic batch (else ``batch``), at the export size and, with a dynamic size, at two more
    sizes (``other_sizes``; default one non-square and one that is not a multiple of 32 when the export size is).
    Each with random and (``photos``) photographic inputs; ``other_batches`` limits the batches at the other sizes.
    """
    h, w = img_size
    kinds = ('random', 'photo') if photos else ('random',)
    batches = [1, 3] if 'batch' in dynamic else [batch]
    plan = [(b, (h, w), k) for b in batches for k in kinds]
    if 'spatial' in dynamic:
        sizes = list(other_sizes) if other_sizes else [(h + 32, w + 64), (h + 72, w + 40)]
        plan += [(b, tuple(size), k) for size in sizes for b in (other_batches or batches) for k in kinds]
    return plan


def check_onnx(
        path: Union[str, os.PathLike],
        model: nn.Module,
        plan: Sequence[CheckRunSpec],
        fp16: bool = False,
        tolerance: Optional[float] = None,
        seed: int = 0,
        runtime: str = 'ort',
) -> CheckReport:
    """Run the ONNX file in ``runtime`` (``'ort'``: ONNX Runtime's CPU execution provider; ``'openvino'``: the
    OpenVINO CPU plugin at f32 precision; :mod:`modzoo.runtimes`) on every ``(batch, size, inputs)`` of
    ``plan`` (see :func:`check_plan`) and compare every output with ``model`` (PyTorch, fp32).

    Tolerance: ``FP32_TOLERANCE`` max abs diff, or for ``fp16`` graphs ``FP16_RELATIVE_TOLERANCE`` x
    max(1, max |reference|).
    """
    from ..runtimes import RUNTIME_NAMES, open_session
    cfg = model_input_config(model)
    session = open_session(os.fspath(path), runtime)
    np_dtype = session.input_dtype
    report = CheckReport(
        tolerance=tolerance if tolerance is not None else (FP16_RELATIVE_TOLERANCE if fp16 else FP32_TOLERANCE),
        relative=fp16, provider=RUNTIME_NAMES[runtime])
    for batch, size, kind in plan:
        if kind == 'photo':
            x, report.photo_source = photo_images(batch, size, cfg['mean'], cfg['std'], cfg['in_chans'])
        elif kind == 'random':
            x = random_images(batch, size, cfg['in_chans'], seed=seed + batch)
        else:
            raise ValueError(f'unknown input kind {kind!r} (random or photo)')
        with torch.no_grad():
            ref = [t.float().numpy() for t in _flatten_outputs(model(x))]
        got = session.run(x.numpy().astype(np_dtype))
        if len(got) != len(ref):
            raise ParityError(f'ONNX graph has {len(got)} outputs, PyTorch {len(ref)}')
        diff, ref_max = 0.0, 0.0
        for i, (g, r) in enumerate(zip(got, ref, strict=True)):
            if tuple(g.shape) != tuple(r.shape):
                raise ParityError(
                    f'output {i} at batch {batch}, size {size}: ONNX shape {tuple(g.shape)} vs PyTorch '
                    f'{tuple(r.shape)} (a shape baked in at export time?)')
            diff = max(diff, float(np.abs(g.astype(np.float32) - r).max(initial=0.0)))
            ref_max = max(ref_max, float(np.abs(r).max(initial=0.0)))
        report.runs.append(CheckRun(kind, batch, tuple(size), diff, ref_max))
    return report


# ----------------------------------------------------------------------------------------------------------------
# export


@dataclass
class ExportResult:
    path: str
    data_path: Optional[str]
    exporter: str
    opset: int
    dynamic: str
    input_shape: Tuple[int, ...]
    output_names: List[str]
    export_seconds: float
    op_types: List[str]
    check: Optional[CheckReport] = None  # the first runtime's check (ONNX Runtime unless only OpenVINO was asked)
    checks: Dict[str, CheckReport] = field(default_factory=dict)  # every checked runtime's report, by runtime

    def files(self) -> List[str]:
        return [self.path] + ([self.data_path] if self.data_path else [])


def validate_export_args(img_size, batch, dynamic, exporter, opset) -> Tuple[Tuple[int, int], int]:
    if dynamic not in DYNAMIC_MODES:
        raise InvalidExportInput(f'dynamic must be one of {", ".join(DYNAMIC_MODES)}, got {dynamic!r}')
    if exporter not in EXPORTERS:
        raise InvalidExportInput(f'exporter must be one of {", ".join(EXPORTERS)}, got {exporter!r}')
    if len(tuple(img_size)) != 2:
        raise InvalidExportInput(f'img_size must be (height, width), got {img_size!r}')
    h, w = (int(v) for v in img_size)
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise InvalidExportInput(f'impossible image size {h}x{w}: height and width must be between 1 and {MAX_SIDE}')
    if int(batch) < 1:
        raise InvalidExportInput(f'batch must be at least 1, got {batch}')
    if opset is not None:
        from torch.onnx._constants import ONNX_MAX_OPSET
        low = max(MIN_OPSET, DEFAULT_OPSET['dynamo']) if exporter == 'dynamo' else MIN_OPSET
        if not low <= opset <= ONNX_MAX_OPSET:
            raise InvalidExportInput(
                f'opset {opset} is not supported with the {exporter} exporter: use {low}..{ONNX_MAX_OPSET} '
                f'(scaled_dot_product_attention needs 14, LayerNormalization 17 for a single node)')
    return (h, w), int(batch)


@contextlib.contextmanager
def _quiet(verbose: bool):
    """Silence the exporters' warnings and progress prints (kept in a buffer and shown if the export fails)."""
    buffer = io.StringIO()
    if verbose:
        yield buffer
        return
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with contextlib.redirect_stdout(buffer):
            yield buffer


def _run_exporter(model, example, path, exporter, opset, input_name, output_names, output_ranks, dynamic, verbose):
    dyn_batch, dyn_spatial = 'batch' in dynamic, 'spatial' in dynamic
    if exporter == 'torchscript':
        axes: Dict[str, Dict[int, str]] = {}
        in_axes = ({0: 'batch'} if dyn_batch else {}) | ({2: 'height', 3: 'width'} if dyn_spatial else {})
        if in_axes:
            axes[input_name] = in_axes
        for name, rank in zip(output_names, output_ranks, strict=True):
            out_axes = {0: 'batch'} if dyn_batch else {}
            if dyn_spatial and rank == 4:
                out_axes.update({2: f'{name}_height', 3: f'{name}_width'})
            if out_axes:
                axes[name] = out_axes
        torch.onnx.export(
            model, (example,), path, dynamo=False, opset_version=opset, input_names=[input_name],
            output_names=output_names, dynamic_axes=axes or None, do_constant_folding=True, verbose=False)
    else:
        dims = ({0: 'batch'} if dyn_batch else {}) | ({2: 'height', 3: 'width'} if dyn_spatial else {})
        torch.onnx.export(
            model, (example,), path, dynamo=True, opset_version=opset, input_names=[input_name],
            output_names=output_names, dynamic_shapes=(dims,) if dims else None, external_data=True,
            optimize=True, verify=False, report=False)


def onnx_proto_float16() -> int:
    import onnx
    return onnx.TensorProto.FLOAT16


def _to_fp16(model_proto):
    try:
        from onnxconverter_common import float16
    except ImportError as e:
        raise ExportError('--fp16 needs onnxconverter-common: pip install onnxconverter-common') from e
    # fp32 inputs/outputs (two Casts) keep the deployment interface unchanged; everything inside runs in fp16
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        converted = float16.convert_float_to_float16(model_proto, keep_io_types=True)
    # The converter retypes every float tensor to float16 but leaves the graph's own Cast(to=FLOAT) nodes (e.g. the
    # scale of an attention) as they are, so their declared fp16 outputs contradict them: make them agree.
    fp16_values = {v.name for v in converted.graph.value_info
                   if v.type.tensor_type.elem_type == onnx_proto_float16()}
    for node in converted.graph.node:
        if node.op_type == 'Cast' and node.output[0] in fp16_values:
            for attr in node.attribute:
                if attr.name == 'to' and attr.i == 1:  # FLOAT
                    attr.i = onnx_proto_float16()
    return converted


def _simplify(model_proto):
    try:
        import onnxslim
    except ImportError as e:
        raise ExportError('--simplify needs onnxslim: pip install onnxslim') from e
    try:
        return onnxslim.slim(model_proto)
    except Exception as e:  # noqa: BLE001 - onnxslim's own failure, worded for the user with the way around it
        detail = str(e).strip().splitlines()
        raise ExportError(f'onnxslim could not simplify the graph ({type(e).__name__}: '
                          f'{detail[0] if detail else ""}); export with --no-simplify') from e


def require_optional(fp16: bool = False, simplify: bool = False) -> None:
    """Fail fast (before building anything) when an optional converter is missing."""
    import importlib.util
    if fp16 and importlib.util.find_spec('onnxconverter_common') is None:
        raise InvalidExportInput('--fp16 needs onnxconverter-common: pip install onnxconverter-common')
    if simplify and importlib.util.find_spec('onnxslim') is None:
        raise InvalidExportInput('--simplify needs onnxslim: pip install onnxslim')


def export_onnx(
        model: nn.Module,
        output: Union[str, os.PathLike],
        img_size: Tuple[int, int] = (224, 224),
        batch: int = 1,
        dynamic: str = 'batch',
        exporter: str = DEFAULT_EXPORTER,
        opset: Optional[int] = None,
        fp16: bool = False,
        simplify: bool = False,
        input_name: str = 'input',
        output_names: Optional[Sequence[str]] = None,
        external_data: Optional[bool] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        check: bool = False,
        reference: Optional[nn.Module] = None,
        plan: Optional[Sequence[CheckRunSpec]] = None,
        photos: bool = True,
        verbose: bool = False,
        runtimes: Sequence[str] = ('ort',),
) -> ExportResult:
    """Export ``model`` (one NCHW image input) to ``output``; with ``check`` prove it in ONNX Runtime first.

    Args:
        img_size: (H, W) of the example input; the graph's fixed size unless ``dynamic`` has ``spatial``.
        batch: batch of the example input. With a dynamic batch at least 2 is traced, so no size-1 broadcast can be
            mistaken for a constant.
        dynamic: ``'none'``, ``'batch'`` or ``'batch,spatial'``.
        exporter / opset: ``'torchscript'`` (opset 17 by default) or ``'dynamo'`` (opset 18).
        fp16: convert weights and activations to float16 after export (fp32 inputs/outputs).
        simplify: run onnxslim (constant folding, fusions).
        output_names: one per flattened output (default ``output``/``output{i}``).
        external_data: store the weights in ``<output>.data`` beside the graph; default: only when they exceed
            ``EXTERNAL_DATA_THRESHOLD`` (protobuf's 2 GiB limit).
        metadata: extra ``metadata_props`` (strings, or JSON-encoded values).
        check: compare with ``reference`` (default ``model``) via :func:`check_onnx`, on ``plan`` (default
            :func:`check_plan`: batches 1 and 3 with a dynamic batch, the export size plus two more with a dynamic
            size, random and, with ``photos``, photographic inputs). A failed check raises :class:`ParityError` and
            leaves no file.
        runtimes: the runtimes ``check`` runs the graph in (``'ort'``, ``'openvino'``): each must match.

    Nothing is written at ``output`` (or ``output.data``) unless the export, ``onnx.checker`` (full check), the
    custom-op scan and the optional parity check all succeed.
    """
    import onnx
    img_size, batch = validate_export_args(img_size, batch, dynamic, exporter, opset)
    _require_tools(fp16, simplify, runtimes if check else ())
    opset = opset or DEFAULT_OPSET[exporter]
    model.eval()
    cfg = model_input_config(model)
    trace_batch = max(batch, 2) if 'batch' in dynamic else batch
    example = random_images(trace_batch, img_size, cfg['in_chans'])
    outputs = _example_outputs(model, example, verbose)
    output_names = _output_names(output_names, len(outputs))
    output, base = _output_target(output)
    check_weights_file(output, external_data)
    with staging_dir(output) as staging:
        raw_dir = os.path.join(staging, 'raw')
        os.mkdir(raw_dir)
        raw_path = os.path.join(raw_dir, base)
        start = time.perf_counter()
        _export_raw(model, example, raw_path, exporter, opset, input_name, output_names, [t.dim() for t in outputs],
                    dynamic, verbose)
        export_seconds = time.perf_counter() - start

        proto = _convert(onnx.load(raw_path, load_external_data=True), fp16, simplify)
        _set_metadata(proto, dict(
            modzoo_exporter=exporter, modzoo_dynamic=dynamic,
            modzoo_input=json.dumps(dict(name=input_name, shape=[batch, cfg['in_chans'], *img_size],
                                         mean=cfg['mean'], std=cfg['std'])),
            **{k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (metadata or {}).items()}))
        use_data = external_data if external_data is not None else _initializer_bytes(proto) > EXTERNAL_DATA_THRESHOLD
        staged = _save_staged(proto, staging, base, use_data)
        del proto
        shutil.rmtree(raw_dir)
        op_types = _checked_op_types(staged)
        reports: Dict[str, CheckReport] = {}
        if check:
            reports = _parity_reports(staged, reference if reference is not None else model,
                                      plan or check_plan(img_size, dynamic, batch, photos=photos), fp16, runtimes)
        _publish(staged, output, use_data)

    return ExportResult(
        path=output, data_path=output + '.data' if use_data else None, exporter=exporter, opset=opset,
        dynamic=dynamic, input_shape=(batch, cfg['in_chans']) + tuple(img_size), output_names=output_names,
        export_seconds=export_seconds, op_types=op_types, check=next(iter(reports.values()), None), checks=reports)


def _require_tools(fp16: bool, simplify: bool, runtimes: Sequence[str]) -> None:
    """Fail before any work when a converter or a runtime the parity check needs is missing."""
    require_optional(fp16, simplify)
    if runtimes:
        from ..runtimes import RuntimeUnavailable, require_runtime
        for runtime in runtimes:
            try:
                require_runtime(runtime)
            except (RuntimeUnavailable, ValueError) as e:
                raise InvalidExportInput(str(e)) from e


def _example_outputs(model: nn.Module, example: torch.Tensor, verbose: bool) -> List[torch.Tensor]:
    """The model's flattened outputs on the example input; InvalidExportInput when it cannot run on that size."""
    try:
        with torch.no_grad(), _quiet(verbose):
            return _flatten_outputs(model(example))
    except ExportError:
        raise
    except Exception as e:
        raise InvalidExportInput(
            f'the model cannot run on an input of shape {tuple(example.shape)} '
            f'({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""}); '
            f'choose another --img-size/--batch') from e


def _output_names(output_names: Optional[Sequence[str]], count: int) -> List[str]:
    if output_names is None:
        return ['output'] if count == 1 else [f'output{i}' for i in range(count)]
    output_names = list(output_names)
    if len(output_names) != count:
        raise ExportError(f'{len(output_names)} output names for {count} outputs')
    return output_names


def _output_target(output: Union[str, os.PathLike]) -> Tuple[str, str]:
    """(absolute path, file name) of the ``.onnx`` to write, refusing another suffix (a missing folder is created
    when the checked graph is published)."""
    output = os.path.abspath(os.fspath(output))
    base = os.path.basename(output)
    if not base.endswith('.onnx'):
        raise InvalidExportInput(f'the output file name must end in .onnx, got {base!r}')
    return output, base


def _weights_location(graph_path: str) -> Optional[str]:
    """The external-data file the ONNX graph at ``graph_path`` keeps its weights in; None when it has none or is not
    a readable graph."""
    import onnx
    try:
        graph = onnx.load(graph_path, load_external_data=False)
    except Exception:  # noqa: BLE001 - not a graph (or not there): it refers to nothing
        return None
    for tensor in graph.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            return next((entry.value for entry in tensor.external_data if entry.key == 'location'), None)
    return None


def foreign_weights_file(output: Union[str, os.PathLike]) -> Optional[str]:
    """``<output>.data`` when that file exists but is not the weights of the graph now at ``output``: a file this
    export did not write, which it must neither replace nor remove."""
    output = os.fspath(output)
    data = output + '.data'
    if not os.path.lexists(data) or writes_through(data):
        return None
    return None if _weights_location(output) == os.path.basename(data) else data


def check_weights_file(output: Union[str, os.PathLike], external_data: Optional[bool]) -> None:
    """InvalidExportInput when an export with ``external_data`` weights would replace a ``<output>.data`` it did not
    write (:func:`foreign_weights_file`); with ``external_data=None`` it is asked again once the size is known."""
    if external_data and foreign_weights_file(output):
        raise InvalidExportInput(f'{os.fspath(output)}.data exists and is not the weights of {os.fspath(output)} (an '
                                 f'export keeps its weights there): move it away or pass another --output')


def _export_raw(model, example, raw_path, exporter, opset, input_name, output_names, output_ranks, dynamic,
                verbose) -> None:
    """Runs the exporter into ``raw_path``; its failure (with the exporter's log tail) is an ExportError."""
    try:
        with torch.no_grad(), _quiet(verbose) as log:
            _run_exporter(model, example, raw_path, exporter, opset, input_name, output_names, output_ranks, dynamic,
                          verbose)
    except Exception as e:
        detail = str(e).strip().splitlines()
        raise ExportError(
            f'the {exporter} exporter failed ({type(e).__name__}: {detail[0] if detail else ""})'
            + (f'\n{log.getvalue()[-2000:]}' if log.getvalue().strip() else '')) from e


def _convert(proto, fp16: bool, simplify: bool):
    if fp16:
        proto = _to_fp16(proto)
    if simplify:
        proto = _simplify(proto)
    return proto


def _set_metadata(proto, meta: Dict[str, str]) -> None:
    """Replaces the graph's ``metadata_props`` with ``meta`` plus the modzoo version."""
    try:
        from modzoo import __version__
        meta['modzoo_version'] = __version__
    except ImportError:
        pass
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)


def _checked_op_types(staged: str) -> List[str]:
    """``onnx.checker``'s full check and the custom-op scan of the saved graph; returns its op types."""
    import onnx
    onnx.checker.check_model(staged, full_check=True)
    saved = onnx.load(staged, load_external_data=False)
    bad = find_nonstandard_ops(saved)
    if bad:
        raise ExportError(
            'the exported graph contains ops plain ONNX Runtime cannot run: ' + ', '.join(bad)
            + ' (a custom/Triton op was not replaced by its PyTorch reference during export)')
    return sorted({n.op_type for n in _iter_nodes(saved.graph)})


def _save_staged(proto, staging: str, base: str, use_data: bool) -> str:
    """Saves ``proto`` as ``<staging>/final/<base>`` (its weights beside it in ``<base>.data`` when ``use_data``)."""
    import onnx
    final_dir = os.path.join(staging, 'final')
    os.mkdir(final_dir)
    staged = os.path.join(final_dir, base)
    onnx.save_model(proto, staged, save_as_external_data=use_data, all_tensors_to_one_file=True,
                    location=base + '.data', size_threshold=1024)
    return staged


def _parity_reports(staged: str, reference: nn.Module, plan: Sequence[CheckRunSpec], fp16: bool,
                    runtimes: Sequence[str]) -> Dict[str, CheckReport]:
    """:func:`check_onnx` in each runtime; the first mismatch raises ParityError."""
    reports: Dict[str, CheckReport] = {}
    for runtime in runtimes:
        reports[runtime] = check_onnx(staged, reference, plan, fp16=fp16, runtime=runtime)
        if not reports[runtime].passed:
            raise ParityError(reports[runtime].format())
    return reports


def _publish(staged: str, output: str, use_data: bool) -> None:
    """Moves the checked files into place: the weights first, the graph last (a present .onnx means a complete
    export). A ``.data`` file beside the output is replaced or removed only when it is the weights of the graph being
    replaced (:func:`foreign_weights_file`)."""
    final_data = output + '.data'
    foreign = foreign_weights_file(output)
    if use_data:
        check_weights_file(output, use_data)
        final_data = publish(staged + '.data', final_data)
        if not writes_through(final_data):  # onnx writes the weights owner-only; give them a plain open()'s mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(final_data, 0o666 & ~umask)
    stale = not use_data and not foreign and os.path.lexists(final_data) and not writes_through(final_data)
    publish(staged, output)
    if stale:  # the weights of the graph just replaced: nothing refers to them any more
        os.remove(final_data)


def export_target(runtime: str) -> str:
    """The export target (:data:`~modzoo.export.deploy.ONNX_TARGETS`) of a graph for ``runtime`` (``'ort'``,
    ``'openvino'`` or ``'both'``): OpenVINO's forms for OpenVINO alone, else ONNX Runtime's."""
    return 'openvino' if runtime == 'openvino' else 'onnx'


def export_default_graph(
        model_name: str,
        output: Union[str, os.PathLike],
        img_size: Tuple[int, int] = (224, 224),
        batch: int = 1,
        dynamic: str = 'batch',
        model_kwargs: Optional[Mapping[str, Any]] = None,
        deploy: bool = DEFAULT_DEPLOY,
        simplify: bool = DEFAULT_SIMPLIFY,
        target: str = 'onnx',
        **kwargs,
) -> ExportResult:
    """``model_name`` (random weights of the current torch seed) exported the way ``tools/export_onnx.py`` exports
    it with its default options (``target='openvino'``: as ``--runtime openvino`` does): the graph the benchmarks
    and the profiler measure. Other :func:`export_onnx` arguments pass through ``kwargs``; the one output is named
    ``logits``."""
    model = build_export_model(model_name, deploy=deploy, model_kwargs=model_kwargs, target=target)
    return export_onnx(model, output, img_size=img_size, batch=batch, dynamic=dynamic, simplify=simplify,
                       output_names=['logits'], **kwargs)
