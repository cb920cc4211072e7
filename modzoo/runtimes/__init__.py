"""The CPU runtimes an exported graph is checked and benchmarked in (ONNX Runtime, OpenVINO), and the torch-free
worker process the benchmarks run them in.

``sessions.py`` opens a configured session (:func:`open_session`); ``worker.py`` is the benchmarks' engine worker
for these runtimes, run as a script. A leaf of the package: nothing here imports another ``modzoo`` module, so the
worker can import ``sessions.py`` by its plain name without loading ``modzoo`` and torch. ``modzoo.export`` and
``modzoo.bench`` import it; it imports neither.
"""
from .sessions import (
    OPENVINO, ORT, RUNTIME_NAMES, RUNTIMES, RuntimeUnavailable, Session, available, open_session, require_runtime,
    run_batched, runtime_list, runtime_version,
)

__all__ = ['ORT', 'OPENVINO', 'RUNTIMES', 'RUNTIME_NAMES', 'RuntimeUnavailable', 'require_runtime', 'available',
           'runtime_version', 'Session', 'open_session', 'run_batched', 'runtime_list']
