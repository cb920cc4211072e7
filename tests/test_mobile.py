"""Phone targets: ExecuTorch (XNNPACK ``.pte``, run back in ExecuTorch's runtime and compared with eager) and Core ML
(every family converts to an ML program; prediction is macOS-only), and ``export_onnx.py --format``'s refusals.
Small models at small inputs (lowering to XNNPACK takes seconds per block); skipped without the ``mobile`` extra,
except the missing-package and bad-argument lines."""
import json
from typing import Dict

import pytest
import torch
import torch.nn as nn

from modzoo.export import coreml as zoo_coreml
from modzoo.export import executorch as zoo_et
from modzoo.export import onnx as zoo_onnx
from test_int8 import FAMILY_SMALL, _kwargs_argv

needs_executorch = pytest.mark.skipif(not zoo_et.executorch_available(), reason='executorch not installed')
needs_coremltools = pytest.mark.skipif(not zoo_coreml.coreml_available(), reason='coremltools not installed')


def _small(name, num_classes=10):
    torch.manual_seed(0)
    return zoo_onnx.build_export_model(name, num_classes=num_classes, model_kwargs=FAMILY_SMALL[name])


def _export_tool():
    from modzoo.export import cli
    return cli


class _ConvNorm(nn.Module):
    """A conv (XNNPACK has it) then a LayerNorm over channels (XNNPACK 1.5.1 has none)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        x = self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x.mean((2, 3), keepdim=True).flatten(1)  # XNNPACK's global average pool


@needs_executorch
def test_delegation_counts_what_xnnpack_left():
    """The conv is delegated, the LayerNorm is left on portable kernels and named; the share is below one."""
    program = torch.export.export(_ConvNorm().eval(), (torch.randn(1, 3, 16, 16),))
    stats = zoo_et.delegation(zoo_et.lower_xnnpack(program).exported_program())
    assert stats.partitions >= 1 and 0 < stats.delegated < stats.total
    assert stats.portable_ops.get('aten.native_layer_norm.default') == 1
    assert 'native_layer_norm.default x1' in stats.format()


@needs_executorch
def test_pte_runs_in_executorch_and_matches_eager(tmp_path):
    """A small EfficientMod lowered to XNNPACK, serialized, loaded by ExecuTorch's runtime: logits within 1e-4."""
    model = _small('zoo_efficientmod_xxs')
    report = zoo_et.export_executorch(model, tmp_path / 'm.pte', img_size=(32, 32), latency_repeats=2)
    assert (tmp_path / 'm.pte').stat().st_size == pytest.approx(report.size_mib * 2 ** 20, rel=1e-6)
    assert report.parity.passed and report.parity.max_abs_diff <= zoo_et.FP32_TOLERANCE
    assert report.top1_agreement == 100.0
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(zoo_et.PteProgram(str(tmp_path / 'm.pte')).run(x), model(x), atol=1e-4)
    assert report.delegation.share > 0.5 and set(report.latency_ms) == {'pte', 'eager'}
    assert 'XNNPACK delegated' in report.format() and 'latency at 1 thread' in report.format()


@needs_executorch
def test_pte_check_fails_on_other_weights(tmp_path):
    """The parity check can fail: a .pte of other weights is off, and nothing is written."""
    model, other = _small('zoo_efficientmod_xxs'), _small('zoo_efficientmod_xxs')
    with torch.no_grad():
        other.get_classifier().bias.add_(0.5)
    with pytest.raises(zoo_onnx.ParityError, match='FAIL'):
        zoo_et.export_executorch(other, tmp_path / 'm.pte', img_size=(32, 32), reference=model, latency_repeats=0)
    assert not (tmp_path / 'm.pte').exists()


@needs_executorch
@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(set(FAMILY_SMALL) - {'zoo_efficientmod_xxs'}))
def test_pte_every_family(name, tmp_path):
    report = zoo_et.export_executorch(_small(name), tmp_path / 'm.pte', img_size=(64, 64), latency_repeats=2)
    assert report.parity.passed


