"""Backend selection for modzoo's fused kernels.

``auto`` (default) runs the PyTorch reference unless the Triton kernel has been validated for that very call: it runs
a kernel only on CUDA tensors whose op, GPU family, layout, dtype of every tensor argument and depthwise kernel sizes
fall inside an entry of the validated-kernel table (:mod:`modzoo.kernels.validated`) checked under the running Triton
and torch versions. Only ``tools/gpu_check.py`` writes that table, from a run on that card in which the kernel matched
an fp64 reference at every shape it checked, was deterministic, and was not slower than eager PyTorch forward nor
forward+backward. The GPU family is the compute capability plus the card class (``sm90 H100 SXM``, ``sm90 H200 SXM``,
``sm90 GH200``; see :mod:`modzoo.kernels.gpu_info`). Everywhere else (a card, layout, dtype or kernel size without an
entry, the CPU, float64, unsupported shapes) ``auto`` runs the reference, so it never fails where the reference works
and never runs an unmeasured kernel. ``triton`` forces the kernels whatever the table says and raises
:class:`KernelUnsupportedError` on an input they cannot take; CPU tensors are accepted only when the Triton
interpreter (``TRITON_INTERPRET=1``, set before the kernels are first imported) is on, which is how the CPU tests
exercise the kernels. ``torch`` always runs the reference.

Whatever the backend, ONNX export, TorchScript scripting/tracing (and therefore fvcore, which traces) and torch.fx
symbolic tracing always see the reference computation: exported graphs and FLOP counts never contain a Triton op.
Every public op applies these rules through one call, :func:`runs_triton`.

The backend comes from ``set_backend`` / ``use_backend`` or, until one of those is called, from the environment
variable ``MODZOO_KERNELS`` (read when this module is imported and again on ``set_backend(None)``).
"""
import contextlib
import functools
import importlib.util
import os
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch

from ..utils.tracing import is_tracing
from . import validated
from .gpu_info import family_of_device

__all__ = [
    'BACKENDS', 'ENV_VAR', 'KernelUnsupportedError', 'set_backend', 'get_backend', 'use_backend',
    'triton_available', 'interpreter_enabled', 'select_backend', 'in_export_or_trace', 'tensor_layout',
    'observe_calls', 'runs_triton', 'check_depthwise_weight', 'conv_shape_reason',
]

BACKENDS = ('auto', 'triton', 'torch')
ENV_VAR = 'MODZOO_KERNELS'
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class KernelUnsupportedError(RuntimeError):
    """The ``triton`` backend was forced on an input the Triton kernels do not support."""


def _validate(name: str, source: str) -> str:
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f'unknown modzoo kernel backend {name!r} (from {source}); choose one of {BACKENDS}')
    return name


def _from_env() -> str:
    return _validate(os.environ.get(ENV_VAR, 'auto') or 'auto', f'the environment variable {ENV_VAR}')


_backend: str = _from_env()


def set_backend(name: Optional[str]) -> None:
    """Select ``'auto'``, ``'triton'`` or ``'torch'`` for every fused op; ``None`` re-reads ``MODZOO_KERNELS``."""
    global _backend
    _backend = _from_env() if name is None else _validate(name, 'set_backend')


def get_backend() -> str:
    return _backend


@contextlib.contextmanager
def use_backend(name: Optional[str]) -> Iterator[None]:
    """Temporarily select a backend (``with use_backend('torch'): ...``)."""
    previous = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


_HAS_TRITON = importlib.util.find_spec('triton') is not None


def triton_available() -> bool:
    return _HAS_TRITON


def interpreter_enabled() -> bool:
    """Whether modzoo's Triton kernels run under the Triton interpreter.

    Once the kernel modules are imported this is fixed by how they were decorated; before that it follows
    ``TRITON_INTERPRET`` (which must be set before the first import for the interpreter to be used).
    """
    if not triton_available():
        return False
    from . import _triton_utils
    return _triton_utils.INTERPRETED


# the shared "are we tracing" answer; kept importable here under its historical name
in_export_or_trace = is_tracing


