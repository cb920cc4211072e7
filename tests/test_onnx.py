"""ONNX export of every registered model, proven in ONNX Runtime (CPU EP) against PyTorch.

Cost control (the CI budget for this file is about 300 CPU-seconds on two cores):

* every model is exported once, at 64x64 with a dynamic batch *and* size (a batch-only export for the models listed
  in ``SPATIALLY_STATIC``), and that one graph is checked at batches 1 and 3 (random and photographic inputs) and at
  two other sizes (batch 2), so the dynamic-batch and the dynamic-size requirements share an export;
* weights come from ``fast_init`` (tiled random pools instead of drawing every element: the values do not matter
  for parity, and building a 700M-parameter model the normal way takes longer than exporting it);
* models above ``LARGE_PARAMS`` (120M: FocalNet large/xlarge/huge) are exported with 2 blocks per stage and a
  64-channel first stage (``REDUCED``, per family): the same code paths (conv stem, post-LN, LayerScale, normalised
  modulator, LN inside the modulation, 3 or 4 focal levels) in a graph small enough to export in seconds (with only
  the depth cut, huge still has ~300M parameters and takes ~30 CPU-seconds). Their full-size export (huge: 2.7 GB,
  external data) is a manual check, see BENCHMARKS.md;
* the features_only export runs for the smallest model of each family.
"""
import os
import subprocess
import sys
from functools import lru_cache

import onnx
import pytest
import torch
import torch.nn as nn

import modzoo
from modzoo.export import onnx as zoo_onnx
from modzoo.export.deploy import fuse_sequential_conv_bn, prepare_for_deploy
from zoo_testing import LARGE_PARAMS, build_on_meta, fast_init, num_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, 'tools', 'export_onnx.py')

MODELS = modzoo.list_models()
SIZE = (64, 64)
OTHER_SIZES = [(96, 128), (136, 104)]  # non-square; the second is not a multiple of 32
# test-build overrides for the >120M-parameter models, per family (a new large family must add its entry)
REDUCED = {'focalnet': dict(depths=(2, 2, 2, 2), embed_dim=64)}


@lru_cache(maxsize=None)
def _params(name: str) -> int:
    return num_params(build_on_meta(name))


def _test_kwargs(name: str) -> dict:
    """Constructor overrides for the test build: only the >120M-parameter models get fewer blocks."""
    if _params(name) <= LARGE_PARAMS:
        return {}
    family = modzoo.model_family(name)
    assert family in REDUCED, f'{name} has over {LARGE_PARAMS / 1e6:.0f}M parameters: add {family} to REDUCED'
    return dict(REDUCED[family])


# the smallest registered models: the cheap subjects of the option and command-line tests
SMALL, SMALL_OTHER = sorted(MODELS, key=_params)[:2]


