"""modzoo.bench: the engine worker's protocol (the ONNX Runtime worker never imports torch), interleaved timing and
the environment of measurement subprocesses."""
import importlib.util
import json
import os
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from modzoo.bench import common, engine_worker


@pytest.mark.parametrize('engine', [
    engine_worker.ORT,
    pytest.param(engine_worker.OPENVINO, marks=pytest.mark.skipif(
        importlib.util.find_spec('openvino') is None, reason='openvino not installed'))])
def test_runtime_worker_answers_without_importing_torch(tmp_path, engine):
    graph = helper.make_graph(
        [helper.make_node('Identity', ['x'], ['y'])], 'identity',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['n', 3, 4, 4])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['n', 3, 4, 4])])
    path = str(tmp_path / 'identity.onnx')
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), path)
    spec = dict(onnx=path, threads=1, size=4)
    out_path = str(tmp_path / 'out.npy')
    commands = [dict(cmd='run', batch=2), dict(cmd='save', batch=1, path=out_path), dict(cmd='threads', threads=2),
                dict(cmd='mem', reset=True), dict(cmd='quit')]
    python, *worker_args = engine_worker.worker_command(engine, spec)  # started as the benchmarks start it
    proc = subprocess.run(
        [python, '-X', 'importtime', *worker_args],
        input=''.join(json.dumps(c) + '\n' for c in commands), capture_output=True, text=True, timeout=120,
        env=common.subprocess_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    ready, run, saved, threads, mem, bye = [json.loads(line) for line in proc.stdout.splitlines()]
    assert ready['ready'] and run['seconds'] >= 0 and saved == threads == {'ok': True} and bye == {'bye': True}
    assert mem['peak'] >= mem['rss_import'] > 0
    assert np.load(out_path).shape == (1, 3, 4, 4)
    imported = {line.rsplit('|', 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith('import time')}
    assert ('onnxruntime' if engine == engine_worker.ORT else 'openvino') in imported
    assert 'torch' not in imported and 'modzoo' not in imported


def test_worker_command_starts_torch_engines_here_and_runtimes_in_the_leaf_worker():
    from modzoo.runtimes import worker as runtime_worker
    scripts = {engine: engine_worker.worker_command(engine, {})[1] for engine in engine_worker.ENGINES}
    assert scripts[engine_worker.ORT] == scripts[engine_worker.OPENVINO] == os.path.abspath(runtime_worker.__file__)
    assert scripts[engine_worker.TORCH] == scripts[engine_worker.COMPILED] == os.path.abspath(engine_worker.__file__)
    with pytest.raises(ValueError, match='unknown engine'):
        engine_worker.worker_command('tensorrt', {})


def test_interleaved_seconds_alternates_and_drops_the_warmup():
    calls = []
    timers = {name: (lambda name=name: calls.append(name) or float(len(calls))) for name in ('a', 'b')}
    times = common.interleaved_seconds(timers, repeats=2, warmup=1)
    assert calls == ['a', 'b', 'b', 'a', 'a', 'b']
    assert times == {'a': [4.0, 5.0], 'b': [3.0, 6.0]}
    calls.clear()
    common.interleaved_seconds(timers, repeats=2, alternate=False)
    assert calls == ['a', 'b', 'a', 'b']


def test_subprocess_env_puts_this_package_first(monkeypatch):
    monkeypatch.setenv('PYTHONPATH', '/elsewhere')
    env = common.subprocess_env(MALLOC_MMAP_THRESHOLD_='65536')
    first = env['PYTHONPATH'].split(os.pathsep)[0]
    assert os.path.isfile(os.path.join(first, 'modzoo', 'bench', 'common.py'))
    assert env['PYTHONPATH'].endswith(os.pathsep + '/elsewhere') and env['MALLOC_MMAP_THRESHOLD_'] == '65536'
