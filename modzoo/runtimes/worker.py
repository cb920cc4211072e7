"""One engine of a side-by-side benchmark in its own process; this script serves ONNX Runtime and OpenVINO.

    python modzoo/runtimes/worker.py ENGINE SPEC_JSON        # ENGINE: ort or openvino

Line protocol on stdin/stdout: one JSON command per line (``run``, ``save``, ``threads``, ``mem``, ``quit``), one JSON
reply per line, answered by :func:`run_worker` for any engine (``modzoo/bench/engine_worker.py`` serves the PyTorch
engines with it; its ``worker_command`` starts the right script). Started by path, not with ``python -m``: ``-m``
would import the ``modzoo`` package (and torch) first, and the runtime workers must not carry torch's memory and
threads. Standard library only at import for the same reason; the sessions come from ``sessions.py`` beside this file.
"""
import json
import sys
import time
from typing import Callable, Dict, Tuple

ORT, OPENVINO = 'ort', 'openvino'
RUNTIME_ENGINES = (ORT, OPENVINO)

# what an engine builder returns: forward (numpy batch -> numpy output), set_threads, resident MiB after the
# engine's imports, and compile seconds per batch (filled in by forward where the engine compiles)
Engine = Tuple[Callable, Callable[[int], None], float, Dict[int, float]]


def sessions_module():
    """``modzoo/runtimes/sessions.py``: by its plain name when this file runs as a script (its folder is then first on
    ``sys.path``), so the runtime workers never import the ``modzoo`` package and torch."""
    if __package__:
        from . import sessions
    else:
        import sessions
    return sessions


def proc_status_mib(field: str = 'VmRSS') -> float:
    """A memory field of ``/proc/self/status`` in MiB: ``VmRSS`` (resident now) or ``VmHWM`` (peak resident)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    return float('nan')


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current resident set (Linux), so each row has its own
    peak."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def runtime_engine(engine: str, spec: dict) -> Engine:
    """An ONNX Runtime or OpenVINO session on ``spec['onnx']`` with ``spec['threads']`` intra-op threads."""
    sessions = sessions_module()
    sessions.require_runtime(engine)
    __import__('onnxruntime' if engine == ORT else 'openvino')  # before the resident-set reading, as for torch
    rss_import = proc_status_mib()
    session = sessions.open_session(spec['onnx'], engine, spec['threads'])

    def forward(x):
        return session.run(x)[0]

    def set_threads(n):
        nonlocal session
        session = None  # free the old session's buffers first
        session = sessions.open_session(spec['onnx'], engine, n)

    return forward, set_threads, rss_import, {}


def run_worker(build: Callable[[str, dict], Engine], engine: str, spec: dict) -> None:
    """Build the engine described by ``spec`` with ``build`` and answer commands on stdin until ``quit``."""
    import numpy as np
    out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not corrupt the protocol
    forward, set_threads, rss_import, compile_seconds = build(engine, spec)
    inputs = {}

    def get_input(batch):
        if batch not in inputs:
            rng = np.random.default_rng(batch)
            inputs[batch] = rng.standard_normal((batch, 3, spec['size'], spec['size'])).astype(np.float32)
        return inputs[batch]

    def reply(obj):
        out.write(json.dumps(obj) + '\n')
        out.flush()

    reply(dict(ready=True, rss_import=rss_import, rss_loaded=proc_status_mib()))
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd['cmd'] == 'run':
            x = get_input(cmd['batch'])
            start = time.perf_counter()
            forward(x)
            reply(dict(seconds=time.perf_counter() - start))
        elif cmd['cmd'] == 'save':
            np.save(cmd['path'], forward(get_input(cmd['batch'])))
            reply(dict(ok=True))
        elif cmd['cmd'] == 'threads':
            set_threads(cmd['threads'])
            reply(dict(ok=True))
        elif cmd['cmd'] == 'mem':  # the peak since the last 'mem' (with reset) or since the start
            reply(dict(peak=proc_status_mib('VmHWM'), rss_import=rss_import, compile_s=compile_seconds))
            if cmd.get('reset'):
                reset_peak_rss()
        elif cmd['cmd'] == 'quit':
            reply(dict(bye=True))
            return


if __name__ == '__main__':
    run_worker(runtime_engine, sys.argv[1], json.loads(sys.argv[2]))
