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


def _depthwise_ffn_convs(path):
    """(name, op type of the node feeding it) of every depthwise Conv inside an FFN (``mlp``) of the graph."""
    graph = onnx.load(path).graph
    producer = {out: node for node in graph.node for out in node.output}
    found = []
    for node in graph.node:
        groups = [a.i for a in node.attribute if a.name == 'group']
        if node.op_type == 'Conv' and '/mlp/' in node.name and groups and groups[0] > 1:
            found.append((node.name, producer[node.input[0]].op_type))
    return found


@pytest.mark.parametrize('name', ['zoo_smt_tiny', 'zoo_gridpe_pvt_v2_b0'])
def test_ffn_export_forms_keep_the_hidden_map_channels_first(name, tmp_path):
    """SMT's ConvFFN and PVT v2's MlpWithDepthwiseConv export channels-first: fc1 is a 1x1 Conv feeding the
    depthwise conv directly, no Transpose of the wide hidden map (their eager forms transpose it twice per block)."""
    torch.manual_seed(0)
    path = str(tmp_path / 'lean.onnx')
    zoo_onnx.export_default_graph(name, path, img_size=SIZE, model_kwargs=FAMILY_SMALL[name])
    convs = _depthwise_ffn_convs(path)
    assert len(convs) == sum(FAMILY_SMALL[name].get('depths'))
    assert {op for _, op in convs} == {'Conv'}, convs


@pytest.mark.parametrize('name', ['zoo_smt_tiny', 'zoo_gridpe_pvt_v2_b0'])
def test_ffn_export_forms_match_eager(name):
    """The forms compute the FFN of the eager model (prepare_for_export on a copy) to fp32 rounding."""
    import copy

    import timm
    torch.manual_seed(0)
    model = timm.create_model(name, **FAMILY_SMALL[name]).eval()
    lean = deploy.prepare_for_export(copy.deepcopy(model), 'onnx')
    forms = [m for m in lean.modules() if type(m).__name__ in ('ConvFFNNCHW', 'MlpWithDepthwiseConvNCHW')]
    assert len(forms) == sum(FAMILY_SMALL[name]['depths'])
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(lean(x), model(x), rtol=0, atol=1e-5)


# the forms that pick ONNX Runtime's NCHWc layout for a whole stage: 'onnx' only, OpenVINO runs the eager layout faster
ORT_STAGE_FORMS = {'EfficientModStageNCHW', 'EfficientModBlockNCHW', 'AttentionBlockNCHW', 'FocalNetStageNHWC',
                   'FocalNetBlockNHWC', 'LayerNorm'}


@pytest.mark.parametrize('name', sorted(FAMILY_SMALL))
def test_openvino_target_keeps_the_ffn_forms_and_drops_the_ort_stage_forms(name):
    """``prepare_for_export(model, 'openvino')`` (``tools/export_onnx.py --runtime openvino``): the FFN forms, which
    OpenVINO runs faster too, but none of the stage forms; both targets compute the eager logits."""
    import copy

    import timm
    torch.manual_seed(0)
    model = timm.create_model(name, **FAMILY_SMALL[name]).eval()
    eager_types = {type(m).__name__ for m in model.modules()}
    forms = {}
    x = torch.randn(1, 3, 64, 80)
    for target in deploy.ONNX_TARGETS:
        lean = deploy.prepare_for_export(copy.deepcopy(model), target)
        forms[target] = {type(m).__name__ for m in lean.modules()} - eager_types
        with torch.no_grad():
            torch.testing.assert_close(lean(x), model(x), rtol=0, atol=1e-5)
    assert forms['onnx'], name
    assert forms['openvino'] == forms['onnx'] - ORT_STAGE_FORMS


