"""OpenVINO as a second CPU runtime: fp32 parity of our ONNX graphs (one small model per family), the int8 QDQ graph
and NNCF's int8 IR in OpenVINO, ``export_onnx.py --runtime``, and the side-by-side benchmark tool at toy size.
Skipped without the ``openvino`` extra (openvino, nncf), except the checks of the missing-package message."""
import json
import os

import numpy as np
import pytest

from modzoo import runtimes
from modzoo.export import onnx as zoo_onnx
from modzoo.export import openvino as zoo_ov
from modzoo.export import quantize
from test_int8 import FAMILY_SMALL, _kwargs_argv

needs_openvino = pytest.mark.skipif(not runtimes.available('openvino'), reason='openvino not installed')
needs_nncf = pytest.mark.skipif(not zoo_ov.nncf_available(),
                                reason='openvino/nncf not installed (pip install "modzoo[openvino]")')


def _small(name, num_classes=10):
    import torch
    torch.manual_seed(0)
    return zoo_onnx.build_export_model(name, num_classes=num_classes, model_kwargs=FAMILY_SMALL[name])


@needs_openvino
@pytest.mark.parametrize('name', sorted(FAMILY_SMALL))
def test_openvino_fp32_parity(name, tmp_path):
    """The same graph checked in both runtimes: dynamic batch and size, random and photographic inputs."""
    model = _small(name)
    plan = zoo_onnx.check_plan((64, 64), 'batch,spatial', other_batches=[2])
    result = zoo_onnx.export_onnx(model, tmp_path / 'm.onnx', img_size=(64, 64), dynamic='batch,spatial',
                                  check=True, plan=plan, runtimes=('ort', 'openvino'))
    ov_report = result.checks['openvino']
    assert set(result.checks) == {'ort', 'openvino'} and ov_report.passed
    assert ov_report.max_abs_diff <= zoo_onnx.FP32_TOLERANCE
    assert {r.size for r in ov_report.runs} == {(64, 64), (96, 128), (136, 104)}
    assert 'OpenVINO (CPU plugin) vs PyTorch' in ov_report.format()


@needs_openvino
def test_openvino_check_fails_on_a_wrong_graph(tmp_path):
    """The OpenVINO check can fail: a graph of other weights does not pass."""
    model, other = _small('zoo_efficientmod_xxs'), _small('zoo_efficientmod_xxs')
    import torch
    with torch.no_grad():
        other.get_classifier().bias.add_(0.5)
    zoo_onnx.export_onnx(other, tmp_path / 'm.onnx', img_size=(32, 32))
    report = zoo_onnx.check_onnx(tmp_path / 'm.onnx', model, [(1, (32, 32), 'random')], runtime='openvino')
    assert not report.passed and 'FAIL' in report.format()


@needs_nncf
def test_int8_graphs_in_openvino(tmp_path):
    """ORT's QDQ graph runs in OpenVINO and agrees with fp32; NNCF's IR does too, with FakeQuantize on the
    residual adds and gate multiplies' inputs, LayerNorm (MVN) float."""
    fp32 = zoo_onnx.export_onnx(_small('zoo_focalnet_tiny_srf'), tmp_path / 'f.onnx', img_size=(32, 32), batch=2)
    calib, held_out = quantize.calibration_split(quantize.DIGITS, (32, 32), 32, 64)
    qdq = quantize.quantize_onnx_int8(fp32.path, str(tmp_path / 'q.onnx'), calib.images)
    ir = zoo_ov.quantize_openvino_int8(fp32.path, str(tmp_path / 'q-openvino.xml'), calib.images)
    assert os.path.isfile(tmp_path / 'q-openvino.bin') and ir.quantized_nodes > 0 and 'MVN' in ir.float_ops
    assert ir.size_mib < quantize.file_mib(fp32.path)
    spread = float(runtimes.run_batched(runtimes.open_session(fp32.path), held_out.images, 8).std())
    ort_error = quantize.compare_int8(fp32.path, qdq.path, held_out, runtime='ort').mean_logit_error
    # random weights: near-tied logits make top-1 agreement noisy; the logit error is not
    report = quantize.compare_int8(fp32.path, qdq.path, held_out, runtime='openvino')
    assert report.images == 64 and report.int8_top1 is not None
    # the same QDQ graph errs in OpenVINO about as much as in ONNX Runtime
    assert report.mean_logit_error < 1.5 * ort_error and report.max_logit_error < 2 * spread, report.format()
    # NNCF also quantizes the residual adds and gate inputs, so its IR errs more than the QDQ graph (1.7x on an
    # AMX CPU): judged against the spread of the fp32 logits instead
    report = quantize.compare_int8(fp32.path, ir.path, held_out, runtime='openvino')
    assert report.images == 64 and report.int8_top1 is not None
    assert report.mean_logit_error < 0.1 * spread and report.max_logit_error < 2 * spread, report.format()
    # the same QDQ graph in both runtimes computes nearly the same logits
    by_runtime = [runtimes.run_batched(runtimes.open_session(qdq.path, r), held_out.images, 8)
                  for r in ('ort', 'openvino')]
    assert float(np.abs(by_runtime[0] - by_runtime[1]).mean()) < ort_error


