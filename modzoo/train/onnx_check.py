"""ONNX export + ONNX Runtime parity and accuracy for the main job and the zoo report, through ``modzoo.export``
(TorchScript-based export, onnx.checker, custom-op scan, parity at batch 1 and 3)."""
import time
from typing import Any, Dict, Iterable, Tuple

import numpy as np
import torch.nn as nn

from modzoo.export import export_onnx
from modzoo.export.onnx import FP32_TOLERANCE as PARITY_TOLERANCE  # fp32 max abs difference of the logits

__all__ = ['PARITY_TOLERANCE', 'export_and_check', 'onnx_accuracy']


def export_and_check(model: nn.Module, path: str, img_size: Tuple[int, int]) -> Dict[str, Any]:
    """Export ``model`` to ``path`` with a dynamic batch and compare ORT with PyTorch at batch 1 and 3.

    Returns ``{'backend', 'path', 'max_abs_diff', 'passed', 'export_seconds', 'runs'}``.
    """
    model = model.eval()
    start = time.perf_counter()
    # exported at batch 2 so the batch dimension stays symbolic; the check runs batches 1 and 3 at the export size
    result = export_onnx(model, path, img_size=tuple(img_size), batch=2, dynamic='batch', check=True)
    report = result.check
    return {'backend': 'modzoo.export', 'path': result.path, 'max_abs_diff': float(report.max_abs_diff),
            'passed': bool(report.passed), 'export_seconds': time.perf_counter() - start,
            'runs': [(r.inputs, r.batch, list(r.size), r.max_abs_diff) for r in report.runs]}


def onnx_accuracy(path: str, loader: Iterable) -> Dict[str, float]:
    """Top-1 (%) of the exported graph in ONNX Runtime over a loader of (images, targets)."""
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    hits = total = 0
    for x, y in loader:
        logits = session.run(None, {name: x.numpy().astype(np.float32)})[0]
        hits += int((logits.argmax(-1) == y.numpy()).sum())
        total += int(y.shape[0])
    return {'top1': 100.0 * hits / max(total, 1), 'images': total}