def test_linear_as_conv1x1_is_the_linear_layer():
    from modzoo.layers import linear_as_conv1x1
    torch.manual_seed(0)
    linear, scale = torch.nn.Linear(12, 20), torch.randn(20)
    x = torch.randn(2, 12, 5, 7)
    expected = linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    with torch.no_grad():
        torch.testing.assert_close(linear_as_conv1x1(linear)(x), expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(linear_as_conv1x1(linear, scale)(x), expected * scale[:, None, None], rtol=0,
                                   atol=1e-6)


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
    assert 'time by op type' in text and '**kernel total**' in text and 'of which data movement' in text
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
    gap = result['gap']
    assert gap['ops'] and {'op', 'excess_ms'} <= set(gap['ops'][0])
    assert 0 < gap['zoo_data_movement_ms'] < gap['zoo_total_ms'] and gap['rounds'] == anchors.PROFILE_ROUNDS
    low, high = gap['floor_range']
    assert 0 < low <= gap['floor'] <= high < gap['zoo_total_ms'] / gap['anchor_total_ms'] * 2
    verdicts = [anchors._floor_verdict(dict(gap, floor_range=spread), goal=0.9) for spread in ([0.8, 0.85],
                                                                                                [0.85, 0.95])]
    assert 'within reach by removing data movement' in verdicts[0] and 'at the goal within the profiles' in verdicts[1]
    run = dict(machine='test machine', command='python tools/bench_anchors.py (test)', date='2026-12-07',
               results=[result], skipped={})
    benchmarks, readme = tmp_path / 'BENCHMARKS.md', tmp_path / 'README.md'
    benchmarks.write_text('# benchmarks\n')
    readme.write_text(f'intro\n\n{anchors.README_START}\nold\n{anchors.README_END}\n\nrest\n')
    anchors.write_report(run, str(tmp_path / 'run.json'), anchors.blocks(run, str(benchmarks), str(readme)))
    table = benchmarks.read_text()
    assert anchors.START in table and anchors.END in table
    assert '| `zoo_gridpe_pvt_v2_b0` | `pvt_v2_b0` |' in table and '**missed**' in table
    assert 'largest excess by op type' in table and 'out of reach by removing data movement' in table
    text = readme.read_text()
    assert 'old' not in text and text.endswith('rest\n') and '(goal ≤ 0.01: missed, floor ' in text
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


FOCALNET_FLAGS = {
    'default': {},
    'postln_layerscale': dict(use_postln=True, use_layerscale=True, layerscale_value=0.5),
    'modulation_ln_conv_embed': dict(use_postln_in_modulation=True, normalize_modulator=True, use_conv_embed=True,
                                     out_norms=True),
    'isotropic': dict(depths=(2,), patch_size=16, focal_levels=(3,), focal_windows=(3,)),
}


def _assert_matches_eager(lean, model):
    """``lean`` (a model with export forms) gives ``model``'s logits and every feature tap within 1e-5."""
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(lean(x), model(x), rtol=0, atol=1e-5)
        for a, b in zip(lean.forward_intermediates(x)[1], model.forward_intermediates(x)[1], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize('flags', sorted(FOCALNET_FLAGS))
def test_focalnet_stage_form_matches_eager(flags):
    """FocalNet's ONNX form (channels-last stages, ``f`` as three projections) computes the eager model, with every
    numerics flag, and its feature taps too."""
    import copy

    import timm
    from modzoo.models.focalnet_onnx import FocalNetStageNHWC
    torch.manual_seed(0)
    kwargs = dict(FAMILY_SMALL['zoo_focalnet_tiny_srf'], **FOCALNET_FLAGS[flags])
    model = timm.create_model('zoo_focalnet_tiny_srf', **kwargs).eval()
    for p in model.parameters():  # LayerNorm weights away from 1, biases away from 0
        p.data.add_(0.1 * torch.randn_like(p))
    lean = deploy.prepare_for_export(copy.deepcopy(model), 'onnx')
    assert sum(isinstance(m, FocalNetStageNHWC) for m in lean.modules()) == len(kwargs['depths'])
    _assert_matches_eager(lean, model)


def test_focalnet_stage_form_declines_hooked_stages():
    """A stage with a forward hook (SFM's pre-hook on the downsample) keeps its eager form: the form would skip it."""
    import timm
    model = timm.create_model('zoo_focalnet_tiny_srf', **FAMILY_SMALL['zoo_focalnet_tiny_srf']).eval()
    model.layers[1].downsample.register_forward_pre_hook(lambda module, args: None)
    deploy.prepare_for_export(model, 'onnx')
    assert [type(stage).__name__ for stage in model.layers] == [
        'FocalNetStageNHWC', 'FocalNetStage', 'FocalNetStageNHWC', 'FocalNetStageNHWC']


def test_focalnet_graph_keeps_blocks_channels_last(tmp_path):
    """The default FocalNet graph has no Split of ``f`` and no Transpose before a block's LayerNorm (the eager
    LayerNorm2d writes a Transpose pair around each of them). The downsamples' norms follow a conv, whose
    Transpose to channels-last ONNX Runtime folds into the conv's output reorder."""
    name = 'zoo_focalnet_tiny_srf'
    torch.manual_seed(0)
    path = str(tmp_path / 'lean.onnx')
    zoo_onnx.export_default_graph(name, path, img_size=SIZE, model_kwargs=FAMILY_SMALL[name])
    graph = onnx.load(path).graph
    producer = {out: node for node in graph.node for out in node.output}
    ops = Counter(node.op_type for node in graph.node)
    assert 'Split' not in ops
    block_norms = [n for n in graph.node if n.op_type == 'LayerNormalization' and '/blocks' in n.name]
    assert len(block_norms) == 2 * sum(FAMILY_SMALL[name]['depths'])
    transposed = [n.name for n in block_norms if producer[n.input[0]].op_type == 'Transpose']
    assert not transposed, transposed


EFFICIENTMOD_FLAGS = {
    'xxs_small': {},
    'no_layerscale_ratios': dict(layerscale_value=None, mlp_ratio=(2, 3, (1, 4), 1), att_ratio=(4, 4, 2, 3)),
    'conv_only': dict(attention_depth=(0, 0, 0, 0), context_size=5),
}


@pytest.mark.parametrize('flags', sorted(EFFICIENTMOD_FLAGS))
def test_efficientmod_stage_form_matches_eager(flags):
    """EfficientMod's ONNX form (channels-first stages, projections as 1x1 convs, LayerScale folded, the tile as a
    channel concat, attention with the heads' channels first) computes the eager model and its feature taps."""
    import copy

    import timm
    from modzoo.models.efficientmod_onnx import EfficientModStageNCHW
    torch.manual_seed(0)
    kwargs = dict(FAMILY_SMALL['zoo_efficientmod_xxs'], **EFFICIENTMOD_FLAGS[flags])
    model = timm.create_model('zoo_efficientmod_xxs', **kwargs).eval()
    for p in model.parameters():  # LayerNorm weights away from 1, biases away from 0, LayerScale away from 1e-4
        p.data.add_(0.1 * torch.randn_like(p))
    lean = deploy.prepare_for_export(copy.deepcopy(model), 'onnx')
    assert [type(stage) for stage in lean.layers] == [EfficientModStageNCHW] * len(kwargs['depths'])
    _assert_matches_eager(lean, model)


def test_efficientmod_stage_form_declines_hooked_and_training_stages():
    """A stage with a forward hook (SFM's pre-hook on the downsample) keeps its eager form, and so does a stage in
    training mode (the form has no dropout)."""
    import timm
    from modzoo.models.efficientmod_onnx import stage_nchw
    model = timm.create_model('zoo_efficientmod_xxs', **FAMILY_SMALL['zoo_efficientmod_xxs']).eval()
    model.layers[1].downsample.register_forward_pre_hook(lambda module, args: None)
    assert stage_nchw(model.layers[2].train()) is None
    deploy.prepare_for_export(model, 'onnx')
    assert [type(stage).__name__ for stage in model.layers] == [
        'EfficientModStageNCHW', 'EfficientModStage', 'EfficientModStageNCHW', 'EfficientModStageNCHW']


def test_efficientmod_graph_runs_projections_as_convs(tmp_path):
    """In the default EfficientMod graph every projection is a Conv (ONNX Runtime's NCHWc kernels): the only
    MatMuls left are the two of each attention block (scores and weighted sum); the eager form writes a MatMul per
    Linear layer."""
    name = 'zoo_efficientmod_xxs'
    kwargs = FAMILY_SMALL[name]
    torch.manual_seed(0)
    path = str(tmp_path / 'lean.onnx')
    zoo_onnx.export_default_graph(name, path, img_size=SIZE, model_kwargs=kwargs)
    ops = _op_counts(path)
    modulation_blocks, attention_blocks = sum(kwargs['depths']), sum(kwargs['attention_depth'])
    assert ops['MatMul'] == 2 * attention_blocks, ops
    # stem, downsamples; 5 per modulation block (f, dwconv, g, fc1, fc2); 4 per attention block (qkv, proj, MLP)
    assert ops['Conv'] == len(kwargs['depths']) + 5 * modulation_blocks + 4 * attention_blocks, ops