def _is_cuda(t: torch.Tensor) -> bool:
    return t.is_cuda


@functools.lru_cache(maxsize=None)
def _gpu_family(device: torch.device) -> str:
    return family_of_device(device)


def tensor_layout(t: torch.Tensor) -> str:
    """The layout an entry of the validated table names, from which dimension of ``t`` is the contiguous one:
    ``'last_dim_contiguous'`` (a logical NCHW tensor in NCHW memory, or a channels-last ``(B, H, W, C)`` tensor),
    ``'channels_last'`` (a logical NCHW view of channels-last memory) or ``'strided'``."""
    if t.dim() == 4 and t.stride(1) == 1 and t.shape[1] > 1 and not (t.stride(3) == 1 and t.shape[3] > 1):
        return 'channels_last'
    if t.dim() == 0 or t.stride(-1) == 1 or t.shape[-1] == 1:
        return 'last_dim_contiguous'
    return 'strided'


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).replace('torch.', '')


@functools.lru_cache(maxsize=None)
def _triton_version() -> str:
    import triton
    return triton.__version__


@torch.compiler.assume_constant_result  # torch.compile evaluates the lookup once while tracing: no graph break
def _is_validated_on(op: str, layout: str, dtypes: Tuple[str, ...], kernel_sizes: Tuple[int, ...],
                     device_index: int) -> bool:
    return validated.matching_entry(op, _gpu_family(torch.device('cuda', device_index)), layout, dtypes,
                                    kernel_sizes, _triton_version(), torch.__version__) is not None


def _unvalidated_reason(op: str, tensors: Sequence[torch.Tensor], kernel_sizes: Tuple[int, ...]) -> Optional[str]:
    """Why ``auto`` keeps ``op`` on the reference for these (CUDA) tensors (None when the kernel is validated)."""
    layout, dtypes = tensor_layout(tensors[0]), tuple(_dtype_name(t) for t in tensors)
    if _is_validated_on(op, layout, dtypes, kernel_sizes, tensors[0].device.index or 0):
        return None
    return (f'no validated entry for {op} with {layout} layout, argument dtypes {dtypes} and kernel sizes '
            f'{kernel_sizes} on this GPU under Triton {_triton_version()} ({validated.table_path()})')


# lists that select_backend appends each call's (op, layout, dtypes, kernel sizes) to, while observe_calls is open
_observers: List[list] = []


@contextlib.contextmanager
def observe_calls() -> Iterator[List[dict]]:
    """Record what the dispatch sees (the GPU check writes its table entries from this)."""
    calls: List[dict] = []
    _observers.append(calls)
    try:
        yield calls
    finally:
        _observers.remove(calls)


def _device_reason(tensors: Sequence[torch.Tensor], forced: bool) -> Optional[str]:
    """Why the Triton kernels cannot take these tensors (None when they can)."""
    device = tensors[0].device
    for t in tensors:
        if t.device != device:
            return f'its tensors are on different devices ({device} and {t.device})'
    if _is_cuda(tensors[0]):
        pass
    elif device.type == 'cpu' and forced and interpreter_enabled():
        pass  # the interpreter runs the kernels on CPU tensors (tests)
    elif device.type == 'cpu' and forced:
        return ('its tensors are on the CPU and the Triton interpreter is off (set TRITON_INTERPRET=1 before '
                'modzoo.kernels is first used to run the kernels on the CPU)')
    else:
        return f'its tensors are on a {device.type} device (the Triton kernels need CUDA)'
    for t in tensors:
        if t.dtype not in TRITON_DTYPES:
            return f'it got a {t.dtype} tensor (supported: float32, float16, bfloat16)'
    if not triton_available():
        return 'Triton is not installed'
    return None


# Largest depthwise kernel the Triton kernels take (the forward kernels unroll every tap); FocalNet's largest
# (ATSS/Cascade stage 1) is 15.
MAX_KERNEL_SIZE = 15