@needs_executorch
@pytest.mark.slow
def test_int8_pte_cli(tmp_path, capsys):
    """--format executorch --int8: an fp32 and an int8 .pte, the int8 one checked on held-out digits, one report."""
    out = tmp_path / 'm.pte'
    argv = ['zoo_efficientmod_xxs', '--format', 'executorch', '--img-size', '32', '32', '--num-classes', '10',
            '--int8', '--calib-data', 'digits', '--calib-images', '16', '--check-images', '32', '-o', str(out),
            '--model-kwargs'] + _kwargs_argv(FAMILY_SMALL['zoo_efficientmod_xxs'])
    assert _export_tool().main(argv) == 0
    printed = capsys.readouterr().out
    assert 'int8 .pte vs fp32 eager on 32 held-out images' in printed and 'accuracy: fp32 eager top-1' in printed
    report = json.loads((tmp_path / 'm.report.json').read_text())
    assert [e['precision'] for e in report['exports']] == ['fp32', 'int8']
    assert (tmp_path / 'm-int8.pte').stat().st_size < 0.6 * out.stat().st_size


@needs_coremltools
@pytest.mark.parametrize('name', sorted(FAMILY_SMALL))
def test_every_family_converts_to_coreml(name, tmp_path):
    out = tmp_path / 'm.mlpackage'
    report = zoo_coreml.export_coreml(_small(name), out, img_size=(64, 64), macos_command='python x')
    assert (out / 'Manifest.json').is_file()
    assert report.inputs == [('image', (1, 3, 64, 64))] and report.outputs == [('logits', (1, 10))]
    assert not report.unknown_ops and report.op_histogram.get('conv', 0) >= 1
    assert 'UNVERIFIED' in report.format() or report.parity is not None


@needs_coremltools
def test_coreml_fp16_cli_writes_package_and_report(tmp_path, capsys):
    out = tmp_path / 'm.mlpackage'
    argv = ['zoo_efficientmod_xxs', '--format', 'coreml', '--fp16', '--img-size', '32', '32', '--num-classes', '10',
            '-o', str(out), '--model-kwargs'] + _kwargs_argv(FAMILY_SMALL['zoo_efficientmod_xxs'])
    assert _export_tool().main(argv) == 0
    printed = capsys.readouterr().out
    assert 'fp16' in printed and 'python tools/check_coreml.py' in printed
    report = json.loads((tmp_path / 'm.report.json').read_text())
    assert report['exports'][0]['precision'] == 'fp16' and report['exports'][0]['parity_verified'] in (True, False)
    # a second run replaces its own package; a folder that is not a package is refused
    assert _export_tool().main(argv) == 0 and (out / 'Manifest.json').is_file()
    plain = tmp_path / 'plain.mlpackage'
    plain.mkdir()
    argv[argv.index('-o') + 1] = str(plain)
    capsys.readouterr()
    assert _export_tool().main(argv) == 2 and 'is not a Core ML package' in capsys.readouterr().err
    assert not list(plain.iterdir())


@pytest.mark.parametrize('fmt, module, attr', [('executorch', zoo_et, 'executorch_available'),
                                               ('coreml', zoo_coreml, 'coreml_available')])
