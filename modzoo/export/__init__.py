"""Export and deployment helpers (ONNX): ``cli`` is the command line of ``tools/export_onnx.py``; also used by the
main job and ``modzoo.bench``."""
from .deploy import fold_conv_bn, fuse_sequential_conv_bn, prepare_for_deploy, prepare_for_export
from .onnx import (
    DEFAULT_EXPORTER, DYNAMIC_MODES, EXPORTERS, SPATIALLY_STATIC, CheckReport, ExportError, ExportResult,
    InvalidExportInput, ParityError, build_export_model, check_onnx, default_output_path, export_default_graph,
    export_onnx, find_nonstandard_ops, model_input_config, require_optional, spatial_export_blocker,
    validate_export_args,
)

__all__ = [
    'DEFAULT_EXPORTER', 'DYNAMIC_MODES', 'EXPORTERS', 'SPATIALLY_STATIC', 'CheckReport', 'ExportError', 'ExportResult',
    'InvalidExportInput', 'ParityError', 'build_export_model', 'check_onnx', 'default_output_path',
    'export_default_graph', 'export_onnx', 'find_nonstandard_ops', 'fold_conv_bn', 'fuse_sequential_conv_bn',
    'model_input_config', 'prepare_for_deploy', 'prepare_for_export',
    'require_optional', 'spatial_export_blocker', 'validate_export_args',
]