def check_depthwise_weight(op: str, name: str, weight: torch.Tensor, channels: int, channels_name: str = 'C') -> None:
    """Raise a ValueError unless ``weight`` is a depthwise ``(channels, 1, k, k)`` weight with odd ``k``."""
    if weight.dim() != 4 or weight.shape[0] != channels or weight.shape[1] != 1 or weight.shape[2] != weight.shape[3] \
            or weight.shape[2] % 2 == 0:
        raise ValueError(f'{op}: {name} must be a depthwise ({channels_name}, 1, k, k) weight with odd k and '
                         f'{channels_name} = {channels}, got {tuple(weight.shape)}')


def conv_shape_reason(x: torch.Tensor, x_name: str, weights: Sequence[torch.Tensor]) -> Optional[str]:
    """Why the conv-like Triton kernels cannot take ``x`` and its depthwise ``weights`` (None when they can)."""
    if x.numel() == 0:
        return f'{x_name} is empty'
    big = [w.shape[-1] for w in weights if w.shape[-1] > MAX_KERNEL_SIZE]
    if big:
        return f'kernel size {big[0]} exceeds the supported maximum {MAX_KERNEL_SIZE}'
    return None


def select_backend(
        op: str,
        tensors: Sequence[torch.Tensor],
        shape_reason: Optional[Callable[[], Optional[str]]] = None,
        kernel_sizes: Sequence[int] = (),
) -> str:
    """Return ``'triton'`` or ``'torch'`` for one call of ``op`` on ``tensors`` under the current backend.

    ``shape_reason`` returns why the op's Triton kernel cannot take these shapes (None when it can);
    ``kernel_sizes`` are the depthwise kernel sizes of this call (``auto`` needs them inside a validated range).
    Raises :class:`KernelUnsupportedError` when the ``triton`` backend is forced on an input it cannot take.
    """
    kernel_sizes = tuple(int(k) for k in kernel_sizes)
    for calls in _observers:
        calls.append(dict(op=op, layout=tensor_layout(tensors[0]), dtypes=[_dtype_name(t) for t in tensors],
                          kernel_sizes=list(kernel_sizes)))
    backend = _backend
    if backend == 'torch' or in_export_or_trace():
        return 'torch'
    forced = backend == 'triton'
    reason = _device_reason(tensors, forced)
    if reason is None and shape_reason is not None:
        reason = shape_reason()
    if reason is None and not forced and _is_cuda(tensors[0]):
        reason = _unvalidated_reason(op, tensors, kernel_sizes)
    if reason is None:
        return 'triton'
    if forced:
        raise KernelUnsupportedError(
            f'modzoo.kernels.{op}: the "triton" backend was forced but {reason}. Use set_backend("auto") '
            f'(or {ENV_VAR}=auto) to fall back to the PyTorch reference for such inputs.')
    return 'torch'


def _tensor_arguments(args: Sequence) -> List[torch.Tensor]:
    """The tensors of an op's arguments in order, lists of tensors flattened in place, ``None`` and flags left out."""
    tensors: List[torch.Tensor] = []
    for a in args:
        if isinstance(a, torch.Tensor):
            tensors.append(a)
        elif isinstance(a, (list, tuple)):
            tensors.extend(a)
    return tensors


def runs_triton(
        op: str,
        args: Sequence,
        check_args: Callable[..., Sequence[int]],
        shape_reason: Callable[..., Optional[str]],
) -> bool:
    """Whether this call of the public op ``op`` on its tensor arguments ``args`` runs the op's Triton custom op
    (else the op runs its PyTorch reference).

    The dispatch rule of every op, in one place: exporters and tracers record the reference, without argument checks;
    otherwise ``check_args(*args)`` raises a ValueError on arguments the op does not take, whatever the backend, and
    returns the call's depthwise kernel sizes, and :func:`select_backend` decides, on every tensor of ``args`` and
    with ``shape_reason(*args)``. The op calls it inside ``if not torch.jit.is_scripting():`` (TorchScript compiles
    only the reference), with named functions: TorchScript cannot even parse a lambda there.
    """
    if in_export_or_trace():
        return False
    kernel_sizes = check_args(*args)
    return select_backend(op, _tensor_arguments(args), lambda: shape_reason(*args),
                          kernel_sizes=kernel_sizes) == 'triton'
