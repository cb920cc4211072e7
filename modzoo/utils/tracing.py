"""One answer to "is this forward being recorded rather than run?", for every modzoo module.

Three kinds of graph capture reach model code, and they see different things:

* ``torch.jit.trace``, ONNX export (both exporters set the flag) and ``torch.fx`` symbolic tracing (timm's
  ``feature_cls='fx'``, torchvision's ``create_feature_extractor``) record one run: under FX the tensors are proxies,
  so no Python check on their values or sizes can run, and under all three a Python-side cache keyed by sizes would
  be baked into the graph. :func:`is_tracing` is True for these.
* ``torch.export`` (strict and non-strict) sees fake tensors with symbolic sizes: Python checks on sizes run (they
  become guards), but nothing may be cached and sizes must flow through tensor ops. :func:`is_exporting`.
* ``torch.compile`` also sees fake tensors and builds guards on Python conditions, so checks are fine; caches keyed
  by the size must still be skipped (a cache hit is a Python side effect the graph does not replay).

This module imports nothing from modzoo, so any layer, kernel or model may use it.
"""
import torch

__all__ = ['is_fx_tracing', 'is_tracing', 'is_exporting', 'is_graph_capture', 'can_cache']


def is_fx_tracing() -> bool:
    """``torch.fx`` symbolic tracing (proxies), but not torch.export/compile, which also run FX machinery."""
    fx = torch.fx._symbolic_trace
    check = getattr(fx, 'is_fx_symbolic_tracing', None)
    return check() if check is not None else fx.is_fx_tracing()


def is_tracing() -> bool:
    """``torch.jit.trace``, ONNX export or FX symbolic tracing: Python checks on tensor values must be skipped."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or is_fx_tracing()


def is_exporting() -> bool:
    """``torch.export`` (and the dynamo ONNX exporter built on it): sizes may be symbolic.

    Strict export sets ``torch.compiler.is_exporting()``; non-strict export runs the Python code eagerly on fake
    tensors and sets nothing, so an active fake-tensor mode counts too (a cache filled there would hold fake tensors).
    """
    check = getattr(torch.compiler, 'is_exporting', None)
    if check is not None and check():
        return True
    if torch.compiler.is_compiling():  # dynamo: no Python-side mode query inside the graph
        return False
    from torch._guards import detect_fake_mode
    return detect_fake_mode() is not None


def is_graph_capture() -> bool:
    """Any recorded forward (:func:`is_tracing` or :func:`is_exporting`): sizes must flow through tensor ops."""
    return is_tracing() or is_exporting()


def can_cache() -> bool:
    """Eager execution, where a Python-side cache keyed by input size is safe (not traced, exported or compiled)."""
    return not (is_graph_capture() or torch.compiler.is_compiling())
