"""Fused Triton kernels for the modulation ops of FocalNet, EfficientMod and SMT, with PyTorch references.

Public ops, one module per op holding its PyTorch reference, ``torch.library`` custom op, autograd formula and
dispatch (``focal_context_op.py``), with its Triton kernels, launchers and pass plan beside it
(``focal_context_triton.py``); shared Triton helpers (GELU, conv strips, the weight-gradient epilogue, the one
depthwise-conv launch, tile plans, autotuning) are in ``_triton_utils.py`` and the dispatch rule every op applies is
in ``dispatch.py``. An op's modules import no other op's (``tests/test_kernel_layout.py``).
``modzoo.kernels.focal_context`` is the op function, ``modzoo.kernels.focal_context_op`` its module:

* :func:`focal_context` ``(ctx, gates, kernels, normalize) -> ctx_all``: FocalNet's hierarchical context;
* :func:`dwconv_gelu` ``(x, weight, bias) -> GELU(dwconv(x) + bias)``: EfficientMod's context conv;
* :func:`gelu_tile_mul` ``(v, ctx, apply_gelu) -> act(v) * tile(ctx)``: EfficientMod's modulation (channels-last);
* :func:`mixed_dwconv_interleave` ``(x, weights, biases) -> y``: SMT's multi-head mixed conv + channel interleave.

Backend: ``set_backend('auto' | 'triton' | 'torch')``, ``use_backend(...)`` as a context manager, or the
environment variable ``MODZOO_KERNELS``; see :mod:`modzoo.kernels.dispatch`. Triton itself is imported only when
a kernel first runs.
"""
from .dispatch import (
    BACKENDS, ENV_VAR, KernelUnsupportedError, get_backend, interpreter_enabled, select_backend, set_backend,
    triton_available, use_backend,
)
from .dwconv_gelu_op import dwconv_gelu, dwconv_gelu_reference
from .focal_context_op import focal_context, focal_context_reference
from .gelu_tile_mul_op import gelu_tile_mul, gelu_tile_mul_reference
from .mixed_dwconv_interleave_op import mixed_dwconv_interleave, mixed_dwconv_interleave_reference

__all__ = [
    'focal_context', 'dwconv_gelu', 'gelu_tile_mul', 'mixed_dwconv_interleave',
    'focal_context_reference', 'dwconv_gelu_reference', 'gelu_tile_mul_reference',
    'mixed_dwconv_interleave_reference',
    'set_backend', 'get_backend', 'use_backend', 'select_backend', 'KernelUnsupportedError', 'BACKENDS', 'ENV_VAR',
    'triton_available', 'interpreter_enabled',
]
