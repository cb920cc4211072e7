"""ONNX export + ONNX Runtime parity for the main job and the zoo report.

When ``modzoo.export`` (the project's exporter: TorchScript-based export, onnx.checker, custom-op scan, parity at
several batches) is importable, it does the work. Otherwise a minimal local path exports with
``torch.onnx.export(dynamo=False, opset 17)`` and a dynamic batch and compares ORT with PyTorch on random inputs at
batch 1 and 3. Either way the result reports which path ran.
"""
import os
import time
from typing import Any, Dict, Iterable, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

__all__ = ['PARITY_TOLERANCE', 'export_and_check', 'onnx_accuracy']

PARITY_TOLERANCE = 1e-4  # fp32 max abs difference of the logits


def export_and_check(model: nn.Module, path: str, img_size: Tuple[int, int],
                     batches: Sequence[int] = (1, 3)) -> Dict[str, Any]:
    """Export ``model`` to ``path`` with a dynamic batch and compare ORT with PyTorch.

    Returns ``{'backend', 'path', 'max_abs_diff', 'passed', 'export_seconds', 'runs'}``. ``batches`` applies to the
    local fallback; ``modzoo.export`` uses its own plan (batch 1 and 3 for a dynamic batch).
    """
    model = model.eval()
    try:
        from modzoo.export import export_onnx
    except ImportError:
        return _local_export_and_check(model, path, img_size, batches)
    start = time.perf_counter()
    # modzoo.export checks batches 1 and 3 at the export size for a dynamic-batch graph
    result = export_onnx(model, path, img_size=tuple(img_size), batch=2, dynamic='batch', check=True)
    report = result.check
    return {'backend': 'modzoo.export', 'path': result.path, 'max_abs_diff': float(report.max_abs_diff),
            'passed': bool(report.passed), 'export_seconds': time.perf_counter() - start,
            'runs': [(r.inputs, r.batch, list(r.size), r.max_abs_diff) for r in report.runs]}


def _local_export_and_check(model: nn.Module, path: str, img_size: Tuple[int, int],
                            batches: Sequence[int]) -> Dict[str, Any]:
    import onnxruntime as ort
    in_chans = int(getattr(model, 'pretrained_cfg', {}).get('input_size', (3,))[0])
    h, w = img_size
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2, in_chans, h, w, generator=gen)  # batch 2 keeps the batch dimension symbolic
    start = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(model, (example,), path, dynamo=False, opset_version=17, input_names=['input'],
                          output_names=['output'], dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}})
    seconds = time.perf_counter() - start
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    runs = []
    for b in batches:
        x = torch.randn(b, in_chans, h, w, generator=gen)
        with torch.no_grad():
            ref = model(x).numpy()
        got = session.run(None, {'input': x.numpy()})[0]
        runs.append(('random', b, [h, w], float(np.abs(got - ref).max())))
    diff = max(r[3] for r in runs)
    return {'backend': 'local torch.onnx.export + onnxruntime', 'path': os.path.abspath(path),
            'max_abs_diff': diff, 'passed': diff <= PARITY_TOLERANCE, 'export_seconds': seconds, 'runs': runs}


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
