"""Export and deployment helpers (ONNX): the logic of ``tools/export_onnx.py`` (``cli``) and of the ONNX steps of the
main job, the zoo report and ``tools/bench_onnx.py``."""
from .deploy import fold_conv_bn, fuse_sequential_conv_bn, prepare_for_deploy
from .onnx import (
    DEFAULT_EXPORTER, DYNAMIC_MODES, EXPORTERS, FP32_TOLERANCE, SPATIALLY_STATIC, CheckReport, ExportError,
    ExportResult, InvalidExportInput, ParityError, build_export_model, check_onnx, default_output_path,
    export_and_check, export_onnx, find_nonstandard_ops, model_input_config, onnx_accuracy, require_optional,
    spatial_export_blocker, validate_export_args,
)

__all__ = [
    'DEFAULT_EXPORTER', 'DYNAMIC_MODES', 'EXPORTERS', 'FP32_TOLERANCE', 'SPATIALLY_STATIC', 'CheckReport',
    'ExportError', 'ExportResult', 'InvalidExportInput', 'ParityError', 'build_export_model', 'check_onnx',
    'default_output_path', 'export_and_check', 'export_onnx', 'find_nonstandard_ops', 'fold_conv_bn',
    'fuse_sequential_conv_bn', 'model_input_config', 'onnx_accuracy', 'prepare_for_deploy', 'require_optional',
    'spatial_export_blocker', 'validate_export_args',
]