def _build(name: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    with fast_init():
        model_kwargs = dict(_test_kwargs(name), **kwargs.pop('model_kwargs', {}))
        return zoo_onnx.build_export_model(name, model_kwargs=model_kwargs, **kwargs)


def _smallest_per_family():
    best = {}
    for name in MODELS:
        family = modzoo.model_family(name)
        if family not in best or _params(name) < _params(best[family]):
            best[family] = name
    return sorted(best.values())


def _graph_checks(path: str, dynamic: str):
    """onnx.checker, no custom/Triton op, symbolic input dims as requested."""
    onnx.checker.check_model(path, full_check=True)
    proto = onnx.load(path, load_external_data=False)
    assert zoo_onnx.find_nonstandard_ops(proto) == []
    domains = {n.domain for n in proto.graph.node}
    assert domains <= {'', 'ai.onnx'}, domains
    assert not any('triton' in n.op_type.lower() or 'modzoo' in n.op_type.lower() for n in proto.graph.node)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    symbolic = [bool(d.dim_param) for d in dims]
    assert symbolic == [
        'batch' in dynamic, False, 'spatial' in dynamic, 'spatial' in dynamic], [str(d) for d in dims]
    return proto


def _plan(dynamic):
    """Batches 1 and 3 at the export size (random and photo inputs); with a dynamic size, batch 2 (random) at the
    two other sizes."""
    plan = zoo_onnx.check_plan(SIZE, 'batch', photos=True)
    if 'spatial' in dynamic:
        plan += [(2, size, 'random') for size in OTHER_SIZES]
    return plan


def _check_parity(path, model, dynamic):
    report = zoo_onnx.check_onnx(path, model, _plan(dynamic))
    assert report.passed, report.format()
    assert {r.batch for r in report.runs if r.size == SIZE} == {1, 3}
    assert len({r.size for r in report.runs}) == (3 if 'spatial' in dynamic else 1)
    return report


@pytest.mark.parametrize('name', MODELS)
def test_export_every_model(name, tmp_path):
    """Dynamic batch (and size, where the model allows it) export; ORT matches PyTorch to 1e-4."""
    model = _build(name)
    blocker = zoo_onnx.spatial_export_blocker(name)
    dynamic = 'batch' if blocker else 'batch,spatial'
    path = str(tmp_path / f'{name}.onnx')
    result = zoo_onnx.export_onnx(model, path, img_size=SIZE, dynamic=dynamic, output_names=['logits'])
    assert result.files() == [path] and os.listdir(tmp_path) == [f'{name}.onnx']  # nothing else left behind
    _graph_checks(path, dynamic)
    report = _check_parity(path, model, dynamic)
    assert report.max_abs_diff <= zoo_onnx.FP32_TOLERANCE


@pytest.mark.parametrize('name', _smallest_per_family())
def test_export_features(name, tmp_path):
    """features_only: every stage output is a named graph output with the right shape and values."""
    model = _build(name, features=True)
    info = model.feature_info
    names = [f'feat{i}' for i in range(len(info.channels()))]
    dynamic = 'batch' if zoo_onnx.spatial_export_blocker(name) else 'batch,spatial'
    path = str(tmp_path / 'features.onnx')
    zoo_onnx.export_onnx(model, path, img_size=SIZE, dynamic=dynamic, output_names=names)
    proto = _graph_checks(path, dynamic)
    assert [o.name for o in proto.graph.output] == names
    report = _check_parity(path, model, dynamic)  # compares each output's shape (channels, stride) with PyTorch's
    assert len(report.runs) >= 4


def test_spatially_static_list_is_current(tmp_path):
    """Each model listed as spatially static really fails (or goes wrong) with a dynamic size; the rest were
    proven dynamic by test_export_every_model."""
    listed = [n for n in MODELS if zoo_onnx.spatial_export_blocker(n)]
    if not listed:
        pytest.skip('no registered model is listed as spatially static (all export with a dynamic size)')
    for name in listed:
        model = _build(name)
        path = str(tmp_path / f'{name}.onnx')
        try:
            zoo_onnx.export_onnx(model, path, img_size=SIZE, dynamic='batch,spatial', output_names=['logits'])
        except zoo_onnx.ExportError:
            continue
        report = zoo_onnx.check_onnx(path, model, [(1, size, 'random') for size in OTHER_SIZES])
        assert not report.passed, f'{name} exports with a dynamic size after all; remove it from SPATIALLY_STATIC'


def test_triton_backend_is_not_exported(tmp_path):
    """With the Triton kernels forced (interpreter on CPU), the exported graph still holds only standard ops."""
    from modzoo import kernels
    name = 'zoo_focalnet_tiny_srf'
    # narrow: the eager forwards of the export interpret the Triton kernels on the CPU
    model = _build(name, model_kwargs=dict(depths=(1, 1, 1, 1), embed_dim=16))
    path = str(tmp_path / 'forced.onnx')
    with kernels.use_backend('triton'):
        zoo_onnx.export_onnx(model, path, img_size=(32, 32), dynamic='batch', output_names=['logits'])
    _graph_checks(path, 'batch')
    with kernels.use_backend('torch'):
        assert zoo_onnx.check_onnx(path, model, [(2, (32, 32), 'random')]).passed


def test_external_data_and_atomic_replace(tmp_path):
    """Weights beside the graph (as for >2 GB models): both files written, checked, and loadable by ORT; a later
    single-file export replaces the pair without leaving a stale .data file."""
    model = _build(SMALL)
    path = str(tmp_path / 'm.onnx')
    result = zoo_onnx.export_onnx(model, path, img_size=(32, 32), dynamic='batch', external_data=True, check=True,
                                  output_names=['logits'])
    assert result.data_path == path + '.data'
    assert sorted(os.listdir(tmp_path)) == ['m.onnx', 'm.onnx.data']
    assert os.path.getsize(path + '.data') > os.path.getsize(path)  # the weights really are outside the graph
    assert result.check.passed and result.check.max_abs_diff <= 1e-4
    proto = onnx.load(path, load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    zoo_onnx.export_onnx(model, path, img_size=(32, 32), dynamic='batch', external_data=False,
                         output_names=['logits'])
    assert sorted(os.listdir(tmp_path)) == ['m.onnx']


def test_dynamo_exporter(tmp_path):
    """The alternative exporter also gives a standard-op graph that matches (small model: it is 10x slower)."""
    # one block per stage: the dynamo exporter costs ~10x the TorchScript one per graph node
    name = 'zoo_efficientmod_xxs' if 'zoo_efficientmod_xxs' in MODELS else SMALL
    model = _build(name, model_kwargs=dict(depths=(1, 1, 1, 1)))
    path = str(tmp_path / 'dynamo.onnx')
    result = zoo_onnx.export_onnx(model, path, img_size=(32, 32), dynamic='batch', exporter='dynamo', check=True,
                                  output_names=['logits'], photos=False)
    assert result.opset >= 18 and result.check.passed
    _graph_checks(path, 'batch')


def test_fp16_and_simplify(tmp_path):
    pytest.importorskip('onnxconverter_common')
    pytest.importorskip('onnxslim')
    model = _build(SMALL)
    path = str(tmp_path / 'half.onnx')
    result = zoo_onnx.export_onnx(model, path, img_size=(32, 32), dynamic='batch', fp16=True, simplify=True,
                                  check=True, output_names=['logits'])
    assert result.check.passed and result.check.relative, result.check.format()
    proto = onnx.load(path)
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    float_inits = [t for t in proto.graph.initializer if t.data_type in floats]
    assert float_inits and all(t.data_type == onnx.TensorProto.FLOAT16 for t in float_inits if len(t.dims) > 1)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 interface


def _export_deployed(model, path, output_name):
    """Give every BatchNorm non-trivial running statistics (so a wrong fold cannot pass), apply
    ``prepare_for_deploy`` and export with a dynamic batch, checked against the unfused model."""
    import copy
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    reference = copy.deepcopy(model)
    prepare_for_deploy(model)
    return zoo_onnx.export_onnx(model, path, img_size=SIZE, dynamic='batch', check=True, reference=reference,
                                output_names=[output_name], photos=False)


def test_deploy_folds_batchnorm(tmp_path):
    """--deploy: no BatchNormalization node left, and the graph still matches the unfused model."""
    candidates = [n for n in _smallest_per_family()
                  if any(isinstance(m, nn.BatchNorm2d) for m in build_on_meta(n).modules())]
    if not candidates:
        pytest.skip('no registered model uses BatchNorm')
    name = candidates[0]
    result = _export_deployed(_build(name), str(tmp_path / 'deploy.onnx'), 'logits')
    assert result.check.passed, result.check.format()
    assert 'BatchNormalization' not in result.op_types, f'{name}: {result.op_types}'


def test_generic_conv_bn_fold():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=2, bias=False), nn.BatchNorm2d(8), nn.ReLU())
    block[1].running_mean.uniform_(-1, 1)
    block[1].running_var.uniform_(0.5, 2)
    block[1].weight.data.uniform_(0.5, 1.5)
    block[1].bias.data.uniform_(-1, 1)
    block.eval()
    x = torch.randn(2, 4, 9, 7)
    expected = block(x)
    assert fuse_sequential_conv_bn(block) == 1
    assert isinstance(block[1], nn.Identity) and block[0].bias is not None
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


