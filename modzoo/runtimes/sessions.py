"""The CPU runtimes an exported graph is checked and benchmarked in: ONNX Runtime and OpenVINO.

    session = open_session('m.onnx', 'openvino', threads=1)
    logits = session.run(images)[0]

:func:`open_session` is the one place a runtime session is configured, for the parity checks
(``modzoo.export.onnx.check_onnx``, ``modzoo.export.quantize.compare_int8``) and the benchmark workers alike.
ONNX Runtime: CPU execution provider, full graph optimisation. OpenVINO: CPU plugin, f32 inference precision (on
CPUs with bf16 units the plugin would otherwise compute in bf16 and miss fp32 parity), latency hint, one stream;
it reads ``.onnx`` graphs directly and its own ``.xml`` IR (what NNCF's int8 quantization writes).

Standard library and numpy only, and no import of any other ``modzoo`` module: the torch-free engine worker
beside it (``worker.py``, run as a script) imports this file by its plain name. ``modzoo.export`` and
``modzoo.bench`` import it as ``modzoo.runtimes``.
"""
import importlib.util
import os
from typing import List, Optional, Sequence

import numpy as np

__all__ = ['ORT', 'OPENVINO', 'RUNTIMES', 'RUNTIME_NAMES', 'RuntimeUnavailable', 'require_runtime', 'available',
           'runtime_version', 'Session', 'open_session', 'run_batched', 'runtime_list']

ORT, OPENVINO = 'ort', 'openvino'
RUNTIMES = (ORT, OPENVINO)
RUNTIME_NAMES = {ORT: 'ONNX Runtime (CPU EP)', OPENVINO: 'OpenVINO (CPU plugin)'}
_MODULES = {ORT: 'onnxruntime', OPENVINO: 'openvino'}
_INSTALL = {ORT: 'pip install onnxruntime', OPENVINO: 'pip install "modzoo[openvino]" (or: pip install openvino)'}


class RuntimeUnavailable(ImportError):
    """The runtime's package is not installed; the message says how to install it."""


def available(runtime: str) -> bool:
    return importlib.util.find_spec(_MODULES[runtime]) is not None


def require_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f'unknown runtime {runtime!r}: choose from {", ".join(RUNTIMES)}')
    if not available(runtime):
        raise RuntimeUnavailable(f'{RUNTIME_NAMES[runtime]} is not installed: {_INSTALL[runtime]}')


def runtime_version(runtime: str) -> str:
    require_runtime(runtime)
    module = importlib.import_module(_MODULES[runtime])
    return f'{_MODULES[runtime]} {getattr(module, "__version__", None) or module.get_version()}'


class Session:
    """One loaded graph: ``run(x)`` returns every output as a numpy array, in the graph's output order."""

    runtime: str
    input_name: str
    input_shape: List[Optional[int]]  # None where the dimension is dynamic
    input_dtype: type

    def run(self, x: np.ndarray) -> List[np.ndarray]:
        raise NotImplementedError


class _OrtSession(Session):
    runtime = ORT

    def __init__(self, path: str, threads: int, profile_prefix: str):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3  # declared-vs-actual shape notes for dynamic dims are not errors
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        self.session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        meta = self.session.get_inputs()[0]
        self.input_name = meta.name
        self.input_shape = [d if isinstance(d, int) else None for d in meta.shape]
        self.input_dtype = np.float16 if meta.type == 'tensor(float16)' else np.float32

    def run(self, x: np.ndarray) -> List[np.ndarray]:
        return self.session.run(None, {self.input_name: x})

    def end_profiling(self) -> str:
        return self.session.end_profiling()


class _OpenVinoSession(Session):
    runtime = OPENVINO

    def __init__(self, path: str, threads: int, perf_counters: bool = False):
        import openvino as ov
        core = ov.Core()
        config = {'INFERENCE_PRECISION_HINT': 'f32', 'PERFORMANCE_HINT': 'LATENCY', 'NUM_STREAMS': '1'}
        if threads:
            config['INFERENCE_NUM_THREADS'] = str(threads)
        if perf_counters:
            config['PERF_COUNT'] = 'YES'
        self.compiled = core.compile_model(core.read_model(path), 'CPU', config)
        self.request = self.compiled.create_infer_request()
        port = self.compiled.input(0)
        self.input_name = port.get_any_name()
        self.input_shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
        self.input_dtype = np.float16 if port.get_element_type() == ov.Type.f16 else np.float32

    def run(self, x: np.ndarray) -> List[np.ndarray]:
        self.request.infer({0: x})
        return [self.request.get_output_tensor(i).data.copy() for i in range(len(self.compiled.outputs))]

    def perf_counters(self) -> List[dict]:
        """The per-node counters of the last ``run`` (a session opened with ``profile=True``): node name, its type in
        the source graph (``op``), the kernel that ran it (``exec``) and its time in microseconds."""
        return [dict(node=info.node_name, op=info.node_type, exec=info.exec_type,
                     us=info.real_time.total_seconds() * 1e6)
                for info in self.request.get_profiling_info()
                if info.status == info.Status.EXECUTED]


def open_session(path: str, runtime: str = ORT, threads: int = 0, profile_prefix: str = '',
                 profile: bool = False) -> Session:
    """A CPU session of ``runtime`` on the graph at ``path``; ``threads`` intra-op threads (0: the runtime's
    default). Profiling: ``profile_prefix`` turns on ONNX Runtime's profiler (its trace file starts with it),
    ``profile`` OpenVINO's per-node performance counters (``session.perf_counters()``)."""
    require_runtime(runtime)
    path = os.fspath(path)
    if runtime == ORT:
        if profile and not profile_prefix:
            raise ValueError('ONNX Runtime profiles into a trace file: pass profile_prefix')
        return _OrtSession(path, threads, profile_prefix)
    if profile_prefix:
        raise ValueError('OpenVINO has no trace file: pass profile=True for its performance counters')
    return _OpenVinoSession(path, threads, profile)


def run_batched(session: Session, images: np.ndarray, batch: int) -> np.ndarray:
    """The first output over ``images`` in batches (a fixed-batch graph runs whole batches only: a remainder is
    left out)."""
    static = session.input_shape[0] if session.input_shape else None
    step = static or batch
    if static and len(images) < static:
        raise ValueError(f'the graph has a fixed batch of {static}: give at least {static} images')
    stop = len(images) - step + 1 if static else len(images)
    return np.concatenate([session.run(images[i:i + step])[0] for i in range(0, stop, step)])


def runtime_list(value: str) -> Sequence[str]:
    """``ort``, ``openvino`` or ``both`` as a tuple of runtimes (the ``--runtime`` option)."""
    return RUNTIMES if value == 'both' else (value,)
