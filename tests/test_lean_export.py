"""The default export writes lean graphs (issue 32), and the graph profiler shows where a graph spends its time.

Lean, checked on small builds of each family (the FAMILY_SMALL of the int8 tests) at 64x64: the default export
(``export_default_graph``: deploy rewrites, export forms, onnxslim) matches PyTorch within the fp32 tolerance and
keeps nothing that a fixed input size makes constant: no GridPE rotation tables computed in the graph (no
Sin/Cos/Range), no float64, no ConstantOfShape (FocalNet's old zero-initialised context sum), and fewer nodes than
the exporter's own graph.
"""
import json
import os
from collections import Counter

import onnx
import pytest
import torch

from modzoo.bench import profile_graph
from modzoo.export import deploy
from modzoo.export import onnx as zoo_onnx
from test_int8 import FAMILY_SMALL

SIZE = (64, 64)
COMPUTED_FROM_SIZES = {'Sin', 'Cos', 'Range', 'ConstantOfShape'}


def _op_counts(path):
    return Counter(node.op_type for node in onnx.load(path).graph.node)


def _doubles(path):
    """Names of the graph's float64 tensors (initializers) and Casts to float64."""
    proto = onnx.load(path)
    found = [t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.DOUBLE]
    for node in proto.graph.node:
        if node.op_type == 'Cast' and any(a.name == 'to' and a.i == onnx.TensorProto.DOUBLE for a in node.attribute):
            found.append(node.name)
    return found


@pytest.mark.parametrize('name', sorted(FAMILY_SMALL))
def test_default_export_is_lean_and_exact(name, tmp_path):
    torch.manual_seed(0)
    lean = str(tmp_path / 'lean.onnx')
    result = zoo_onnx.export_default_graph(name, lean, img_size=SIZE, model_kwargs=FAMILY_SMALL[name], check=True,
                                           photos=False)
    assert result.check.passed and result.check.max_abs_diff <= zoo_onnx.FP32_TOLERANCE, result.check.format()
    torch.manual_seed(0)
    raw = str(tmp_path / 'raw.onnx')
    zoo_onnx.export_default_graph(name, raw, img_size=SIZE, model_kwargs=FAMILY_SMALL[name], deploy=False,
                                  simplify=False)
    lean_ops, raw_ops = _op_counts(lean), _op_counts(raw)
    assert not COMPUTED_FROM_SIZES & set(lean_ops), {op: lean_ops[op] for op in COMPUTED_FROM_SIZES & set(lean_ops)}
    assert not _doubles(lean)
    assert sum(lean_ops.values()) < sum(raw_ops.values())
    if name == 'zoo_gridpe_pvt_v2_b0':  # the exporter's own graph builds the rotation tables on every forward
        assert {'Sin', 'Cos'} <= set(raw_ops)


def test_dynamic_size_export_keeps_gridpe_tables_exact(tmp_path):
    """With a dynamic height/width the tables must follow the input size: computed in the graph, still exact."""
    name = 'zoo_gridpe_pvt_v2_b0'
    torch.manual_seed(0)
    path = str(tmp_path / 'dyn.onnx')
    result = zoo_onnx.export_default_graph(name, path, img_size=SIZE, dynamic='batch,spatial',
                                           model_kwargs=FAMILY_SMALL[name], check=True, photos=False)
    assert result.check.passed, result.check.format()
    assert {r.size for r in result.check.runs} == {SIZE, (96, 128), (136, 104)}
    assert {'Sin', 'Cos'} <= set(_op_counts(path))


def test_prepare_for_export_applies_forms_and_refuses_unknown_targets(monkeypatch):
    """A module's export_form(target) replaces it, a foreign type's form comes from FOREIGN_EXPORT_FORMS."""
    class Doubler(torch.nn.Module):
        def forward(self, x):
            return 2 * x

        def export_form(self, target):
            return torch.nn.Identity() if target == 'onnx' else None

    model = torch.nn.Sequential(Doubler(), torch.nn.ReLU())
    monkeypatch.setitem(deploy.FOREIGN_EXPORT_FORMS['onnx'], torch.nn.ReLU, lambda m: torch.nn.Tanh())
    deploy.prepare_for_export(model, 'onnx')
    assert [type(m) for m in model] == [torch.nn.Identity, torch.nn.Tanh]
    with pytest.raises(ValueError, match='unknown export target'):
        deploy.prepare_for_export(model, 'tflite')


def _tiny_graph(path, channels):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, channels, 3, padding=1), torch.nn.GELU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(channels, 4)).eval()
    torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), path, dynamo=False, opset_version=17,
                      input_names=['input'], output_names=['logits'])
    return path


