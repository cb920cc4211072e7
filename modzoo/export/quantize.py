"""int8 ONNX: static QDQ quantization with ONNX Runtime, calibrated on real images, checked against the fp32 graph.

    fp32 = export_onnx(model, 'm.onnx', img_size=(224, 224), dynamic='batch')
    calib, held_out = calibration_split('path/to/imagefolder', model, (224, 224), 128, 256)
    result = quantize_onnx_int8('m.onnx', 'm-int8.onnx', calib.images)
    print(compare_int8('m.onnx', 'm-int8.onnx', held_out).format())

Weights are int8 per output channel (symmetric), activations uint8 per tensor with min/max ranges from the
calibration images, in the QDQ format (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into integer
kernels). Only the weight-carrying ops are quantized; everything else stays float, each for the reason given in
:data:`FLOAT_OPS`. The agreement check runs both graphs in ONNX Runtime on images kept out of calibration.
"""
import contextlib
import dataclasses
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from modzoo.utils.files import publish, staging_dir

from .onnx import ExportError, InvalidExportInput

__all__ = [
    'DIGITS', 'QUANTIZED_OPS', 'FLOAT_OPS', 'CalibrationSet', 'Int8Result', 'AgreementReport',
    'load_calibration_images', 'calibration_split', 'float_nodes', 'quantize_onnx_int8', 'compare_int8',
    'check_calibration_count', 'calibration_batches',
]

DIGITS = 'digits'  # --calib-data value for scikit-learn's embedded handwritten digits (no download)
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.webp', '.tif', '.tiff')

# ops whose weights become int8: almost all of the FLOPs of these backbones are in them
QUANTIZED_OPS = ('Conv', 'MatMul', 'Gemm')
# op types that stay float, and why (ops not in QUANTIZED_OPS are never quantized; this names the ones that matter)
FLOAT_OPS = {
    'LayerNormalization': 'its mean/variance statistics need more range than 8 bits; the fused float kernel is cheap',
    'Softmax': 'probabilities span orders of magnitude, one uint8 scale would zero the small ones',
    'Sigmoid': 'FocalNet and EfficientMod gates: an int8 gate error multiplies every modulated value',
    'Gelu': 'the MLP activation is elementwise and memory-bound, int8 saves nothing there',
    'Erf': 'GELU as exported by the torchscript exporter (Erf inside x * 0.5 * (1 + erf(x / sqrt 2)))',
    'Einsum': 'GridPE builds its rotation phases with an einsum of positions and frequencies: phases must be exact',
    'Cos': 'GridPE rotation tables', 'Sin': 'GridPE rotation tables',
    'Mul': 'GridPE rotates q and k as x * cos + swap(x) * sin, and modulation multiplies context by query: '
           'elementwise products of activations, exact in float and memory-bound',
    'Add': 'residual sums and the second half of the GridPE rotation: int8 would add a rescale per add, no speed',
}
# MatMuls between two activations (attention q @ k^T and softmax(attn) @ v) stay float: the scores' range changes
# per image and per head, and the second one takes Softmax output (see FLOAT_OPS)
ACTIVATION_MATMUL_WHY = 'attention scores / attention-weighted values (both inputs are activations)'


# ----------------------------------------------------------------------------------------------------------------
# calibration images


@dataclasses.dataclass
class CalibrationSet:
    """Preprocessed images (N, 3, H, W) float32, their labels (None when the source has none) and class names."""
    images: np.ndarray
    labels: Optional[np.ndarray]
    classes: List[str]
    source: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, start: int, stop: int) -> 'CalibrationSet':
        labels = None if self.labels is None else self.labels[start:stop]
        return CalibrationSet(self.images[start:stop], labels, self.classes, self.source)


