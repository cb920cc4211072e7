"""Export and deployment helpers (ONNX); used by ``tools/export_onnx.py`` and ``tools/bench_onnx.py``."""
from .deploy import fold_conv_bn, fuse_sequential_conv_bn, prepare_for_deploy
from .onnx import (
    DEFAULT_EXPORTER, DYNAMIC_MODES, EXPORTERS, SPATIALLY_STATIC, CheckReport, ExportError, ExportResult,
    InvalidExportInput, ParityError, build_export_model, check_onnx, default_output_path, export_onnx,
    find_nonstandard_ops, model_input_config, require_optional, spatial_export_blocker, validate_export_args,
)
