"""Numerics of modzoo.kernels: every Triton kernel (forward and backward) against its PyTorch reference.

On CPU the kernels run under the Triton interpreter (``TRITON_INTERPRET=1`` from conftest) with tiny shapes: the
interpreter's cost is per program and per tap, so shapes are chosen just above the interpreter's 8x8-pixel /
4-channel tiles where a case needs halos across tile borders. With ``MODZOO_TEST_GPU=1`` on a CUDA machine the same
tests run the compiled kernels on the GPU.
"""
import os
from typing import List

import pytest
import torch
import torch.nn.functional as F

import modzoo.kernels as K

pytestmark = pytest.mark.triton

GPU = os.environ.get('MODZOO_TEST_GPU', '0') == '1' and torch.cuda.is_available()
DEVICE = 'cuda' if GPU else 'cpu'

# Triton output vs reference. fp32: the brief's 1e-5 (sums over a few hundred products, so relative + absolute);
# low precision: the kernels compute in fp32 and round once per stored tensor, the reference rounds after every op,
# so the bound is a few ulps of the dtype at the outputs' magnitude.
TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=1e-2, atol=1e-2),
    torch.bfloat16: dict(rtol=4e-2, atol=4e-2),
}


def _leaf(t: torch.Tensor, dtype=None) -> torch.Tensor:
    """A leaf copy with the same strides (channels-last, slices...) as ``t``, optionally cast."""
    base = t.detach()
    out = torch.empty_strided(base.size(), base.stride(), dtype=dtype or base.dtype, device=base.device)
    out.copy_(base)
    return out.requires_grad_()


def _clone_args(args, dtype=None, keep=()):
    """Leaf copies of ``args``, cast to ``dtype`` except the arguments at the indices in ``keep``."""
    out = []
    for i, a in enumerate(args):
        cast = None if i in keep else dtype
        if isinstance(a, torch.Tensor):
            out.append(_leaf(a, cast))
        elif isinstance(a, list):
            out.append([_leaf(t, cast) for t in a])
        else:
            out.append(a)
    return out


def _leaves(args) -> List[torch.Tensor]:
    leaves = []
    for a in args:
        if isinstance(a, torch.Tensor):
            leaves.append(a)
        elif isinstance(a, list):
            leaves.extend(a)
    return leaves


def _grads(args) -> List[torch.Tensor]:
    return [t.grad for t in _leaves(args)]


def _check_against_reference(op, ref, args, dtype=torch.float32, expect_strides=None, float32_params=()):
    """Forward and backward of ``op`` under the forced Triton backend vs ``ref`` (in float32 on the same values).

    ``float32_params``: indices of arguments (weights) kept in float32 while the activations are in ``dtype``, as
    under autocast, where the ops receive low-precision activations and the float32 parameters.
    """
    tri_args = _clone_args(args, dtype, keep=float32_params)
    ref_args = _clone_args(_clone_args(tri_args), torch.float32)  # same (rounded) values, float32
    with K.use_backend('triton'):
        out = op(*tri_args)
    expected = ref(*ref_args)
    assert out.dtype == dtype and out.shape == expected.shape
    if expect_strides is not None:
        assert out.stride() == expect_strides
    torch.testing.assert_close(out.float(), expected, **TOL[dtype])

    grad = torch.randn_like(expected)
    out.backward(grad.to(dtype))
    expected.backward(grad.to(dtype).float())
    for got, want, leaf in zip(_grads(tri_args), _grads(ref_args), _leaves(tri_args), strict=True):
        assert got is not None and got.dtype == leaf.dtype
        # gradients of weights are sums over B*H*W products: compare relative to their scale
        scale = max(1.0, want.abs().max().item())
        torch.testing.assert_close(got.float() / scale, want / scale, **TOL[dtype])


def _randn(*shape, scale=1.0):
    return torch.randn(*shape, device=DEVICE) * scale


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------------------------------------
# FocalNet focal context

