"""One engine of a side-by-side benchmark in its own process: PyTorch eager, ``torch.compile`` (inductor), ONNX
Runtime or OpenVINO.

    python modzoo/bench/engine_worker.py ENGINE SPEC_JSON

Line protocol on stdin/stdout: one JSON command per line (``run``, ``save``, ``threads``, ``mem``, ``quit``), one JSON
reply per line. Started by path, not with ``python -m``: ``-m`` would import the ``modzoo`` package (and torch) first,
and the ONNX Runtime and OpenVINO workers must not carry torch's memory and threads. Standard library only at import
for the same reason; the runtime sessions come from ``runtimes.py`` beside this file (``modzoo.bench.runtimes``).
"""
import json
import sys
import time

TORCH, COMPILED, ORT, OPENVINO = 'torch', 'compiled', 'ort', 'openvino'
ENGINES = (TORCH, COMPILED, ORT, OPENVINO)


def runtimes_module():
    """``modzoo/bench/runtimes.py``: by its plain name when this file runs as a script (its folder is then first on
    ``sys.path``), so the runtime workers never import the ``modzoo`` package and torch."""
    if __package__:
        from . import runtimes
    else:
        import runtimes
    return runtimes


def proc_status_mib(field: str = 'VmRSS') -> float:
    """A memory field of ``/proc/self/status`` in MiB: ``VmRSS`` (resident now) or ``VmHWM`` (peak resident)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    return float('nan')


def ort_session(onnx_path: str, threads: int, profile_prefix: str = ''):
    """A raw ``onnxruntime.InferenceSession`` configured as :func:`modzoo.bench.runtimes.open_session` configures it
    (full graph optimisation, ``threads`` intra-op threads, one inter-op thread); with ``profile_prefix`` its profiler
    on."""
    return runtimes_module().open_session(onnx_path, ORT, threads, profile_prefix).session


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current resident set (Linux), so each row has its own
    peak."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def serve(engine: str, spec: dict) -> None:
    """Build the engine described by ``spec`` and answer commands on stdin until ``quit``."""
    import numpy as np
    out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not corrupt the protocol
    threads = spec['threads']
    compile_seconds = {}
    if engine in (TORCH, COMPILED):
        import torch
        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
        import modzoo
        rss_import = proc_status_mib()
        torch.manual_seed(spec['seed'])
        model = modzoo.create_model(spec['model'], exportable=True, **spec.get('model_kwargs', {})).eval()
        if engine == COMPILED:
            # static shapes: one compile per batch, timed on its first call
            model = torch.compile(model, backend='inductor', dynamic=False)

        def forward(x):
            if engine == COMPILED and x.shape[0] not in compile_seconds:
                start = time.perf_counter()
                model(torch.from_numpy(x))
                compile_seconds[x.shape[0]] = time.perf_counter() - start
            return model(torch.from_numpy(x)).numpy()

        def set_threads(n):
            torch.set_num_threads(n)
    else:
        runtimes = runtimes_module()
        runtimes.require_runtime(engine)
        __import__('onnxruntime' if engine == ORT else 'openvino')  # before the resident-set reading, as for torch
        rss_import = proc_status_mib()
        session = runtimes.open_session(spec['onnx'], engine, threads)

        def forward(x):
            return session.run(x)[0]

        def set_threads(n):
            nonlocal session
            session = None  # free the old session's buffers first
            session = runtimes.open_session(spec['onnx'], engine, n)

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
    serve(sys.argv[1], json.loads(sys.argv[2]))