@needs_nncf
def test_export_tool_runtime_both(tmp_path, capsys):
    from modzoo.export import cli
    out = tmp_path / 'm.onnx'
    name = 'zoo_efficientmod_xxs'
    argv = [name, '--img-size', '32', '32', '--num-classes', '10', '--check', '--runtime', 'both', '--int8',
            '--calib-data', 'digits', '--calib-images', '16', '--check-images', '16', '-o', str(out),
            '--model-kwargs'] + _kwargs_argv(FAMILY_SMALL[name])
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert '(ONNX Runtime (CPU EP) vs PyTorch)' in printed and '(OpenVINO (CPU plugin) vs PyTorch)' in printed
    assert sorted(os.listdir(tmp_path)) == ['m-int8-openvino.bin', 'm-int8-openvino.xml', 'm-int8.onnx', 'm.onnx']
    assert printed.count('int8 vs fp32 in OpenVINO (CPU plugin)') == 2  # the QDQ graph and the NNCF IR
    assert 'int8 vs fp32 in ONNX Runtime (CPU EP)' in printed


def test_export_tool_runtime_openvino_writes_openvino_forms(tmp_path):
    """``--runtime openvino`` writes OpenVINO's graph: EfficientMod channels-last, its Linear layers MatMuls (ONNX
    Runtime's graph runs them as 1x1 Convs, leaving only each attention block's two MatMuls); no --check needed."""
    import onnx

    from modzoo.export import cli
    name = 'zoo_efficientmod_xxs'
    kwargs = FAMILY_SMALL[name]
    matmuls = {}
    for runtime in ('ort', 'openvino'):
        out = tmp_path / f'{runtime}.onnx'
        argv = [name, '--img-size', '32', '32', '--runtime', runtime, '-o', str(out), '--model-kwargs']
        assert cli.main(argv + _kwargs_argv(kwargs)) == 0
        matmuls[runtime] = sum(node.op_type == 'MatMul' for node in onnx.load(str(out)).graph.node)
    assert matmuls['ort'] == 2 * sum(kwargs['attention_depth'])
    assert matmuls['openvino'] > matmuls['ort']


@needs_openvino
@pytest.mark.parametrize('name', sorted(FAMILY_SMALL))
def test_openvino_graph_matches_pytorch_in_openvino(name, tmp_path, capsys):
    """Each family's ``--runtime openvino`` graph passes the export's own check in OpenVINO (dynamic batch)."""
    from modzoo.export import cli
    argv = [name, '--img-size', '32', '32', '--runtime', 'openvino', '--check', '-o', str(tmp_path / 'm.onnx'),
            '--model-kwargs'] + _kwargs_argv(FAMILY_SMALL[name])
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert '(OpenVINO (CPU plugin) vs PyTorch)' in capsys.readouterr().out