def _focal_inputs(B, C, H, W, sizes, layout):
    L = len(sizes)
    # as in FocalModulation: ctx and gates are channel slices of the `f` projection's output
    f = _randn(B, 2 * C + L + 1, H, W)
    if layout == 'channels_last':
        f = _channels_last(f)
    elif layout == 'strided':
        f = _randn(B, 2 * C + L + 1, 2 * H, W)[:, :, ::2]  # every other row: no unit stride in H
    ctx, gates = f[:, C:2 * C], f[:, 2 * C:]
    kernels = [_randn(C, 1, k, k, scale=1.0 / k) for k in sizes]
    return ctx, gates, kernels


@pytest.mark.parametrize('B,C,H,W,sizes,normalize,layout', [
    pytest.param(2, 6, 9, 11, [3, 5], False, 'nchw', id='srf-slices-multitile'),
    pytest.param(1, 5, 7, 10, [3, 5, 7], True, 'channels_last', id='lrf-normalize-channels_last'),
    pytest.param(1, 4, 5, 3, [3], False, 'strided', id='one-level-strided-b1'),
    pytest.param(1, 3, 6, 5, [3, 5, 7, 9], True, 'nchw', id='fl4-normalize'),
])
def test_focal_context_matches_reference(B, C, H, W, sizes, normalize, layout):
    ctx, gates, kernels = _focal_inputs(B, C, H, W, sizes, layout)
    _check_against_reference(K.focal_context, K.focal_context_reference, [ctx, gates, kernels, normalize])


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_focal_context_low_precision(dtype):
    ctx, gates, kernels = _focal_inputs(1, 4, 9, 6, [3, 5], 'nchw')
    _check_against_reference(K.focal_context, K.focal_context_reference, [ctx, gates, kernels, True], dtype)


def test_mixed_precision_activations_with_float32_params():
    """Under autocast the ops get bf16 activations and float32 weights: the kernels take both, return the
    activation dtype, and give the weights float32 gradients."""
    ctx, gates, kernels = _focal_inputs(1, 4, 6, 5, [3, 5], 'nchw')
    _check_against_reference(K.focal_context, K.focal_context_reference, [ctx, gates, kernels, False],
                             torch.bfloat16, float32_params=(2,))
    _check_against_reference(K.dwconv_gelu, K.dwconv_gelu_reference, _dwconv_inputs(1, 4, 5, 6, 3, 'permuted'),
                             torch.bfloat16, float32_params=(1, 2))
    x, weights, biases = _smt_inputs(1, 4, 5, 6, [3, 1], 'tokens')
    _check_against_reference(K.mixed_dwconv_interleave, K.mixed_dwconv_interleave_reference, [x, weights, biases],
                             torch.bfloat16, float32_params=(1, 2))


