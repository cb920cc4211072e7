"""The CPU runtimes an exported graph is checked in (ONNX Runtime, OpenVINO): :mod:`modzoo.bench.runtimes`, where
the code lives so the benchmark's runtime workers can import it without importing the ``modzoo`` package (and
torch)."""
from modzoo.bench.runtimes import (  # noqa: F401
    OPENVINO, ORT, RUNTIME_NAMES, RUNTIMES, RuntimeUnavailable, Session, available, open_session, require_runtime,
    run_batched, runtime_list, runtime_version,
)
from modzoo.bench.runtimes import __all__  # noqa: F401