def _preprocess(image, img_size: Tuple[int, int], mean, std, crop_pct: float) -> np.ndarray:
    """timm's evaluation transform: resize the shorter side to size / crop_pct (bicubic), centre crop, normalise."""
    from PIL import Image
    h, w = img_size
    scale = max(h, w) / crop_pct / min(image.size)
    resized = image.resize((max(w, round(image.size[0] * scale)), max(h, round(image.size[1] * scale))),
                           Image.BICUBIC)
    left, top = (resized.size[0] - w) // 2, (resized.size[1] - h) // 2
    crop = np.atleast_3d(np.asarray(resized.crop((left, top, left + w, top + h)), dtype=np.float32) / 255.0)
    crop = (crop - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return crop.transpose(2, 0, 1)


def _digit_images():
    """scikit-learn's 1,797 handwritten digits (8x8 arrays, grey levels 0..16), labels and class names."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise InvalidExportInput('--calib-data digits needs scikit-learn (pip install scikit-learn), or pass an '
                                 'ImageFolder directory') from e
    digits = load_digits()
    return digits.images, digits.target.astype(np.int64), [str(i) for i in range(10)]


def _image_folder(root: str):
    """``root/<class>/<image>`` (or ``root/val/<class>/...`` when ``root`` holds a ``val`` split): paths, labels."""
    if not os.path.isdir(root):
        raise InvalidExportInput(f'--calib-data: no directory at {root}; give an ImageFolder (one sub-directory of '
                                 f'images per class) or "{DIGITS}"')
    if os.path.isdir(os.path.join(root, 'val')):
        root = os.path.join(root, 'val')
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    paths, labels = [], []
    for label, name in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, name))):
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(dirpath, f))
                    labels.append(label)
    if not paths:
        raise InvalidExportInput(f'--calib-data: no images ({", ".join(IMAGE_EXTENSIONS)}) in class sub-directories '
                                 f'of {root}; an ImageFolder holds <root>/<class>/<image>')
    return paths, np.asarray(labels, np.int64), classes


def load_calibration_images(
        source: str, img_size: Tuple[int, int], mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225), count: Optional[int] = None, offset: int = 0,
        crop_pct: float = 1.0, seed: int = 0, in_chans: int = 3) -> CalibrationSet:
    """``count`` images from ``offset`` of a fixed shuffle (``seed``) of an ImageFolder or of :data:`DIGITS`,
    preprocessed for a model with this input size, channels (3: RGB, 1: grey) and normalisation. A file that cannot
    be decoded raises :class:`InvalidExportInput` naming it."""
    from PIL import Image
    from modzoo.datasets import UnreadableImageError, open_image
    if in_chans not in (1, 3):
        raise InvalidExportInput(f'--calib-data gives RGB or grey images, but the model takes {in_chans} input '
                                 f'channels: quantize the graph with your own calibration data through '
                                 f'modzoo.export.quantize.quantize_onnx_int8')
    mode = 'RGB' if in_chans == 3 else 'L'
    if len(mean) != in_chans:  # a grey model with RGB statistics: their average, as for photo checks
        mean, std = [sum(mean) / len(mean)] * in_chans, [sum(std) / len(std)] * in_chans
    if source == DIGITS:
        items, labels, classes = _digit_images()
    else:
        items, labels, classes = _image_folder(source)
    order = np.random.default_rng(seed).permutation(len(items))
    order = order[offset:] if count is None else order[offset:offset + count]
    images = []
    for i in order:
        item = items[i]
        if source == DIGITS:
            image = Image.fromarray(np.uint8(np.round(item / 16.0 * 255)), mode='L').convert(mode)
        else:
            try:
                image = open_image(item, mode)
            except UnreadableImageError as e:
                raise InvalidExportInput(f'--calib-data {e}: remove or replace the file') from None
        images.append(_preprocess(image, img_size, mean, std, crop_pct))
    if not images:
        raise InvalidExportInput(f'--calib-data {source}: only {len(items)} images, none left from image {offset}')
    return CalibrationSet(np.stack(images).astype(np.float32), labels[order], classes, source)


def calibration_split(source: str, img_size: Tuple[int, int], calib_count: int, check_count: int,
                      mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225),
                      crop_pct: float = 1.0, seed: int = 0, in_chans: int = 3) \
        -> Tuple[CalibrationSet, CalibrationSet]:
    """Disjoint calibration and held-out sets from one shuffle of ``source`` (the held-out images are never seen by
    calibration). Raises when the source has fewer than ``calib_count + 1`` images."""
    if calib_count < 1 or check_count < 0:
        raise InvalidExportInput(f'--calib-images must be >= 1 and --check-images >= 0 (got {calib_count}, '
                                 f'{check_count})')
    every = load_calibration_images(source, img_size, mean, std, calib_count + check_count, 0, crop_pct, seed,
                                    in_chans)
    if len(every) <= calib_count and check_count:
        raise InvalidExportInput(f'--calib-data {source} has {len(every)} images: not enough for {calib_count} '
                                 f'calibration images plus held-out ones; lower --calib-images')
    return every.subset(0, calib_count), every.subset(calib_count, len(every))


# ----------------------------------------------------------------------------------------------------------------
# quantization


def float_nodes(model) -> Dict[str, str]:
    """``{node name: why}`` for the nodes of op types in :data:`QUANTIZED_OPS` that must stay float anyway: the
    activation-by-activation MatMuls."""
    constants = {init.name for init in model.graph.initializer}
    constants |= {out for node in model.graph.node if node.op_type == 'Constant' for out in node.output}
    # a weight may reach its MatMul through a Transpose/Reshape of an initializer: follow single-input chains
    produced_by = {out: node for node in model.graph.node for out in node.output}

    def is_constant(name, depth=0):
        if name in constants or name == '':
            return True
        node = produced_by.get(name)
        if node is None or depth > 4 or node.op_type not in ('Transpose', 'Reshape', 'Cast', 'Identity', 'Unsqueeze'):
            return False
        return all(is_constant(i, depth + 1) for i in node.input)

    return {node.name: ACTIVATION_MATMUL_WHY for node in model.graph.node
            if node.op_type == 'MatMul' and not any(is_constant(i) for i in node.input)}


@dataclasses.dataclass
class Int8Result:
    path: str
    fp32_path: str
    size_mib: float
    fp32_size_mib: float
    quantized_nodes: int
    float_nodes: Dict[str, str]
    calibration_images: int
    float_ops: Dict[str, int] = dataclasses.field(default_factory=dict)  # FLOAT_OPS types in the graph, by count
    method: str = 'QDQ, per-channel int8 weights, uint8 activations'

    def format(self) -> str:
        kept = ', '.join(f'{op} x{n}' for op, n in sorted(self.float_ops.items()))
        return (f'int8 ({self.method}): {self.quantized_nodes} tensors quantized'
                + (f', {len(self.float_nodes)} attention MatMuls kept float' if self.float_nodes else '')
                + (f'; float ops: {kept}' if kept else '')
                + f'; {self.size_mib:.1f} MiB vs {self.fp32_size_mib:.1f} MiB fp32; calibrated on '
                f'{self.calibration_images} images')


@contextlib.contextmanager
def _quiet():
    """onnxruntime.quantization logs a warning per bias it cannot fold and per advice through the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def check_calibration_count(count: int, static_batch: Optional[int]) -> None:
    """InvalidExportInput when a graph with a fixed batch of ``static_batch`` cannot be fed ``count`` images (one
    full batch is the least; the runtimes reject any other shape with their own text)."""
    if static_batch and count < static_batch:
        raise InvalidExportInput(f'the graph has a fixed batch of {static_batch} but there are {count} calibration '
                                 f'images: give at least {static_batch} (--calib-images) or export a dynamic batch')


def calibration_batches(images: np.ndarray, static_batch: Optional[int], batch: int) -> List[np.ndarray]:
    """``images`` as float32 batches the graph accepts: full batches of its fixed batch when it has one, else of
    ``batch`` (all images as one batch when there are fewer)."""
    check_calibration_count(len(images), static_batch)
    step = static_batch or batch
    images = images.astype(np.float32)
    return [images[i:i + step] for i in range(0, len(images) - step + 1, step)] or [images]


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader over a list of input batches."""

    def __init__(self, input_name: str, batches: List[np.ndarray]):
        self.batches = batches
        self.input_name = input_name
        self.index = 0

    def get_next(self):
        if self.index >= len(self.batches):
            return None
        self.index += 1
        return {self.input_name: self.batches[self.index - 1]}

    def rewind(self):
        self.index = 0


def _static_batch(model) -> Optional[int]:
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField('dim_value') else None


def file_mib(path: str) -> float:
    total = os.path.getsize(path)
    if os.path.exists(path + '.data'):
        total += os.path.getsize(path + '.data')
    return total / 2 ** 20


def quantize_onnx_int8(
        fp32_path: Union[str, os.PathLike], output: Union[str, os.PathLike], calibration: np.ndarray,
        batch: int = 8, calibrate_method: str = 'minmax', reduce_range: bool = False,
        extra_float_nodes: Sequence[str] = (), op_types: Sequence[str] = QUANTIZED_OPS) -> Int8Result:
    """Static QDQ int8 quantization of the fp32 graph at ``fp32_path`` into ``output`` (written atomically).

    ``calibration``: preprocessed images (N, C, H, W) float32 whose activation ranges set the scales (a graph with
    a fixed batch is calibrated at that batch). ``reduce_range``: 7-bit weights, for CPUs without VNNI where the
    uint8 x int8 AVX2/AVX-512 instruction can saturate. ``op_types``: the op types to quantize (default
    :data:`QUANTIZED_OPS`).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {'minmax': CalibrationMethod.MinMax, 'entropy': CalibrationMethod.Entropy,
               'percentile': CalibrationMethod.Percentile}
    if calibrate_method not in methods:
        raise InvalidExportInput(f'calibration method must be one of {", ".join(methods)}, not {calibrate_method!r}')
    if calibration.ndim != 4 or not len(calibration):
        raise InvalidExportInput(f'calibration images must be a non-empty (N, C, H, W) array, got {calibration.shape}')
    fp32_path, output = os.path.abspath(fp32_path), os.path.abspath(output)
    with staging_dir(output) as tmp:
        prepared = os.path.join(tmp, 'prepared.onnx')
        pre_error = None
        # shape inference + ORT graph optimisation first, as ORT recommends for static quantization; symbolic shape
        # inference cannot follow some dynamic reshapes (PVT's spatial reduction), ONNX's own inference then does
        for skip_symbolic in (False, True):
            try:
                # in the staging folder: a failed symbolic pass dumps its model and weights into the working directory
                with _quiet(), contextlib.chdir(tmp):
                    quant_pre_process(fp32_path, prepared, skip_symbolic_shape=skip_symbolic)
                pre_error = None
                break
            except Exception as e:  # noqa: BLE001 - any failure of the pre-pass: try the next, else the raw graph
                pre_error = e
        if pre_error is not None:
            prepared = fp32_path
        graph = onnx.load(prepared, load_external_data=False)
        batches = calibration_batches(calibration, _static_batch(graph), batch)
        keep = float_nodes(graph)
        keep.update({name: 'asked for' for name in extra_float_nodes})
        reader = _Reader(graph.graph.input[0].name, batches)
        quantized = os.path.join(tmp, 'int8.onnx')
        try:
            with _quiet():
                quantize_static(
                    prepared, quantized, reader, quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(op_types), nodes_to_exclude=sorted(keep), per_channel=True,
                    reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=methods[calibrate_method],
                    extra_options={'ActivationSymmetric': False, 'WeightSymmetric': True})
        except Exception as e:  # noqa: BLE001 - report, keep nothing
            detail = f' (the shape-inference pre-pass had failed too: {pre_error})' if pre_error else ''
            raise ExportError(f'int8 quantization failed: {type(e).__name__}: {e}{detail}') from e
        nodes = onnx.load(quantized).graph.node
        n_quantized = sum(node.op_type == 'DequantizeLinear' for node in nodes)
        float_ops = {op: sum(node.op_type == op for node in nodes) for op in FLOAT_OPS}
        publish(quantized, output)
    return Int8Result(output, fp32_path, file_mib(output), file_mib(fp32_path), n_quantized, keep,
                      len(calibration), {op: n for op, n in float_ops.items() if n})


# ----------------------------------------------------------------------------------------------------------------
# agreement with fp32


@dataclasses.dataclass
class AgreementReport:
    runtime: str
    images: int
    top1_agreement: float  # % of images where int8 and fp32 pick the same class
    max_logit_error: float
    mean_logit_error: float
    fp32_top1: Optional[float] = None  # % correct, when labels were given
    int8_top1: Optional[float] = None
    accuracy_note: str = ''

    def format(self) -> str:
        from ..runtimes import RUNTIME_NAMES
        text = (f'int8 vs fp32 in {RUNTIME_NAMES[self.runtime]} on {self.images} held-out images: top-1 agreement '
                f'{self.top1_agreement:.2f}%, '
                f'logit error max {self.max_logit_error:.3g} mean {self.mean_logit_error:.3g}')
        if self.int8_top1 is not None:
            text += (f'\naccuracy: fp32 top-1 {self.fp32_top1:.2f}%, int8 top-1 {self.int8_top1:.2f}% '
                     f'({self.int8_top1 - self.fp32_top1:+.2f} points)')
        elif self.accuracy_note:
            text += f'\naccuracy not reported: {self.accuracy_note}'
        return text

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def compare_int8(fp32_path: str, int8_path: str, held_out: CalibrationSet, num_classes: Optional[int] = None,
                 batch: int = 8, runtime: str = 'ort') -> AgreementReport:
    """int8 against fp32, both in ``runtime`` (``'ort'`` or ``'openvino'``, :mod:`modzoo.runtimes`), on
    ``held_out``; top-1 accuracy of both when its labels are the model's classes (``num_classes`` equal to the
    number of the source's classes)."""
    from ..runtimes import open_session, run_batched
    if not len(held_out):
        raise InvalidExportInput('no held-out images for the int8 check; raise --check-images')
    try:
        ref = run_batched(open_session(fp32_path, runtime), held_out.images, batch)
        q = run_batched(open_session(int8_path, runtime), held_out.images, batch)
    except ValueError as e:  # a fixed-batch graph and too few images
        raise InvalidExportInput(f'{e} (raise --check-images)') from e
    n = len(ref)
    err = np.abs(q.astype(np.float64) - ref)
    report = AgreementReport(
        runtime=runtime, images=n, top1_agreement=100.0 * float((q.argmax(-1) == ref.argmax(-1)).mean()),
        max_logit_error=float(err.max()), mean_logit_error=float(err.mean()))
    labels = held_out.labels
    if labels is None:
        report.accuracy_note = f'{held_out.source} has no labels'
    elif ref.ndim != 2 or (num_classes or ref.shape[-1]) != len(held_out.classes):
        report.accuracy_note = (f'the model has {ref.shape[-1]} classes, {held_out.source} has '
                                f'{len(held_out.classes)}: its labels are not the model\'s')
    else:
        labels = labels[:n]
        report.fp32_top1 = 100.0 * float((ref.argmax(-1) == labels).mean())
        report.int8_top1 = 100.0 * float((q.argmax(-1) == labels).mean())
    return report