def test_missing_mobile_extra_is_one_line(fmt, module, attr, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(module, attr, lambda: False)
    assert _export_tool().main(['zoo_efficientmod_xxs', '--format', fmt, '-o', str(tmp_path / 'x')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install -e ".[mobile]"' in err[0] and 'setup_env.sh --mm' in err[0]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize('argv, message', [
    (['--format', 'executorch', '--opset', '17'], 'does not take --opset'),
    (['--format', 'coreml', '--dynamic', 'batch,spatial', '--no-simplify'], 'does not take --simplify, --dynamic'),
    (['--format', 'coreml', '--int8', '--calib-data', 'digits'], '--int8 applies to --format executorch or onnx'),
    (['--format', 'executorch', '--fp16'], '--fp16 applies to --format coreml or onnx'),
    (['--format', 'executorch', '--batch', '2'], 'does not take --batch'),
    (['--format', 'executorch', '-o', 'x.onnx'], 'ends in .pte'),
    (['--format', 'coreml', '-o', 'x.pte'], 'ends in .mlpackage'),
    (['--format', 'executorch', '--int8-ops', 'gemm'], '--int8-ops only apply with --int8'),
    (['--int8', '--calib-data', 'digits', '--int8-ops', 'gemm'], '--int8-ops chooses the int8 ops of an ExecuTorch'),
])
def test_mobile_bad_arguments(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(zoo_et, 'executorch_available', lambda: True)
    monkeypatch.setattr(zoo_coreml, 'coreml_available', lambda: True)
    assert _export_tool().main(['zoo_efficientmod_xxs'] + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not list(tmp_path.iterdir())


def test_check_coreml_refuses_off_macos(monkeypatch, capsys):
    monkeypatch.setattr(zoo_coreml.platform, 'system', lambda: 'Linux')
    with pytest.raises(SystemExit) as e:
        zoo_coreml.main(['m.mlpackage', 'zoo_efficientmod_xxs'])
    assert e.value.code == 2 and 'only on macOS' in capsys.readouterr().err


def _bench_run():
    xnn = dict(model='zoo_smt_tiny', target='xnnpack-fp32', share=0.9, delegated=9, compute_nodes=10, size_mib=43.9,
               latency_ms=dict(pte=50.0, eager=100.0), ratio=0.5, max_abs_diff=9e-7, top1_agreement=100.0,
               load_before=0.5, load_after=0.6, load_limit=1.5, loaded=False, memory_mib=dict(peak=61.4, total=700.0))
    int8 = dict(xnn, target='xnnpack-int8', latency_ms=dict(pte=25.0, eager=100.0, fp32_pte=50.0), ratio=0.25,
                vs_fp32=2.0, max_abs_diff=0.05)
    cml = dict(model='zoo_smt_tiny', target='coreml-fp16', size_mib=22.0, ops=1238, unknown_ops=[],
               parity_verified=False, max_abs_diff=None)
    failed = dict(model='zoo_focalnet_tiny_srf', target='coreml-fp32', failed='NotImplementedError: addcmul')
    gemm = dict(int8, target='xnnpack-int8-gemm', latency_ms=dict(pte=20.0, eager=100.0, fp32_pte=50.0), ratio=0.2,
                vs_fp32=2.5)
    digits = dict(model='zoo_efficientmod_xxs', size=32, images=359, calibration_images=256, fp32_eager_top1=98.0,
                  fp32_pte_top1=98.0, latency_ms=dict(fp32=2.0, int8=1.6, **{'int8-gemm': 1.0}, eager=3.0),
                  int8={'int8': dict(int8_ops='all', top1=97.5, agreement=99.0),
                        'int8-gemm': dict(int8_ops='gemm', top1=97.9, agreement=99.5)},
                  load_before=0.5, load_after=0.6, load_limit=1.5, loaded=False)
    return dict(machine='cpu', date='2026-12-07', command='python tools/bench_mobile.py', size=224, repeats=20,
                calib_data='64 images of digits', rows=[xnn, int8, gemm, cml, failed], digits=digits)


def test_bench_mobile_table_and_readme():
    from modzoo.bench import mobile as bench
    run = _bench_run()
    text = bench.to_markdown(run)
    assert '| `zoo_smt_tiny` | xnnpack-fp32 | 90.0% (9/10) | 43.9 | 50.0 | 100.0 | **0.50x** | 61 |' in text
    assert '2.00x faster' in text and 'unverified (predicts on macOS only)' in text
    assert '| `zoo_focalnet_tiny_srf` | coreml-fp32 | conversion FAILED |' in text
    readme = bench.readme_text(run)
    assert '`zoo_smt_tiny`: xnnpack-fp32: 90% delegated, 0.50x eager latency' in readme
    assert '(2.00x faster than fp32 .pte)' in readme and 'Core ML FAILS (coreml-fp32)' in readme
    assert 'xnnpack-int8-gemm: 90% delegated, 0.20x eager latency (2.50x faster than fp32 .pte)' in readme
    assert '| int8 | all | 97.50% | 0.50 | 99.00% | 1.60 | 1.25x |' in text
    assert '| int8-gemm | gemm | 97.90% | 0.10 | 99.50% | 1.00 | 2.00x |' in text
    assert 'digits model int8-gemm `.pte`: top-1 97.90% vs fp32 eager 98.00% (+0.10 points lost), 2.00x' in readme


@needs_executorch
def test_bench_mobile_peak_memory_of_a_pte(tmp_path):
    """The peak-memory column runs the .pte in a fresh process: a program with 4 MiB of fp32 weights adds at least
    that much over the process's resident set after its imports."""
    from modzoo.bench import mobile as bench
    model = nn.Sequential(nn.Conv2d(3, 1024, 1), nn.Conv2d(1024, 1024, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    zoo_et.export_executorch(model.eval(), tmp_path / 'm.pte', (8, 8), check=False, latency_repeats=0)
    memory = bench.pte_peak_mib(str(tmp_path / 'm.pte'), 8)
    assert 4 <= memory['peak'] < memory['total'], memory


def test_bench_mobile_refuses_unknown_models(capsys):
    from modzoo.bench import mobile as bench
    with pytest.raises(SystemExit) as e:
        bench.main(['--models', 'zoo_nope'])
    assert e.value.code == 2 and 'zoo_nope: not a registered modzoo model' in capsys.readouterr().err


@pytest.mark.parametrize('target', ['executorch', 'coreml'])
@pytest.mark.parametrize('name', sorted(FAMILY_SMALL))
def test_export_forms_keep_the_numbers(name, target):
    """prepare_for_export's phone forms (LayerNorm by linear/1x1-conv means, mean-pool head, explicit attention)
    give the model's logits within 1e-5, and leave the model they were copied from as it was."""
    import copy
    from modzoo.export.deploy import prepare_for_export
    from modzoo.layers.mobile_forms import LinearMeanLayerNorm, ConvMeanLayerNorm2d
    model = _small(name)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        form = prepare_for_export(copy.deepcopy(model), target)
        assert (form(x) - ref).abs().max().item() <= 1e-5
        assert torch.equal(model(x), ref)
    norms = [m for m in form.modules() if isinstance(m, (LinearMeanLayerNorm, ConvMeanLayerNorm2d))]
    assert bool(norms) == (target == 'executorch')
    if target == 'executorch':
        assert not any(getattr(m, 'fused_attn', False) for m in form.modules())


@needs_executorch
@pytest.mark.parametrize('name', ['zoo_efficientmod_xxs'] + [
    pytest.param(n, marks=pytest.mark.slow) for n in sorted(set(FAMILY_SMALL) - {'zoo_efficientmod_xxs'})])
def test_export_forms_reach_95_percent_delegated(name):
    """With the ExecuTorch export forms, at least 95% of the compute nodes go to XNNPACK (issue 33's goal)."""
    import copy
    from modzoo.export.deploy import prepare_for_export
    model = prepare_for_export(copy.deepcopy(_small(name)), 'executorch')
    program = torch.export.export(model, (torch.randn(1, 3, 64, 64),))
    stats = zoo_et.delegation(zoo_et.lower_xnnpack(program).exported_program())
    assert stats.share >= 0.95, stats.format()


@needs_executorch
def test_layer_norm_form_is_delegated():
    """With its export form the LayerNorm of the conv+norm block goes to XNNPACK: every compute node delegated."""
    from modzoo.layers.mobile_forms import swap_mobile_forms
    model = _ConvNorm().eval()
    assert swap_mobile_forms(model, 'executorch') == {'LayerNorm': 1}
    program = torch.export.export(model, (torch.randn(1, 3, 16, 16),))
    stats = zoo_et.delegation(zoo_et.lower_xnnpack(program).exported_program())
    assert stats.share == 1.0 and not stats.portable_ops


def test_efficientmod_export_forms_are_exact():
    """The ExecuTorch forms of EfficientMod's tile multiply and q/k/v cut give exactly the eager numbers."""
    from modzoo.kernels import gelu_tile_mul_reference
    from modzoo.layers.mobile_forms import sliced_heads
    v, ctx = torch.randn(2, 5, 5, 48), torch.randn(2, 5, 5, 16)
    for gelu in (True, False):  # the reference's reshaped broadcast against the unsqueeze it replaced
        expected = ((torch.nn.functional.gelu(v) if gelu else v).unflatten(-1, (3, -1)) * ctx.unsqueeze(-2)).flatten(-2)
        assert torch.equal(gelu_tile_mul_reference(v, ctx, gelu, 3), expected)
    for parts in (3, 2):  # EfficientMod's q, k, v; GridPE's k, v
        fused = torch.randn(2, 7, parts * 4 * 8)
        want = fused.unflatten(-1, (parts, 4, 8)).permute(2, 0, 3, 1, 4).unbind(0)
        for got, expected in zip(sliced_heads(fused, 4, 8), want, strict=True):
            assert torch.equal(got, expected)


@needs_executorch
def test_efficientmod_is_one_xnnpack_partition():
    """EfficientMod's export forms leave nothing on portable kernels (the tile multiply's ``unsqueeze`` and the
    attention's ``split``/``squeeze`` were the last ops left): one delegate call for the whole network."""
    import copy
    from modzoo.export.deploy import prepare_for_export
    model = prepare_for_export(copy.deepcopy(_small('zoo_efficientmod_xxs')), 'executorch')
    program = torch.export.export(model, (torch.randn(1, 3, 32, 32),))
    stats = zoo_et.delegation(zoo_et.lower_xnnpack(program).exported_program())
    assert stats.share == 1.0 and stats.partitions == 1, stats.format()


def test_windowed_depthwise_conv_matches_the_conv():
    """The 5x5-window form of a large depthwise conv computes that conv (with or without bias, any H x W); convs it
    does not apply to get no form."""
    from modzoo.layers.mobile_forms import windowed_depthwise_form
    torch.manual_seed(0)
    for k, bias, tiles in ((7, True, 4), (9, False, 4), (11, True, 9)):
        conv = nn.Conv2d(6, 6, k, padding=k // 2, groups=6, bias=bias)
        x = torch.randn(2, 6, 9, 13)
        form = windowed_depthwise_form(conv)
        assert len(form.tiles) == tiles and all(t.shape[-2:] == (5, 5) for t in form.tiles)
        torch.testing.assert_close(form(x), conv(x), rtol=0, atol=1e-5)
    for conv in (nn.Conv2d(6, 6, 5, padding=2, groups=6), nn.Conv2d(6, 6, 7, padding=3),
                 nn.Conv2d(6, 6, 7, stride=2, padding=3, groups=6), nn.Conv2d(6, 6, 7, groups=6)):
        assert windowed_depthwise_form(conv) is None


@needs_executorch
def test_efficientmod_windowed_convs_run_in_int8(tmp_path):
    """EfficientMod with its window-form convs lowers and runs in int8, one partition (a first form padded the input
    once and sliced it per window: XNNPACK refused that int8 constant pad when the program loaded)."""
    import copy
    from modzoo.export.deploy import prepare_for_export
    model = prepare_for_export(copy.deepcopy(_small('zoo_efficientmod_xxs')), 'executorch')
    report = zoo_et.export_executorch(model, tmp_path / 'q.pte', (32, 32), latency_repeats=0,
                                      calibration=torch.randn(4, 3, 32, 32).numpy())
    assert report.delegation.share == 1.0 and report.parity.runs, report.delegation.format()


def test_efficientmod_depthwise_convs_fit_xnnpack_kernels():
    """EfficientMod's 7x7 context convs reach the ExecuTorch export as 5x5 depthwise convs: XNNPACK's depthwise
    kernels stop at 25 taps, and it runs a 7x7 one as a grouped GEMM ~17x slower (issue 33's .pte latency)."""
    import copy
    from modzoo.export.deploy import prepare_for_export
    model = prepare_for_export(copy.deepcopy(_small('zoo_efficientmod_xxs')), 'executorch')
    program = torch.export.export(model, (torch.randn(1, 3, 32, 32),))
    depthwise = [node.args[1].meta['val'].shape[-2:] for node in program.graph.nodes
                 if node.target == torch.ops.aten.conv2d.default and len(node.args) > 6 and node.args[6] > 1]
    assert depthwise and all(tuple(shape) == (5, 5) for shape in depthwise), depthwise


@needs_executorch
def test_gridpe_pair_swap_is_a_product_not_copies():
    """GridPE's rotation swaps each channel pair by a constant permutation product in the ExecuTorch graph: no
    slices and cat (XNNPACK ran them as strided copies, about a fifth of GridPE-PVTv2-b0's .pte time)."""
    import copy
    from modzoo.export.deploy import prepare_for_export
    model = prepare_for_export(copy.deepcopy(_small('zoo_gridpe_pvt_v2_b0')), 'executorch')
    program = zoo_et.fold_float_constants(torch.export.export(model, (torch.randn(1, 3, 32, 32),)))
    cats = [node for node in program.graph.nodes if node.target == torch.ops.aten.cat.default]
    assert not cats, cats


class _TableScale(nn.Module):
    """A conv whose output is scaled by a table computed in forward from constants (GridPE's position tables in
    small): arange, exp and a float64 round trip, the ops XNNPACK lacks."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        table = torch.exp(-0.1 * torch.arange(8, dtype=torch.float64)).float().view(1, 8, 1, 1)
        return (self.conv(x) * table).mean((2, 3), keepdim=True).flatten(1)


@needs_executorch
def test_int8_graph_folds_float_tables():
    """int8: the float constant subgraphs fold before quantization (nothing left on portable kernels), while the
    conv weight stays int8 behind its dequantize (folding it too would store it as fp32)."""
    torch.manual_seed(0)
    model, x = _TableScale().eval(), torch.randn(1, 3, 12, 12)
    quantized = zoo_et.quantize_xnnpack(model, x, torch.randn(4, 3, 12, 12).numpy())
    program = zoo_et.lower_xnnpack(torch.export.export(quantized, (x,), strict=False)).exported_program()
    stats = zoo_et.delegation(program)
    assert stats.share == 1.0 and not stats.portable_qdq, stats.format()


class _GemmAndDepthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.dwconv, self.fc = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 5, padding=2, groups=8), nn.Linear(8, 4)

    def forward(self, x):
        x = self.conv(x)
        x = x * self.dwconv(x) + x
        return self.fc(x.mean((2, 3)))


def _int8_weights(graph) -> Dict[str, bool]:
    """For each conv / linear of a converted PT2E graph: whether its weight reaches it through a dequantize."""
    ops = {torch.ops.aten.conv2d.default: 'conv', torch.ops.aten.linear.default: 'fc'}
    out = {}
    for node in graph.graph.nodes:
        if node.target in ops:
            groups = node.args[6] if len(node.args) > 6 else 1
            out['dwconv' if groups > 1 else ops[node.target]] = 'dequantize' in str(node.args[1].target)
    return out


@needs_executorch
def test_int8_ops_gemm_leaves_depthwise_and_elementwise_float():
    """int8_ops='gemm' quantizes the full conv and the linear layer only; 'all' the depthwise conv too."""
    torch.manual_seed(0)
    model, x, calib = _GemmAndDepthwise().eval(), torch.randn(1, 3, 12, 12), torch.randn(4, 3, 12, 12).numpy()
    def int8_muls(graph):  # multiplies whose output is quantized
        return [n for n in graph.graph.nodes if n.target == torch.ops.aten.mul.Tensor
                and any('quantize' in str(user.target) for user in n.users)]

    full = zoo_et.quantize_xnnpack(model, x, calib)
    assert _int8_weights(full) == dict(conv=True, dwconv=True, fc=True) and int8_muls(full)
    gemm = zoo_et.quantize_xnnpack(model, x, calib, int8_ops='gemm')
    assert _int8_weights(gemm) == dict(conv=True, dwconv=False, fc=True) and not int8_muls(gemm)
    torch.testing.assert_close(gemm(x), model(x), rtol=0, atol=0.1)
    with pytest.raises(ValueError, match='choose from all, gemm'):
        zoo_et.quantize_xnnpack(model, x, calib, int8_ops='some')


@needs_executorch
def test_int8_pte_keeps_int8_weights(tmp_path):
    """An int8 .pte stores int8 weights (constant folding before lowering must not fold them back to fp32)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 3), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten()).eval()
    fp32 = zoo_et.export_executorch(model, tmp_path / 'f.pte', (16, 16), latency_repeats=0)
    int8 = zoo_et.export_executorch(model, tmp_path / 'q.pte', (16, 16), latency_repeats=0,
                                    calibration=torch.randn(8, 3, 16, 16).numpy())
    assert int8.size_mib < 0.5 * fp32.size_mib


@needs_executorch
def test_profile_pte_names_the_kernel_xnnpack_ran():
    """tools/profile_pte.py's profile shows which XNNPACK kernel ran: a 7x7 depthwise conv as the grouped-GEMM
    fallback (IGEMM), its 5x5-window form as depthwise kernels (DWConv)."""
    from modzoo.bench.profile_pte import by_operator, profile_pte
    from modzoo.layers.mobile_forms import windowed_depthwise_form
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 7, padding=3, groups=8)
    igemm, dwconv = 'Convolution (NHWC, F32) IGEMM', 'Convolution (NHWC, F32) DWConv'
    for depthwise, ran, not_ran in ((conv, igemm, dwconv), (windowed_depthwise_form(conv), dwconv, igemm)):
        nodes = profile_pte(nn.Sequential(nn.Conv2d(3, 8, 1), depthwise).eval(), 16, runs=3)
        operators = [op for op, _, _ in by_operator(nodes)]
        assert ran in operators and not_ran not in operators, operators


@pytest.mark.parametrize('argv, message', [(['zoo_efficientmod_xxs', '--runs', '0'], '--runs must be at least 1'),
                                           (['zoo_no_such_model'], 'zoo_no_such_model')])
def test_profile_pte_bad_arguments(argv, message, capsys):
    from modzoo.bench import profile_pte
    with pytest.raises(SystemExit) as e:
        profile_pte.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and 'Traceback' not in err
