"""modzoo.kernels outside eager numerics: backend dispatch, argument checks, torch.library registration
(opcheck, torch.compile without graph breaks), and the paths that must always record the reference: TorchScript,
torch.fx, fvcore and ONNX export."""
import importlib
import os
import subprocess
import sys
import types
from typing import List

import pytest
import torch
import torch.nn as nn

import modzoo.kernels as K
from modzoo.kernels import dispatch

pytestmark = pytest.mark.triton

# Tests that force the Triton kernels on CPU tensors need the interpreter (conftest sets it unless MODZOO_TEST_GPU=1)
needs_interpreter = pytest.mark.skipif(not K.interpreter_enabled(),
                                       reason='forces the Triton kernels on CPU tensors (needs TRITON_INTERPRET=1)')


class TinyModulation(nn.Module):
    """Every fused op once, wired the way the models use them (channel slices, permuted channels-last views)."""

    def __init__(self, dim: int = 8, focal_sizes=(3, 5), dw_size: int = 7, mix_sizes=(3, 5, 7, 9)):
        super().__init__()
        self.dim = dim
        self.focal = nn.ParameterList([nn.Parameter(torch.randn(dim, 1, k, k) / k) for k in focal_sizes])
        self.dw_weight = nn.Parameter(torch.randn(dim, 1, dw_size, dw_size) / dw_size)
        self.dw_bias = nn.Parameter(torch.randn(dim))
        self.mix_weights = nn.ParameterList([nn.Parameter(torch.randn(dim // 4, 1, k, k) / k) for k in mix_sizes])
        self.mix_biases = nn.ParameterList([nn.Parameter(torch.randn(dim // 4)) for _ in range(4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernels: List[torch.Tensor] = [k for k in self.focal]
        y = K.focal_context(x[:, :self.dim], x[:, self.dim:], kernels, True)
        y = K.dwconv_gelu(y.permute(0, 2, 3, 1).permute(0, 3, 1, 2), self.dw_weight, self.dw_bias)
        weights: List[torch.Tensor] = [w for w in self.mix_weights]
        biases: List[torch.Tensor] = [b for b in self.mix_biases]
        y = K.mixed_dwconv_interleave(y, weights, biases)
        t = y.permute(0, 2, 3, 1)
        return K.gelu_tile_mul(torch.cat([t, t], -1), t, True).permute(0, 3, 1, 2)


def _tiny(seed: int = 0, small_taps: bool = False):
    torch.manual_seed(seed)
    if small_taps:  # tracing does not depend on the tap counts; the interpreter's cost does
        return TinyModulation(focal_sizes=(3, 3), dw_size=3, mix_sizes=(3, 1, 3, 1)).eval(), torch.randn(1, 11, 5, 6)
    return TinyModulation().eval(), torch.randn(2, 8 + 3, 6, 7)


# ---------------------------------------------------------------------------------------------------------------------
# dispatch

def test_auto_uses_reference_on_cpu(monkeypatch):
    from modzoo.kernels import focal_context_triton as _focal_triton

    def boom(*args, **kwargs):
        raise AssertionError('the Triton kernel must not run for CPU tensors under the auto backend')
    monkeypatch.setattr(_focal_triton, 'focal_context_fwd', boom)
    ctx, gates = torch.randn(1, 4, 5, 5), torch.randn(1, 2, 5, 5)
    kernels = [torch.randn(4, 1, 3, 3)]
    with K.use_backend('auto'):
        assert K.select_backend('focal_context', [ctx, gates] + kernels) == 'torch'
        out = K.focal_context(ctx, gates, kernels)
    torch.testing.assert_close(out, K.focal_context_reference(ctx, gates, kernels))


def test_import_modzoo_defines_no_triton_kernel():
    """The kernels' Triton modules are imported only when a kernel first runs: ``TRITON_INTERPRET`` can still be set
    after ``import modzoo`` (timm itself may import triton; modzoo's kernels are what must wait)."""
    code = ("import sys, modzoo, modzoo.kernels; "
            "print([m for m in sys.modules if m.startswith('modzoo.kernels.') and 'triton' in m])")
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == '[]'


OPS = ('focal_context', 'dwconv_gelu', 'gelu_tile_mul', 'mixed_dwconv_interleave')


@pytest.mark.parametrize('op', OPS)
def test_op_function_and_op_module_have_their_own_names(op):
    """``modzoo.kernels.<op>`` is the op function; ``modzoo.kernels.<op>_op`` is the module that defines it (the
    function does not shadow the module, so ``import modzoo.kernels.<op>_op as m`` gives the module)."""
    module = importlib.import_module(f'modzoo.kernels.{op}_op')
    assert isinstance(module, types.ModuleType)
    assert getattr(K, f'{op}_op') is module
    function = getattr(K, op)
    assert callable(function) and not isinstance(function, types.ModuleType)
    assert function is getattr(module, op) and function.__module__ == module.__name__
    assert getattr(K, f'{op}_reference') is getattr(module, f'{op}_reference')
    assert callable(module.example_inputs)


def test_import_as_of_an_op_module_gives_the_module():
    # `import a.b.c as m` binds the attribute c of a.b, which an exported function of the same name would shadow
    import modzoo.kernels.dwconv_gelu_op as dwconv_gelu_op
    import modzoo.kernels.focal_context_op as focal_context_op
    import modzoo.kernels.gelu_tile_mul_op as gelu_tile_mul_op
    import modzoo.kernels.mixed_dwconv_interleave_op as mixed_dwconv_interleave_op
    modules = (focal_context_op, dwconv_gelu_op, gelu_tile_mul_op, mixed_dwconv_interleave_op)
    for op, module in zip(OPS, modules, strict=True):
        assert isinstance(module, types.ModuleType) and getattr(module, op) is getattr(K, op)


@needs_interpreter
def test_forced_triton_selects_interpreter_on_cpu():
    assert K.interpreter_enabled()  # conftest sets TRITON_INTERPRET=1 before import
    with K.use_backend('triton'):
        assert K.select_backend('dwconv_gelu', [torch.randn(1, 2, 3, 3)]) == 'triton'


@needs_interpreter
@pytest.mark.parametrize('make_call,reason', [
    pytest.param(lambda: K.dwconv_gelu(torch.randn(1, 2, 4, 4, dtype=torch.float64),
                                       torch.randn(2, 1, 3, 3, dtype=torch.float64), None),
                 'torch.float64', id='float64'),
    pytest.param(lambda: K.focal_context(torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4),
                                         [torch.randn(2, 1, 17, 17)]),
                 'kernel size 17', id='kernel-too-large'),
    pytest.param(lambda: K.gelu_tile_mul(torch.randn(2, 3, 6), torch.randn(1, 3, 2)),
                 'does not broadcast', id='broadcast'),
    pytest.param(lambda: K.mixed_dwconv_interleave(torch.randn(0, 4, 3, 3), [torch.randn(2, 1, 3, 3)] * 2,
                                                   [torch.randn(2)] * 2),
                 'empty', id='empty'),
])
def test_forced_triton_on_unsupported_input_raises(make_call, reason):
    with K.use_backend('triton'), pytest.raises(K.KernelUnsupportedError, match=reason) as info:
        make_call()
    assert 'set_backend("auto")' in str(info.value)
    with K.use_backend('auto'):
        make_call()  # auto falls back to the reference instead


def test_forced_triton_on_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.setattr(dispatch, 'interpreter_enabled', lambda: False)
    with K.use_backend('triton'), pytest.raises(K.KernelUnsupportedError, match='TRITON_INTERPRET=1'):
        K.dwconv_gelu(torch.randn(1, 2, 4, 4), torch.randn(2, 1, 3, 3), torch.randn(2))


def test_backend_from_environment_and_validation(monkeypatch):
    previous = K.get_backend()
    try:
        monkeypatch.setenv(K.ENV_VAR, 'torch')
        K.set_backend(None)
        assert K.get_backend() == 'torch'
        with K.use_backend('triton'):
            assert K.get_backend() == 'triton'
        assert K.get_backend() == 'torch'
        with K.use_backend(None):
            assert K.select_backend('dwconv_gelu', [torch.randn(1, 2, 3, 3)]) == 'torch'
        monkeypatch.setenv(K.ENV_VAR, 'cuda')
        with pytest.raises(ValueError, match=K.ENV_VAR):
            K.set_backend(None)
        with pytest.raises(ValueError, match='unknown modzoo kernel backend'):
            K.set_backend('fast')
    finally:
        K.set_backend(previous)


def test_export_and_trace_always_take_reference():
    x = torch.randn(1, 2, 3, 3)
    with K.use_backend('triton'):
        traced = torch.jit.trace(lambda t: K.dwconv_gelu(t, torch.ones(2, 1, 3, 3), None), (x,))
    kinds = {n.kind() for n in traced.graph.nodes()}
    assert 'aten::_convolution' in kinds or 'aten::conv2d' in kinds
    assert not any('modzoo' in k or 'PythonOp' in k for k in kinds)


@pytest.mark.parametrize('call,match', [
    pytest.param(lambda: K.focal_context(torch.randn(1, 4, 5, 5), torch.randn(1, 3, 5, 5), [torch.randn(4, 1, 3, 3)]),
                 'gates must be', id='focal-gates'),
    pytest.param(lambda: K.focal_context(torch.randn(1, 4, 5, 5), torch.randn(1, 2, 5, 5), [torch.randn(4, 1, 4, 4)]),
                 'odd k', id='focal-even-kernel'),
    pytest.param(lambda: K.dwconv_gelu(torch.randn(1, 4, 5, 5), torch.randn(3, 1, 3, 3), None),
                 'depthwise', id='dwconv-channels'),
    pytest.param(lambda: K.gelu_tile_mul(torch.randn(2, 7), torch.randn(2, 3)), 'multiple', id='tile-ratio'),
    pytest.param(lambda: K.mixed_dwconv_interleave(torch.randn(1, 6, 5, 5), [torch.randn(1, 1, 3, 3)] * 4,
                                                   [torch.randn(1)] * 4),
                 'do not split', id='smt-heads'),
])
@pytest.mark.parametrize('backend', ['torch', 'triton'])
def test_bad_arguments_raise_clear_errors(call, match, backend):
    with K.use_backend(backend), pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------------------------------------
# torch.library registration, torch.compile, TorchScript, fvcore

@needs_interpreter
def test_custom_ops_pass_opcheck():
    """Schema, fake (meta) implementations incl. output strides, autograd registration and AOT dispatch."""
    torch.manual_seed(0)
    f = torch.randn(1, 9, 4, 5).contiguous(memory_format=torch.channels_last)
    samples = [
        (torch.ops.modzoo.focal_context.default,
         (f[:, :4], f[:, 4:7], [torch.randn(4, 1, 3, 3), torch.randn(4, 1, 3, 3)], True)),
        (torch.ops.modzoo.dwconv_gelu.default, (torch.randn(1, 4, 5, 3, 2).permute(0, 4, 1, 2, 3)[..., 0],
                                                 torch.randn(2, 1, 3, 3), torch.randn(2))),
        (torch.ops.modzoo.gelu_tile_mul.default, (torch.randn(3, 2, 6), torch.randn(3, 2, 3), True)),
        (torch.ops.modzoo.mixed_dwconv_interleave.default, (torch.randn(1, 4, 3, 4),
                                                             [torch.randn(2, 1, 3, 3), torch.randn(2, 1, 1, 1)],
                                                             [torch.randn(2), torch.randn(2)])),
    ]
    for op, args in samples:
        args = tuple([t.clone().requires_grad_() for t in a] if isinstance(a, list) else
                     (a.detach().requires_grad_() if isinstance(a, torch.Tensor) else a) for a in args)
        torch.library.opcheck(op, args, test_utils=('test_schema', 'test_faketensor', 'test_autograd_registration',
                                                     'test_aot_dispatch_dynamic'))


@needs_interpreter
@pytest.mark.parametrize('backend', ['auto', 'triton'])
def test_compile_fullgraph_matches_eager(backend):
    """``auto`` on CPU traces the reference; ``triton`` traces the custom ops as single nodes (fake impls +
    registered autograd). aot_eager runs dynamo + AOTAutograd without codegen (inductor: next test)."""
    model, x = _tiny(small_taps=backend == 'triton')
    x.requires_grad_()
    traced_ops = []

    def recording_backend(gm, example_inputs):
        traced_ops.extend(str(n.target) for n in gm.graph.nodes if n.op == 'call_function')
        return torch._dynamo.lookup_backend('aot_eager')(gm, example_inputs)

    with K.use_backend(backend):
        expected = model(x)
        expected.sum().backward()
        grad_expected = x.grad.clone()
        x.grad = None
        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True, backend=recording_backend)
        out = compiled(x)
        out.sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, grad_expected, rtol=1e-5, atol=1e-5)
    custom = sorted(op for op in traced_ops if op.startswith('modzoo.'))
    if backend == 'triton':  # each op is one graph node: the compiled model runs the kernels
        assert custom == ['modzoo.dwconv_gelu', 'modzoo.focal_context', 'modzoo.gelu_tile_mul',
                          'modzoo.mixed_dwconv_interleave']
    else:
        assert custom == []


def test_compile_inductor_reference_matches_eager():
    model, x = _tiny(1)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


def test_torchscript_script_and_trace():
    model, x = _tiny(2)
    expected = model(x)
    with K.use_backend('triton'):
        scripted = torch.jit.script(model)
        traced = torch.jit.trace(model, (x,))
    for m in (scripted, traced):
        torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-5)
    assert not any('modzoo' in n.kind() for n in traced.inlined_graph.nodes())


def test_fx_symbolic_trace_records_the_reference():
    model, x = _tiny(6)
    with K.use_backend('triton'):
        graph_module = torch.fx.symbolic_trace(model)
    assert not any('modzoo' in str(n.target) for n in graph_module.graph.nodes)
    torch.testing.assert_close(graph_module(x), model(x))


def test_fvcore_counts_the_reference():
    from fvcore.nn import FlopCountAnalysis
    model, x = _tiny(3)
    with K.use_backend('triton'):
        flops = FlopCountAnalysis(model, x)
        flops.unsupported_ops_warnings(False)
        total = flops.total()
        unsupported = flops.unsupported_ops()
    # depthwise convs: focal 3x3 + 5x5, context 7x7, mixed 3/5/7/9 over 2 channels each (FMA = 1 flop)
    H, W, C = 6, 7, 8
    convs = C * (9 + 25 + 49) + 2 * (9 + 25 + 49 + 81)
    assert total == 2 * H * W * convs
    assert not any('modzoo' in name for name in unsupported)


# ---------------------------------------------------------------------------------------------------------------------
# ONNX

def _onnx_check(path, model, shapes):
    import numpy as np
    import onnx
    import onnxruntime as ort
    graph = onnx.load(path)
    onnx.checker.check_model(graph, full_check=True)
    domains = {node.domain for node in graph.graph.node}
    assert domains <= {'', 'ai.onnx'}, f'non-standard ONNX domains {domains}'
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for shape in shapes:
        x = torch.randn(shape)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_onnx_dynamo_export_is_standard_and_matches_ort(tmp_path):
    model, x = _tiny(4)
    path = str(tmp_path / 'tiny.onnx')
    with K.use_backend('triton'):  # export must still emit the reference
        torch.onnx.export(model, (x,), path, dynamo=True, external_data=False, input_names=['x'],
                          dynamic_shapes={'x': {0: 'batch', 2: 'height', 3: 'width'}}, verbose=False)
    _onnx_check(path, model, [(2, 11, 6, 7), (1, 11, 9, 5), (3, 11, 4, 10)])


def test_onnx_legacy_export_is_standard_and_matches_ort(tmp_path):
    model, x = _tiny(5)
    path = str(tmp_path / 'tiny_legacy.onnx')
    with K.use_backend('triton'):
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17, input_names=['x'],
                          dynamic_axes={'x': {0: 'batch', 2: 'height', 3: 'width'}})
    _onnx_check(path, model, [(2, 11, 6, 7), (1, 11, 9, 5)])


# ---------------------------------------------------------------------------------------------------------------------
# The kernels compile for a GPU (sm_90) from this CPU-only machine

def test_static_report_counts_every_pass_over_the_tiles():
    """The per-tile figure sums every outermost runtime-trip loop, a second pass over the tiles inside a constant
    tap loop times its taps (the weight-gradient pass of the conv backwards), not just the first loop."""
    from modzoo.bench.static_report import sass_figures
    sass = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        .L_x_0:
        /*0010*/                   FFMA R2, R3, R4, R2 ;
        /*0020*/                   ISETP.GE.AND P0, PT, R5, R6, PT ;
        /*0030*/               @!P0 BRA `(.L_x_0) ;
        /*0040*/                   MOV R0, RZ ;
        .L_x_1:
        /*0050*/                   MOV R7, RZ ;
        .L_x_2:
        /*0060*/                   FFMA R7, R3, R4, R7 ;
        /*0070*/                   FFMA R7, R3, R4, R7 ;
        /*0080*/                   ISETP.GE.AND P1, PT, R8, R9, PT ;
        /*0090*/               @!P1 BRA `(.L_x_2) ;
        /*00a0*/                   IADD3 R0, R0, 0x1, RZ ;
        /*00b0*/                   ISETP.GE.AND P2, PT, R0, 0x31, PT ;
        /*00c0*/               @!P2 BRA `(.L_x_1) ;
        /*00d0*/                   EXIT ;
    """
    figures = sass_figures(sass)
    assert figures['loops'] == 3 and sorted(figures['trips'], key=str) == [49, None, None]
    assert figures['per_tile'] == 3 + 49 * 4 and figures['per_tile_is_loop']


def test_kernels_compile_for_sm90():
    """The interpreter is more permissive than the compiler: the static report compiles one small model case
    (EfficientMod's C=32 channels-last context conv, forward and backward) to sm_90 SASS with the JIT's
    specialisation, and must find its registers, no failure and a per-element instruction count.
    ``MODZOO_TEST_AOT=full`` compiles one small case per op (about a minute)."""
    import triton
    tool = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin', 'ptxas')
    if not os.path.exists(tool):
        pytest.skip('Triton has no bundled ptxas here (no CUDA backend)')
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = [sys.executable, os.path.join(root, 'tools', 'kernel_static_report.py'), '--quick', '--dtype', 'float32']
    if os.environ.get('MODZOO_TEST_AOT') != 'full':
        args += ['--only', 'dwconv_gelu']
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert '_dwconv_gelu_bwd_kernel' in proc.stdout and 'FAIL' not in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith('| `_dwconv')]
    assert rows and all(float(line.split('|')[-2].split('-')[-1]) > 1 for line in rows), proc.stdout