def test_find_nonstandard_ops_flags_custom_domains():
    from onnx import helper
    nodes = [helper.make_node('Relu', ['x'], ['y']),
             helper.make_node('FusedModulation', ['y'], ['z'], domain='modzoo'),
             helper.make_node('NotAnOnnxOp', ['z'], ['w'])]
    graph = helper.make_graph(nodes, 'g', [helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info('w', onnx.TensorProto.FLOAT, [1])])
    bad = zoo_onnx.find_nonstandard_ops(helper.make_model(graph))
    assert bad == ['ai.onnx::NotAnOnnxOp', 'modzoo::FusedModulation']


def test_segmentation_export_macmd(tmp_path):
    """PVT v2 (smallest) + MACMD decoder: one graph image -> seg logits at the image size, dynamic batch."""
    from modzoo.export.segmentation import build_macmd_for_export
    pvt = [n for n in MODELS if n.startswith('zoo_gridpe_pvt_v2')]  # the paper pairs MACMD with PVT v2
    encoder = min(pvt, key=_params) if pvt else 'zoo_focalnet_tiny_srf'
    torch.manual_seed(0)
    with fast_init():
        model = build_macmd_for_export(encoder, num_classes=4)
    path = str(tmp_path / 'macmd.onnx')
    result = zoo_onnx.export_onnx(model, path, img_size=SIZE, dynamic='batch', check=True,
                                  output_names=['seg_logits'], photos=False)
    assert result.check.passed, result.check.format()
    _graph_checks(path, 'batch')  # (the check compared the (N, 4, H, W) output shapes with PyTorch's)