def test_focal_context_output_follows_input_layout():
    ctx, gates, kernels = _focal_inputs(1, 4, 5, 6, [3], 'channels_last')
    with K.use_backend('triton'):
        out = K.focal_context(ctx, gates, kernels)
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_focal_context_reference_matches_the_written_out_formula():
    """The reference equals FocalNet's focal context written out level by level (the models call the op; the
    golden tests tie the whole model to the official logits)."""
    ctx, gates, kernels = _focal_inputs(2, 6, 7, 9, [3, 5, 7], 'nchw')
    level, expected = ctx, 0
    for i, k in enumerate(kernels):
        level = F.gelu(F.conv2d(level, k, padding=k.shape[-1] // 2, groups=ctx.shape[1]))
        expected = expected + level * gates[:, i:i + 1]
    expected = expected + F.gelu(level.mean((2, 3), keepdim=True)) * gates[:, len(kernels):]
    for normalize in (False, True):
        want = expected / (len(kernels) + 1) if normalize else expected
        torch.testing.assert_close(K.focal_context_reference(ctx, gates, kernels, normalize), want,
                                   rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# EfficientMod: depthwise conv + bias + GELU

def _dwconv_inputs(B, C, H, W, k, layout, bias=True):
    if layout == 'permuted':  # EfficientMod calls it on a permuted channels-last (B, H, W, C) tensor
        x = _randn(B, H, W, C).permute(0, 3, 1, 2)
    elif layout == 'strided':
        x = _randn(B, 2 * C, H, W + 3)[:, ::2, :, 1:W + 1]
    else:
        x = _randn(B, C, H, W)
    return [x, _randn(C, 1, k, k, scale=1.0 / k), _randn(C) if bias else None]


@pytest.mark.parametrize('B,C,H,W,k,layout,bias', [
    pytest.param(2, 6, 9, 11, 7, 'permuted', True, id='k7-permuted-multitile'),
    pytest.param(1, 5, 5, 7, 3, 'nchw', True, id='k3-nchw-b1-odd'),
    pytest.param(1, 4, 6, 5, 5, 'strided', False, id='k5-strided-nobias'),
])
def test_dwconv_gelu_matches_reference(B, C, H, W, k, layout, bias):
    # without bias the argument list ends in None, which both take as "no bias"
    _check_against_reference(K.dwconv_gelu, K.dwconv_gelu_reference, _dwconv_inputs(B, C, H, W, k, layout, bias))


def test_dwconv_gelu_keeps_channels_last_view():
    x, w, b = _dwconv_inputs(1, 4, 5, 6, 3, 'permuted')
    with K.use_backend('triton'):
        y = K.dwconv_gelu(x, w, b)
    assert y.permute(0, 2, 3, 1).is_contiguous()  # the model permutes back to (B, H, W, C) for free


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_dwconv_gelu_low_precision(dtype):
    _check_against_reference(K.dwconv_gelu, K.dwconv_gelu_reference, _dwconv_inputs(1, 4, 9, 5, 7, 'permuted'),
                             dtype)


def test_dwconv_gelu_reference_is_conv_then_gelu():
    x, w, b = _dwconv_inputs(2, 4, 6, 7, 7, 'nchw')
    conv = torch.nn.Conv2d(4, 4, 7, padding=3, groups=4).to(DEVICE)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)
    torch.testing.assert_close(K.dwconv_gelu_reference(x, w, b), torch.nn.GELU()(conv(x)))


# ---------------------------------------------------------------------------------------------------------------------
# EfficientMod: act(v) * tile(ctx)

@pytest.mark.parametrize('lead,C,r,apply_gelu,layout', [
    pytest.param((2, 3, 5), 6, 4, True, 'contiguous', id='r4-gelu-bhwc'),
    pytest.param((2, 5, 3), 5, 1, False, 'contiguous', id='r1-identity'),
    pytest.param((11,), 3, 3, True, 'strided', id='r3-gelu-2d-strided'),
])
def test_gelu_tile_mul_matches_reference(lead, C, r, apply_gelu, layout):
    v = _randn(*lead, r * C)
    ctx = _randn(*lead, C)
    if layout == 'strided':
        v = _randn(*lead, 2 * r * C)[..., ::2]
        ctx = _randn(C, *lead).transpose(0, -1)
    _check_against_reference(K.gelu_tile_mul, K.gelu_tile_mul_reference, [v, ctx, apply_gelu])


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_gelu_tile_mul_low_precision(dtype):
    _check_against_reference(K.gelu_tile_mul, K.gelu_tile_mul_reference,
                             [_randn(2, 3, 4, 12), _randn(2, 3, 4, 4), True], dtype)


def test_gelu_tile_mul_reference_is_repeat_not_interleave():
    v, ctx = _randn(2, 3, 3, 12), _randn(2, 3, 3, 4)
    expected = F.gelu(v) * ctx.repeat(1, 1, 1, 3)
    torch.testing.assert_close(K.gelu_tile_mul_reference(v, ctx, True), expected)
    assert not torch.allclose(expected, F.gelu(v) * ctx.repeat_interleave(3, dim=-1))


# ---------------------------------------------------------------------------------------------------------------------
# SMT: multi-head mixed depthwise conv + channel interleave

def _smt_inputs(B, C, H, W, sizes, layout):
    h = len(sizes)
    x = _randn(B, C, H, W)
    if layout == 'channels_last':
        x = _channels_last(x)
    elif layout == 'tokens':  # SMT reshapes (B, N, C) tokens to NCHW: a channels-last view
        x = _randn(B, H * W, C).transpose(1, 2).reshape(B, C, H, W)
    weights = [_randn(C // h, 1, k, k, scale=1.0 / k) for k in sizes]
    biases = [_randn(C // h) for _ in sizes]
    return x, weights, biases


@pytest.mark.parametrize('B,C,H,W,sizes,layout', [
    pytest.param(2, 8, 9, 11, [3, 5, 7, 9], 'nchw', id='smt-4heads-multitile'),
    pytest.param(1, 8, 7, 6, [3, 5, 7, 9], 'tokens', id='smt-4heads-token-view-b1'),
    pytest.param(1, 6, 5, 7, [3, 5], 'channels_last', id='2heads-channels_last'),
    pytest.param(1, 5, 4, 5, [3, 5, 3, 1, 3], 'nchw', id='5heads-two-launches'),
])
def test_mixed_dwconv_interleave_matches_reference(B, C, H, W, sizes, layout):
    x, weights, biases = _smt_inputs(B, C, H, W, sizes, layout)
    _check_against_reference(K.mixed_dwconv_interleave, K.mixed_dwconv_interleave_reference, [x, weights, biases])


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_mixed_dwconv_interleave_low_precision(dtype):
    x, weights, biases = _smt_inputs(1, 4, 6, 5, [3, 5], 'tokens')
    _check_against_reference(K.mixed_dwconv_interleave, K.mixed_dwconv_interleave_reference, [x, weights, biases],
                             dtype)


def test_mixed_dwconv_interleave_order():
    """Output channel g*h + i is head i's channel g: identity kernels give the source order [0,2,4,6,1,3,5,7]."""
    x = torch.arange(8., device=DEVICE).view(1, 8, 1, 1).expand(1, 8, 3, 3).contiguous()
    weights = [F.pad(torch.ones(2, 1, 1, 1, device=DEVICE), [1 + i] * 4) for i in range(4)]  # centre-1 k = 3+2i
    biases = [torch.zeros(2, device=DEVICE) for _ in range(4)]
    for backend in ('torch', 'triton'):
        with K.use_backend(backend):
            y = K.mixed_dwconv_interleave(x, weights, biases)
        assert y[0, :, 1, 1].tolist() == [0., 2., 4., 6., 1., 3., 5., 7.], backend


def test_mixed_dwconv_interleave_reference_matches_per_channel_definition():
    x, weights, biases = _smt_inputs(2, 8, 6, 5, [3, 5, 7, 9], 'nchw')
    h, Cg = 4, 2
    expected = torch.empty_like(x)
    for i in range(h):
        for g in range(Cg):
            c = i * Cg + g
            k = weights[i].shape[-1]
            expected[:, g * h + i] = F.conv2d(x[:, c:c + 1], weights[i][g:g + 1], biases[i][g:g + 1],
                                              padding=k // 2)[:, 0]
    torch.testing.assert_close(K.mixed_dwconv_interleave_reference(x, weights, biases), expected)


# ---------------------------------------------------------------------------------------------------------------------
# float64 gradcheck of the public ops (float64 always takes the reference)

def _gradcheck(fn, inputs):
    # fast mode checks random projections of the Jacobian: the same failures, a fraction of the evaluations
    return torch.autograd.gradcheck(fn, inputs, fast_mode=True)


def test_gradcheck_float64():
    dev = dict(device=DEVICE, dtype=torch.float64)
    ctx, gates = torch.randn(1, 2, 4, 3, **dev, requires_grad=True), torch.randn(1, 3, 4, 3, **dev, requires_grad=True)
    kernels = [torch.randn(2, 1, k, k, **dev, requires_grad=True) for k in (3, 5)]
    assert _gradcheck(lambda c, g, k0, k1: K.focal_context(c, g, [k0, k1], True), (ctx, gates, *kernels))
    x = torch.randn(1, 2, 4, 5, **dev, requires_grad=True)
    w, b = torch.randn(2, 1, 3, 3, **dev, requires_grad=True), torch.randn(2, **dev, requires_grad=True)
    assert _gradcheck(K.dwconv_gelu, (x, w, b))
    v, c = torch.randn(2, 3, 6, **dev, requires_grad=True), torch.randn(2, 3, 2, **dev, requires_grad=True)
    assert _gradcheck(lambda v, c: K.gelu_tile_mul(v, c, True), (v, c))
    assert _gradcheck(lambda v, c: K.gelu_tile_mul(v, c, False), (v, c))
    x = torch.randn(1, 4, 3, 4, **dev, requires_grad=True)
    ws = [torch.randn(2, 1, k, k, **dev, requires_grad=True) for k in (3, 5)]
    bs = [torch.randn(2, **dev, requires_grad=True) for _ in range(2)]
    assert _gradcheck(lambda x, w0, w1, b0, b1: K.mixed_dwconv_interleave(x, [w0, w1], [b0, b1]), (x, *ws, *bs))


# ---------------------------------------------------------------------------------------------------------------------
# Every GPU tile configuration (each autotune candidate), run under the interpreter with the candidate pinned

_TRITON_MODULES = ('dwconv_gelu_triton', 'focal_context_triton', 'mixed_dwconv_interleave_triton',
                   'gelu_tile_mul_triton')


def _triton_modules():
    import importlib
    return [importlib.import_module(f'modzoo.kernels.{name}') for name in _TRITON_MODULES]


def _op_kernels():
    """Per op: ``[tuned kernel names]`` of its pass plan; each case pins candidate ``i`` (modulo each kernel's
    count)."""
    return {name[:-len('_triton')]: [k.name for k in mod.TUNED_KERNELS]
            for name, mod in zip(_TRITON_MODULES, _triton_modules(), strict=True)}


def _tuned(name):
    for mod in _triton_modules():
        for obj in mod.TUNED_KERNELS:
            if obj.name == name:
                return obj
    raise KeyError(name)


def _candidate_cases():
    cases = []
    for op, names in _op_kernels().items():
        layouts = ('any',) if op == 'gelu_tile_mul' else ('nchw', 'nhwc')
        for layout in layouts:
            n = max(len(_tuned(k).candidates.get(layout, _tuned(k).candidates.get('any', []))) for k in names)
            for i in range(n):
                cases.append(pytest.param(op, layout, i, id=f'{op}-{layout}-{i}'))
    return cases


from modzoo.kernels._triton_utils import pin_config as _pin_config  # noqa: E402


def _pinned_meta(names, layout, index):
    """Pin candidate ``index`` of every kernel in ``names``; return the largest tile among the pinned configs."""
    import contextlib
    stack = contextlib.ExitStack()
    big = dict(BLOCK_C=1, TH=1, TW=1, BLOCK_M=1)
    for name in names:
        kernel = _tuned(name)
        cands = kernel.candidates.get(layout) or kernel.candidates[next(iter(kernel.candidates))]
        i = index % len(cands)
        stack.enter_context(_pin_config(name, i))
        for k, v in cands[i].kwargs.items():
            big[k] = max(big.get(k, 1), v)  # the tile, and the forward kernels' strips (SH, SW)
    return stack, big


def _run_pinned_case(op, layout, index, dtypes=(torch.float32,), heads=2, sizes=(3,)):
    """``op`` forward and every gradient against the reference with candidate ``index`` of each of its kernels."""
    stack, big = _pinned_meta(_op_kernels()[op], layout, index)
    cl = layout == 'nhwc'
    torch.manual_seed(index)
    with stack:
        C, H, W = big['BLOCK_C'] + 1, big['TH'] + 1, big['TW'] + 3
        if op == 'dwconv_gelu':
            k = (3, 7, 5, 3)[index % 4]
            x = _randn(1, H, W, C).permute(0, 3, 1, 2) if cl else _randn(1, C, H, W)  # a permuted NHWC view
            args = [x, _randn(C, 1, k, k, scale=1.0 / k), _randn(C)]
            op_fn, ref_fn = K.dwconv_gelu, K.dwconv_gelu_reference
        elif op == 'focal_context':
            ctx, gates, kernels = _focal_inputs(1, C, H, W, sizes, 'channels_last' if cl else 'contiguous')
            args = [ctx, gates, kernels, index % 2 == 1]
            op_fn, ref_fn = K.focal_context, K.focal_context_reference
        elif op == 'mixed_dwconv_interleave':
            Cg = big['BLOCK_C'] + 1
            x = _randn(1, H, W, heads * Cg).permute(0, 3, 1, 2) if cl else _randn(1, heads * Cg, H, W)
            ks = [3 + 2 * i for i in range(heads)]
            args = [x, [_randn(Cg, 1, k, k, scale=1.0 / k) for k in ks], [_randn(Cg) for _ in ks]]
            op_fn, ref_fn = K.mixed_dwconv_interleave, K.mixed_dwconv_interleave_reference
        else:
            C, M, r = big['BLOCK_C'] + 1, big['BLOCK_M'] + 3, 2
            args = [_randn(M, r * C), _randn(M, C), True]
            op_fn, ref_fn = K.gelu_tile_mul, K.gelu_tile_mul_reference
        params = {'dwconv_gelu': (1, 2), 'focal_context': (2,), 'mixed_dwconv_interleave': (1, 2)}.get(op, ())
        for dtype in dtypes:
            _check_against_reference(op_fn, ref_fn, args, dtype=dtype, float32_params=params)


@pytest.mark.skipif(GPU, reason='pins interpreter configurations; on a GPU the autotuner picks')
@pytest.mark.parametrize('op,layout,index', _candidate_cases())
def test_gpu_tile_candidate_matches_reference(op, layout, index):
    """Every autotune candidate of every kernel, pinned, in fp32: one tile plus an odd remainder in every dim of
    the largest pinned candidate, so masks, halos across tiles and several channel blocks run at the GPU tile sizes;
    channels-last as permuted views and channel slices, as the models pass them."""
    _run_pinned_case(op, layout, index)


@pytest.mark.slow
@pytest.mark.skipif(GPU, reason='pins interpreter configurations; on a GPU the autotuner picks')
@pytest.mark.parametrize('op,layout', [('dwconv_gelu', 'nchw'), ('focal_context', 'nhwc'),
                                       ('mixed_dwconv_interleave', 'nchw'), ('gelu_tile_mul', 'any')])
def test_gpu_tile_candidate_bfloat16_four_heads_two_levels(op, layout):
    """The first candidate again with bf16 activations and fp32 weights, four SMT heads and two focal levels."""
    _run_pinned_case(op, layout, 0, dtypes=(torch.float32, torch.bfloat16), heads=4, sizes=(3, 5))


@pytest.mark.slow
@pytest.mark.parametrize('case', ['dwconv_k15', 'focal_k15', 'focal_levels4', 'mixed_k3_k13'])
def test_largest_kernels_and_four_levels(case):
    """k = 15 (the largest the kernels take), four focal levels, and an SMT head beyond the register weight-gradient
    sums (k = 13, a weight-gradient pass) beside one within them, at the interpreter's tile (slow: hundreds of taps
    per program)."""
    if case == 'mixed_k3_k13':
        x, weights, biases = _smt_inputs(1, 4, 9, 10, [3, 13], 'channels_last')
        _check_against_reference(K.mixed_dwconv_interleave, K.mixed_dwconv_interleave_reference, [x, weights, biases])
    elif case == 'dwconv_k15':
        args = [_randn(1, 5, 9, 10), _randn(5, 1, 15, 15, scale=1 / 15), _randn(5)]
        _check_against_reference(K.dwconv_gelu, K.dwconv_gelu_reference, args)
    else:
        sizes = (15,) if case == 'focal_k15' else (3, 5, 7, 9)
        ctx, gates, kernels = _focal_inputs(1, 5, 9, 10, sizes, 'contiguous')
        _check_against_reference(K.focal_context, K.focal_context_reference, [ctx, gates, kernels, True])


def test_pinned_candidate_is_the_one_launched(monkeypatch):
    """Pinning really changes the launch (so the candidate tests above test what they say)."""
    kernel = _tuned('dwconv_fwd')
    seen = []
    real = kernel.fn

    class Spy:
        arg_names = real.arg_names

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                seen.append((kwargs['BLOCK_C'], kwargs['TH'], kwargs['TW'], kwargs['num_warps']))
                return real[grid](*args, **kwargs)
            return launch

    monkeypatch.setattr(kernel, 'fn', Spy())
    x, w = _randn(1, 3, 5, 5), _randn(3, 1, 3, 3)
    with K.use_backend('triton'):
        K.dwconv_gelu(x, w)
        with _pin_config('dwconv_fwd', 2):
            K.dwconv_gelu(x, w)
    c = kernel.candidates['nchw'][2]
    assert seen[1] == (c.kwargs['BLOCK_C'], c.kwargs['TH'], c.kwargs['TW'], c.num_warps) != seen[0]


@pytest.mark.skipif(GPU, reason='interpreter')
def test_gate_gradients_are_deterministic_and_atomic_free():
    """Two backward passes give bit-identical gate gradients, and no kernel source uses atomics any more."""
    import inspect
    for mod in _triton_modules():
        assert 'atomic_' not in inspect.getsource(mod), mod.__name__
    ctx, gates, kernels = _focal_inputs(1, 5, 9, 9, (3,), 'contiguous')  # 2 channel blocks, 4 tiles
    results = []
    for _ in range(2):
        args = _clone_args([ctx, gates, kernels])
        with K.use_backend('triton'):
            K.focal_context(*args).square().sum().backward()
        results.append(args[1].grad)
    assert torch.equal(results[0], results[1])


def test_launchers_run_on_the_tensors_device(monkeypatch):
    """Every launcher enters ``torch.cuda.device(x.device)`` for CUDA tensors (Triton launches on the current
    device); stubbed here, since the check must hold without a GPU."""
    from modzoo.kernels import _triton_utils
    entered = []

    class FakeDevice:
        def __init__(self, device):
            entered.append(device)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(_triton_utils.torch.cuda, 'device', FakeDevice)

    @_triton_utils.on_tensor_device
    def launcher(x, y):
        return 'ran'

    fake = torch.empty(0)
    monkeypatch.setattr(torch.Tensor, 'device', property(lambda self: torch.device('cuda', 1)))
    assert launcher(fake, 1) == 'ran'
    monkeypatch.undo()
    assert entered == [torch.device('cuda', 1)]
    dwconv, focal, mixed, tile_mul = _triton_modules()
    launchers = [dwconv.depthwise_conv, dwconv.dwconv_gelu_bwd, focal.focal_context_fwd,
                 focal.focal_context_bwd, mixed.mixed_dwconv_fwd, mixed.mixed_dwconv_bwd,
                 tile_mul.gelu_tile_mul_fwd, tile_mul.gelu_tile_mul_bwd]
    assert all(getattr(f, '__wrapped__', None) is not None for f in launchers)


@pytest.mark.parametrize('name', [k for names in _op_kernels().values() for k in names])
def test_autotune_key_holds_every_compile_time_switch_and_the_layout(name):
    """One tuning per kernel size, pass and layout: no tuning of FocalNet's k3 level reused for its k7 level."""
    kernel = _tuned(name)
    import inspect
    params = inspect.signature(getattr(kernel.fn, 'fn', kernel.fn)).parameters.values()
    switches = {p.name for p in params if 'constexpr' in str(p.annotation)} - kernel.tuned_keys
    assert switches <= set(kernel.key), sorted(switches - set(kernel.key))
    if kernel.layout_arg is not None:
        assert kernel.layout_arg in kernel.key


@pytest.mark.parametrize('name', [k for names in _op_kernels().values() for k in names])
def test_a_candidate_fits_the_last_stage_7x7_map(name):
    """On 7x7 maps (the last stage at 224 px) every layout has a candidate whose tile is at most 8x8."""
    kernel = _tuned(name)
    for layout, cands in kernel.candidates.items():
        named = dict(C=64, Cg=64, H=7, W=7, M=49, R=2, sx_c=1 if layout == 'nhwc' else 49)
        named.update(ss_c=named['sx_c'], sd_c=named['sx_c'])
        fits = [c for c in kernel.candidates_for(named) if c.kwargs.get('TH', 1) <= 8 and c.kwargs.get('TW', 1) <= 8]
        assert fits, (layout, [c.kwargs for c in cands])