@pytest.mark.parametrize('runtimes', [['ort'], ['ort', 'openvino']])
def test_profile_command_side_by_side(runtimes, tmp_path, capsys):
    if 'openvino' in runtimes:
        pytest.importorskip('openvino')
    a, b = _tiny_graph(str(tmp_path / 'a.onnx'), 8), _tiny_graph(str(tmp_path / 'b.onnx'), 16)
    out = str(tmp_path / 'profile.json')
    code = profile_graph.main([a, '--anchor', b, '--runtimes', *runtimes, '--size', '32', '--runs', '2',
                               '--warmup', '1', '--top', '3', '--json', out])
    assert code == 0
    text = capsys.readouterr().out
    assert 'time by op type' in text and '**kernel total**' in text
    assert text.count('top 3 nodes of') == 2 * len(runtimes)
    saved = json.load(open(out))
    assert set(saved['profiles']) == set(runtimes)
    for runtime in runtimes:
        for graph in saved['profiles'][runtime]:
            ops = {n['op'] for n in graph['nodes']}
            assert ops & {'Conv', 'Convolution', 'FusedConv'}, ops
            assert all(n['ms'] >= 0 for n in graph['nodes'])


def test_profile_command_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        profile_graph.main([str(tmp_path / 'missing.onnx')])
    assert e.value.code == 2
    assert 'no ONNX graph at' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        profile_graph.main(['not_a_model_anywhere'])
    assert e.value.code == 2
    assert 'unknown model' in capsys.readouterr().err.lower()
    assert not os.listdir(tmp_path)


def test_anchor_table_is_written_and_flags_a_missed_goal(tmp_path, monkeypatch):
    """A tiny pair (GridPE-PVT v2 b0 and timm's PVT v2 b0, both shrunk alike) at 64 px with an unreachable goal: the
    BENCHMARKS.md and README blocks are written between their markers, the miss is flagged and explained."""
    from modzoo.bench import anchors
    from modzoo.bench.common import LoadGuard
    kwargs = FAMILY_SMALL['zoo_gridpe_pvt_v2_b0']
    pair = anchors.Pair('zoo_gridpe_pvt_v2_b0', 'pvt_v2_b0', goal=0.01, zoo_kwargs=kwargs, anchor_kwargs=kwargs)
    guard = LoadGuard(threshold=1e9, retries=0)
    result = anchors.bench_pair(pair, 64, ['ort_fp32'], [(1, 1)], rounds=2, warmup=0, workdir=str(tmp_path / 'w'),
                                guard=guard, calib_images=4)
    assert result['gmacs']['zoo'] == pytest.approx(result['gmacs']['anchor'], rel=0.05)
    assert anchors.gated_ratio(result) > pair.goal
    assert result['gap'] and {'op', 'excess_ms'} <= set(result['gap'][0])
    run = dict(machine='test machine', command='python tools/bench_anchors.py (test)', date='2026-12-07',
               results=[result], skipped={})
    benchmarks, readme = tmp_path / 'BENCHMARKS.md', tmp_path / 'README.md'
    benchmarks.write_text('# benchmarks\n')
    readme.write_text(f'intro\n\n{anchors.README_START}\nold\n{anchors.README_END}\n\nrest\n')
    anchors.write_report(run, str(tmp_path / 'run.json'), anchors.blocks(run, str(benchmarks), str(readme)))
    table = benchmarks.read_text()
    assert anchors.START in table and anchors.END in table
    assert '| `zoo_gridpe_pvt_v2_b0` | `pvt_v2_b0` |' in table and '**missed**' in table
    assert 'largest excess by op type' in table
    text = readme.read_text()
    assert 'old' not in text and text.endswith('rest\n') and '(goal ≤ 0.01: missed)' in text
    assert json.load(open(tmp_path / 'run.json'))['results'][0]['pair']['goal'] == 0.01
    met = dict(result, pair=dict(result['pair'], goal=100.0))
    assert anchors.verdict(met) == 'met'


def test_anchor_command_bad_input(capsys):
    from modzoo.bench import anchors
    for argv, message in ((['--pairs', 'zoo_smt_tiny=resnet50'], 'unknown pair'),
                          (['--settings', '1by1'], 'THREADSxBATCH'),
                          (['--quick', '--write-benchmarks'], 'not for BENCHMARKS.md')):
        with pytest.raises(SystemExit) as e:
            anchors.main(argv)
        assert e.value.code == 2
        assert message in capsys.readouterr().err