UPERNET_CONFIG = os.path.join(ROOT, 'configs', 'focalnet', 'upernet_focalnet-t-srf_8xb2-160k_ade20k-512x512.py')


@pytest.mark.mm
def test_segmentation_export_mmseg_upernet(tmp_path):
    """An mmseg EncoderDecoder (UperNet + FocalNet-T config) as one graph with a dynamic batch; deploy folds its
    ConvModule BatchNorms, and UperNet's adaptive pyramid pooling is exported exactly."""
    pytest.importorskip('mmseg')
    if not os.path.isfile(UPERNET_CONFIG):
        pytest.skip('UperNet + FocalNet-T config not in the repository')
    from modzoo.export.segmentation import build_mmseg_for_export
    torch.manual_seed(0)
    path = str(tmp_path / 'upernet.onnx')
    result = _export_deployed(build_mmseg_for_export(UPERNET_CONFIG), path, 'seg_logits')
    assert result.check.passed, result.check.format()
    assert 'BatchNormalization' not in result.op_types
    _graph_checks(path, 'batch')


# ----------------------------------------------------------------------------------------------------------------
# the command line tool


def _run_tool(args, capsys):
    from modzoo.export import cli as export_onnx
    code = export_onnx.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def build_model_state(name):
    return modzoo.create_model(name).state_dict()


def _assert_empty(folder):
    assert os.listdir(folder) == [], f'left behind: {os.listdir(folder)}'


def test_cli_unknown_model(tmp_path, capsys):
    code, _, err = _run_tool(['zoo_focalnet_tiny_sfr', '--output', str(tmp_path / 'x.onnx')], capsys)
    assert code == 2
    assert 'Unknown model' in err and 'zoo_focalnet_tiny_srf' in err  # suggestion
    _assert_empty(tmp_path)


