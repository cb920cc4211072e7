"""One engine of a side-by-side benchmark in its own process: PyTorch eager, ``torch.compile`` (inductor), ONNX
Runtime or OpenVINO; :func:`worker_command` starts it.

    python modzoo/bench/engine_worker.py ENGINE SPEC_JSON        # ENGINE: torch or compiled

This script serves the PyTorch engines; ONNX Runtime and OpenVINO are served by the torch-free
``modzoo/runtimes/worker.py``, whose line protocol (:func:`modzoo.runtimes.worker.run_worker`) both answer.
"""
import json
import os
import sys
import time
from typing import List

from modzoo.runtimes import open_session, worker as runtime_worker
from modzoo.runtimes.worker import OPENVINO, ORT, Engine, proc_status_mib, run_worker

TORCH, COMPILED = 'torch', 'compiled'
ENGINES = (TORCH, COMPILED, ORT, OPENVINO)


def worker_command(engine: str, spec: dict) -> List[str]:
    """The command line of ``engine``'s worker process: the runtime engines run in the torch-free worker script."""
    if engine not in ENGINES:
        raise ValueError(f'unknown engine {engine!r}: choose from {", ".join(ENGINES)}')
    script = runtime_worker.__file__ if engine in runtime_worker.RUNTIME_ENGINES else __file__
    return [sys.executable, os.path.abspath(script), engine, json.dumps(spec)]


def ort_session(onnx_path: str, threads: int, profile_prefix: str = ''):
    """A raw ``onnxruntime.InferenceSession`` configured as :func:`modzoo.runtimes.open_session` configures it
    (full graph optimisation, ``threads`` intra-op threads, one inter-op thread); with ``profile_prefix`` its profiler
    on."""
    return open_session(onnx_path, ORT, threads, profile_prefix).session


def torch_engine(engine: str, spec: dict) -> Engine:
    """The model of ``spec`` in PyTorch eager or compiled with inductor (static shapes: one compile per batch, timed
    on its first call)."""
    import torch

    import modzoo
    threads = spec['threads']
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    rss_import = proc_status_mib()
    torch.manual_seed(spec['seed'])
    model = modzoo.create_model(spec['model'], exportable=True, **spec.get('model_kwargs', {})).eval()
    if engine == COMPILED:
        model = torch.compile(model, backend='inductor', dynamic=False)
    compile_seconds = {}

    def forward(x):
        if engine == COMPILED and x.shape[0] not in compile_seconds:
            start = time.perf_counter()
            model(torch.from_numpy(x))
            compile_seconds[x.shape[0]] = time.perf_counter() - start
        return model(torch.from_numpy(x)).numpy()

    return forward, torch.set_num_threads, rss_import, compile_seconds


if __name__ == '__main__':
    run_worker(torch_engine, sys.argv[1], json.loads(sys.argv[2]))