def test_missing_openvino_is_one_clear_line(tmp_path, capsys, monkeypatch):
    from modzoo.export import cli
    from modzoo.runtimes import sessions as runtime_code  # where require_runtime looks the package up
    monkeypatch.setattr(runtime_code, 'available', lambda runtime: runtime != 'openvino')
    out = str(tmp_path / 'm.onnx')
    assert cli.main(['zoo_efficientmod_xxs', '--check', '--runtime', 'openvino', '-o', out]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: OpenVINO (CPU plugin) is not installed') and 'modzoo[openvino]' in err
    assert len(err.strip().splitlines()) == 1 and not os.listdir(tmp_path)
    # without --check or --int8 the runtime is not needed: nothing to complain about up front
    with pytest.raises(runtimes.RuntimeUnavailable, match='modzoo\\[openvino\\]'):
        runtimes.open_session(out, 'openvino')


# ----------------------------------------------------------------------------------------------------------------
# the side-by-side benchmark tool


def _fake_run():
    def row(threads, batch, ms, loaded=False):
        return dict(threads=threads, batch=batch, ms=ms, peak_mib={k: 100.0 for k in ms},
                    total_mib={k: 300.0 for k in ms}, load_before=0.4, load_after=0.6 if not loaded else 3.1,
                    load_limit=1.5 + threads - 1, loaded=loaded, attempts=1)
    ms1 = dict(eager=40.0, compile=35.0, ort_fp32=20.0, ort_int8=10.0, ov_fp32=22.0, ov_int8=25.0)
    ms8 = {k: 8 * v for k, v in ms1.items()}
    result = dict(model='zoo_smt_tiny', size=224, repeats=5, warmup=1, paths=list(ms1),
                  parity={k: dict(max_abs_diff=1e-6, top1_agreement=100.0) for k in ms1},
                  file_mib=dict(fp32=40.0, ort_int8=11.0, ov_int8=12.0), prepare_s=10.0, compile_s={'1': 30.0},
                  rows=[row(1, 1, ms1), row(1, 8, ms8), row(2, 1, dict(ms1, ov_int8=5.0), loaded=True),
                        row(2, 8, ms8)])
    return dict(machine='test CPU', command='python tools/bench_cpu_deploy.py zoo_smt_tiny', date='2026-01-01',
                results=[result], skipped={}, skipped_paths={})


def test_side_by_side_table_and_recommendation(tmp_path):
    from modzoo.bench import cpu_deploy
    from modzoo.bench.report import write_report
    run = _fake_run()
    table = cpu_deploy.table_markdown(run)
    lines = [line for line in table.splitlines() if line.startswith('| `zoo_smt_tiny` | 1 | 1 |')]
    assert lines == ['| `zoo_smt_tiny` | 1 | 1 | 40.0 / 25.0 / 100 | 35.0 / 28.6 / 100 | 20.0 / 50.0 / 100 | '
                     '10.0 / 100.0 / 100 | 22.0 / 45.5 / 100 | 25.0 / 40.0 / 100 | ORT int8 **4.00x** | 0.4→0.6 |']
    assert '**LOADED**' in table and '1 of 4 rows stayed above it' in table
    assert 'Command: `python tools/bench_cpu_deploy.py zoo_smt_tiny`' in table and 'b1: 30' in table
    assert 'int8 over fp32 in ONNX Runtime: median 2.00x over 4 rows, 4 reach the 1.8x goal.' in table
    text = cpu_deploy.recommendation_markdown(run)
    assert '**SMT**' in text and 'batch 1: **OpenVINO int8** (8.00x eager)' in text
    assert 'OpenVINO int8' in text and '1 of its rows LOADED' in text
    bench, readme = tmp_path / 'B.md', tmp_path / 'R.md'
    readme.write_text(f'# x\n\n{cpu_deploy.README_START}\nnot measured yet\n{cpu_deploy.README_END}\n\nrest\n')
    write_report(blocks=cpu_deploy.blocks(run, str(bench), str(readme)))
    assert 'not measured yet' not in readme.read_text() and readme.read_text().endswith('\n\nrest\n')
    assert table in bench.read_text()


def test_quick_mode_refuses_to_write(capsys):
    from modzoo.bench import cpu_deploy
    with pytest.raises(SystemExit):
        cpu_deploy.main(['--quick', '--write-benchmarks'])
    assert 'not for BENCHMARKS.md' in capsys.readouterr().err


@needs_nncf
def test_side_by_side_quick_run(tmp_path):
    """The whole tool at toy size (32 px, 1 thread): every path runs, parity is recorded, rows carry the load."""
    from modzoo.bench import cpu_deploy
    out = tmp_path / 'run.json'
    paths = ['eager', 'ort_fp32', 'ort_int8', 'ov_fp32', 'ov_int8']
    assert cpu_deploy.main(['--quick', 'zoo_efficientmod_xxs', '--paths', *paths, '--json', str(out)]) == 0
    run = json.loads(out.read_text())
    (result,) = run['results']
    assert result['paths'] == paths and len(result['rows']) == 2
    assert result['parity']['ort_fp32']['max_abs_diff'] < 1e-4 and result['parity']['ov_fp32']['max_abs_diff'] < 1e-4
    for row in result['rows']:
        assert set(row['ms']) == set(paths) and all(np.isfinite(v) and v > 0 for v in row['ms'].values())
        assert 'load_before' in row and all(v > 0 for v in row['peak_mib'].values())
    assert run['host'] and run['date']
