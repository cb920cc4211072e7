"""int8 for OpenVINO: NNCF post-training quantization of the fp32 ONNX graph into OpenVINO IR.

    calib, held_out = calibration_split('digits', (224, 224), 128, 256)
    result = quantize_openvino_int8('m.onnx', 'm-int8-openvino.xml', calib.images)
    print(compare_int8('m.onnx', result.path, held_out, runtime='openvino').format())

ONNX Runtime's QDQ graph (:mod:`modzoo.export.quantize`) runs in OpenVINO too, but OpenVINO's own quantizer knows
which ops its CPU plugin has int8 kernels for: NNCF places FakeQuantize nodes on the inputs of Conv/MatMul and of the
elementwise ops the plugin fuses into them (residual Adds, gate Multiplies), so fewer float islands remain; it never
quantizes LayerNorm or Softmax. The result is an OpenVINO IR (``.xml`` + ``.bin``), readable by OpenVINO only.
Needs the ``openvino`` extra (``pip install "modzoo[openvino]"``: openvino and nncf).
"""
import contextlib
import io
import logging
import os
from typing import Optional

import numpy as np

from modzoo.utils.files import publish, staging_dir

from .onnx import ExportError, InvalidExportInput
from .quantize import Int8Result, calibration_batches, file_mib

__all__ = ['NNCF_PRESET', 'NNCF_MODEL_TYPE', 'nncf_available', 'require_nncf', 'default_openvino_int8_path',
           'quantize_openvino_int8']

# Measured on the main job's digits model (README, "ONNX export"): the mixed preset (symmetric int8 weights,
# asymmetric uint8 activations: GELU outputs and gates are not centred on zero) with NNCF's transformer model type
# (it keeps the attention-score MatMuls' inputs and the LayerNorm/Softmax paths in the places that hurt float).
NNCF_PRESET = 'mixed'
NNCF_MODEL_TYPE: Optional[str] = 'transformer'


def _missing():
    import importlib.util
    return [name for name in ('openvino', 'nncf') if importlib.util.find_spec(name) is None]


def nncf_available() -> bool:
    """Whether OpenVINO int8 can be made here (openvino and nncf installed)."""
    return not _missing()


def require_nncf() -> None:
    missing = _missing()
    if missing:
        raise InvalidExportInput(f'OpenVINO int8 needs {" and ".join(missing)}: pip install "modzoo[openvino]"')


def default_openvino_int8_path(fp32_path: str) -> str:
    return os.path.splitext(fp32_path)[0] + '-int8-openvino.xml'


@contextlib.contextmanager
def _quiet():
    """NNCF logs its steps at INFO and draws progress bars on stdout (rich): keep both out of the tool's output."""
    logger = logging.getLogger('nncf')
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def quantize_openvino_int8(fp32_path: str, output: str, calibration: np.ndarray, batch: int = 8,
                           preset: str = NNCF_PRESET, model_type: Optional[str] = NNCF_MODEL_TYPE) -> Int8Result:
    """NNCF post-training quantization of the fp32 ONNX graph at ``fp32_path``, calibrated on ``calibration``
    (N, C, H, W float32, in batches of ``batch``), saved as OpenVINO IR at ``output`` (``.xml``; weights in the
    ``.bin`` beside it). Both files appear only when quantization succeeded."""
    require_nncf()
    import nncf
    import openvino as ov
    if not output.endswith('.xml'):
        raise InvalidExportInput(f'an OpenVINO IR file name ends in .xml, got {output!r}')
    if calibration.ndim != 4 or not len(calibration):
        raise InvalidExportInput(f'calibration images must be a non-empty (N, C, H, W) array, got {calibration.shape}')
    presets = {'mixed': nncf.QuantizationPreset.MIXED, 'performance': nncf.QuantizationPreset.PERFORMANCE}
    types = {None: None, 'transformer': nncf.ModelType.TRANSFORMER}
    if preset not in presets or model_type not in types:
        raise InvalidExportInput(f'NNCF preset must be one of {", ".join(presets)} and model type one of '
                                 f'{", ".join(map(str, types))}')
    model = ov.Core().read_model(fp32_path)
    static = model.input(0).get_partial_shape()[0]
    batches = calibration_batches(calibration, static.get_length() if static.is_static else None, batch)
    try:
        with _quiet():
            quantized = nncf.quantize(model, nncf.Dataset(batches), preset=presets[preset],
                                      model_type=types[model_type], subset_size=len(batches))
    except Exception as e:  # noqa: BLE001 - report, keep nothing
        raise ExportError(f'NNCF int8 quantization failed: {type(e).__name__}: {e}') from e
    with staging_dir(output) as tmp:
        staged = os.path.join(tmp, os.path.basename(output))
        ov.save_model(quantized, staged, compress_to_fp16=False)
        publish(staged[:-4] + '.bin', output[:-4] + '.bin')
        publish(staged, output)
    ops = [op.get_type_name() for op in quantized.get_ops()]
    n_quantized = sum(op == 'FakeQuantize' for op in ops)
    float_ops = {op: ops.count(op) for op in ('MVN', 'SoftMax', 'Gelu', 'Sigmoid') if op in ops}
    size = os.path.getsize(output) / 2 ** 20 + os.path.getsize(output[:-4] + '.bin') / 2 ** 20
    return Int8Result(output, fp32_path, size, file_mib(fp32_path), n_quantized, {}, len(calibration), float_ops,
                      method=f'NNCF PTQ ({preset} preset{", " + model_type + " model type" if model_type else ""}), '
                             f'OpenVINO IR')
