"""One engine of a side-by-side benchmark (PyTorch eager or ONNX Runtime) in its own process.

    python modzoo/bench/engine_worker.py ENGINE SPEC_JSON

Line protocol on stdin/stdout: one JSON command per line (``run``, ``save``, ``mem``, ``quit``), one JSON reply per
line. Started by path, not with ``python -m``: ``-m`` would import the ``modzoo`` package (and torch) first, and the
ONNX Runtime worker must not carry torch's memory and threads. Standard library only at import for the same reason.
"""
import json
import sys
import time

TORCH, ORT = 'torch', 'ort'


def proc_status_mib(field: str = 'VmRSS') -> float:
    """A memory field of ``/proc/self/status`` in MiB: ``VmRSS`` (resident now) or ``VmHWM`` (peak resident)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    return float('nan')


def ort_session(onnx_path: str, threads: int, profile_prefix: str = ''):
    """An ONNX Runtime CPU session with full graph optimisation, ``threads`` intra-op threads and one inter-op
    thread, warnings off; with ``profile_prefix`` its profiler on."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(onnx_path, options, providers=['CPUExecutionProvider'])


def serve(engine: str, spec: dict) -> None:
    """Build the engine described by ``spec`` and answer commands on stdin until ``quit``."""
    import numpy as np
    out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not corrupt the protocol
    threads = spec['threads']
    if engine == TORCH:
        import torch
        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
        import modzoo
        rss_import = proc_status_mib()
        torch.manual_seed(spec['seed'])
        model = modzoo.create_model(spec['model'], exportable=True, **spec.get('model_kwargs', {})).eval()

        def forward(x):
            return model(torch.from_numpy(x)).numpy()
    else:
        import onnxruntime  # noqa: F401  (imported before the resident-set reading, as for torch above)
        rss_import = proc_status_mib()
        session = ort_session(spec['onnx'], threads)
        input_name = session.get_inputs()[0].name

        def forward(x):
            return session.run(None, {input_name: x})[0]

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
        elif cmd['cmd'] == 'mem':
            reply(dict(peak=proc_status_mib('VmHWM'), rss_import=rss_import))
        elif cmd['cmd'] == 'quit':
            reply(dict(bye=True))
            return


if __name__ == '__main__':
    serve(sys.argv[1], json.loads(sys.argv[2]))