def test_cli_checkpoint_that_does_not_fit(tmp_path, capsys):
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    with fast_init():
        state = build_model_state(SMALL)
        other = build_model_state(SMALL_OTHER)
    inner = [k for k, v in state.items() if v.dim() > 1]
    key = inner[len(inner) // 2]
    state[key] = state[key][:-1]  # one tensor of the wrong shape
    cases = {'wrong_shape.pth': (state, 'shape mismatch'), 'other_model.pth': (other, 'key(s)')}
    for file, (checkpoint, detail) in cases.items():
        torch.save(checkpoint, tmp_path / file)
        code, _, err = _run_tool([SMALL, '--checkpoint', str(tmp_path / file), '--img-size', '32', '32',
                                  '--output', str(out_dir / 'x.onnx')], capsys)
        assert code == 2, err
        assert 'does not fit' in err and detail in err, err
        if detail == 'shape mismatch':
            assert key in err
        _assert_empty(out_dir)
    code, _, err = _run_tool([SMALL, '--checkpoint', str(tmp_path / 'missing.pth'),
                              '--output', str(out_dir / 'x.onnx')], capsys)
    assert code == 2 and 'no checkpoint file' in err
    _assert_empty(out_dir)


@pytest.mark.parametrize('size', [['0', '64'], ['64', '100000']])
def test_cli_impossible_size(size, tmp_path, capsys):
    code, _, err = _run_tool([SMALL, '--img-size', *size, '--output', str(tmp_path / 'x.onnx')],
                             capsys)
    assert code == 2 and 'impossible image size' in err
    _assert_empty(tmp_path)


def test_cli_size_the_model_cannot_take(tmp_path, capsys, monkeypatch):
    """A size that passes the generic check but fails inside the model: clear message, no file."""
    original = zoo_onnx.build_export_model

    def build_failing(*args, **kwargs):
        model = original(*args, **kwargs)

        def refuse(module, inputs):
            if inputs[0].shape[-1] % 7:
                raise ValueError('input width must be a multiple of 7')
        model.register_forward_pre_hook(refuse)
        return model
    monkeypatch.setattr(zoo_onnx, 'build_export_model', build_failing)
    code, _, err = _run_tool([SMALL, '--img-size', '32', '30', '--output',
                              str(tmp_path / 'x.onnx')], capsys)
    assert code == 2 and 'cannot run on an input of shape (2, 3, 32, 30)' in err and 'multiple of 7' in err
    _assert_empty(tmp_path)


def test_cli_refuses_spatial_export_of_a_static_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(zoo_onnx.SPATIALLY_STATIC, SMALL, 'a pooling kernel fixed at export time')
    code, _, err = _run_tool([SMALL, '--dynamic', 'batch,spatial', '--output', str(tmp_path / 'x.onnx')], capsys)
    assert code == 2 and 'cannot be exported with a dynamic height/width' in err and 'pooling kernel' in err
    _assert_empty(tmp_path)


def test_cli_checkpoint_export_with_check(tmp_path, capsys):
    """A fitting checkpoint (with a different class count) is loaded strictly and the export matches it."""
    torch.manual_seed(1)
    with fast_init():
        state = modzoo.create_model(SMALL, num_classes=10).state_dict()
    ckpt = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': state}, ckpt)
    out = tmp_path / 'out.onnx'
    code, stdout, err = _run_tool([SMALL, '--checkpoint', str(ckpt), '--img-size', '32', '32',
                                   '--check', '--output', str(out)], capsys)
    assert code == 0, err
    assert 'parity: max abs diff' in stdout
    proto = onnx.load(str(out))
    assert proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 10
    assert sorted(os.listdir(tmp_path)) == ['ckpt.pth', 'out.onnx']


def test_cli_end_to_end_subprocess(tmp_path):
    """The real command line, as the README shows it (small size to stay cheap)."""
    name = min(MODELS, key=_params)
    out = tmp_path / 'cli.onnx'
    proc = subprocess.run(
        [sys.executable, TOOL, name, '--dynamic', 'batch', '--check', '--img-size', '32', '32', '--output', str(out)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr
    assert 'parity: max abs diff' in proc.stdout and 'PASS' in proc.stdout
    assert out.exists()
