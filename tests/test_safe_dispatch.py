"""``auto`` runs a Triton kernel on CUDA only inside a validated entry (op, GPU family, layout, dtype of every tensor
argument, kernel-size range, Triton and torch versions), each boundary shown on stubbed devices; card
identification; the validated-kernel table's loader and writer."""
import json

import pytest
import torch

import modzoo.kernels as K
from modzoo.kernels import dispatch, validated
from modzoo.kernels.gpu_info import card_class, card_peak, gpu_family

pytestmark = pytest.mark.triton

needs_interpreter = pytest.mark.skipif(not K.interpreter_enabled(),
                                       reason='runs the Triton kernels on CPU tensors (needs TRITON_INTERPRET=1)')
FAMILY = 'sm90 H200 SXM'
TRITON = '3.6.0'


def _entry(op='dwconv_gelu', dtype='float32', gpu=FAMILY, layout='last_dim_contiguous', dtypes=None, k=(3, 3),
           **extra):
    """A well-formed entry, as the GPU check writes them."""
    return dict(dict(op=op, dtype=dtype, gpu=gpu, layout=layout, dtypes=dtypes or [dtype] * 2,
                     k_min=k[0] if k else None, k_max=k[1] if k else None, triton=TRITON, torch=torch.__version__,
                     shapes=['a shape']), **extra)


def _op_calls():
    """One tiny call of every public op, as (op name, tensors the dispatch sees, call)."""
    torch.manual_seed(0)
    ctx, gates, kernels = torch.randn(1, 4, 5, 5), torch.randn(1, 2, 5, 5), [torch.randn(4, 1, 3, 3) / 3]
    x, w, b = torch.randn(1, 4, 5, 5), torch.randn(4, 1, 3, 3) / 3, torch.randn(4)
    v, c = torch.randn(1, 3, 3, 8), torch.randn(1, 3, 3, 4)
    mx, mws, mbs = torch.randn(1, 8, 5, 5), [torch.randn(4, 1, 3, 3) / 3] * 2, [torch.randn(4)] * 2
    return [
        ('focal_context', [ctx, gates, *kernels], lambda: K.focal_context(ctx, gates, kernels)),
        ('dwconv_gelu', [x, w, b], lambda: K.dwconv_gelu(x, w, b)),
        ('gelu_tile_mul', [v, c], lambda: K.gelu_tile_mul(v, c, True)),
        ('mixed_dwconv_interleave', [mx, *mws, *mbs], lambda: K.mixed_dwconv_interleave(mx, mws, mbs)),
    ]


def _custom_op_calls(fn) -> int:
    from torch.utils._python_dispatch import TorchDispatchMode
    seen = []

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == 'modzoo':
                seen.append(func)
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return len(seen)


@pytest.fixture
def fake_cuda(monkeypatch, tmp_path):
    """CPU tensors dispatch as if on an H200; returns a function that installs a table with the given entries."""
    monkeypatch.setattr(dispatch, '_is_cuda', lambda t: True)
    monkeypatch.setattr(dispatch, '_gpu_family', lambda device: FAMILY)
    monkeypatch.setattr(dispatch, '_triton_version', lambda: TRITON)

    def install(entries):
        path = tmp_path / f'table{len(list(tmp_path.iterdir()))}.json'  # a new path: the table is read once per path
        path.write_text(json.dumps({'written_by': validated.WRITTEN_BY, 'entries': entries}))
        monkeypatch.setenv(validated.TABLE_ENV_VAR, str(path))
    return install


def test_packaged_table_is_empty_and_names_its_writer():
    with open(validated.DEFAULT_TABLE) as f:
        data = json.load(f)
    assert data['written_by'] == 'tools/gpu_check.py'
    assert validated.load_table(validated.DEFAULT_TABLE) == data['entries']


KS = {'focal_context': (3, 3), 'dwconv_gelu': (3, 3), 'gelu_tile_mul': None, 'mixed_dwconv_interleave': (3, 3)}


def _entries_for(calls, **overrides):
    return [_entry(op, dtypes=[str(t.dtype).replace('torch.', '') for t in tensors], k=KS[op], **overrides)
            for op, tensors, _ in calls]


def _kernel_sizes(op):
    return (3,) * (KS[op] is not None)


def test_auto_on_cuda_runs_the_reference_without_an_entry(fake_cuda):
    calls = _op_calls()
    fake_cuda(_entries_for(calls, gpu='sm90 GH200') + [_entry(op, dtype='bfloat16', k=KS[op]) for op in KS])
    with K.use_backend('auto'):
        for op, tensors, call in calls:
            assert K.select_backend(op, tensors, kernel_sizes=_kernel_sizes(op)) == 'torch', op
            assert _custom_op_calls(call) == 0, op
    with K.use_backend('triton'):  # forcing ignores the table
        for op, tensors, _ in calls:
            assert K.select_backend(op, tensors) == 'triton', op


@needs_interpreter
def test_auto_on_cuda_runs_the_kernel_inside_an_entry(fake_cuda):
    calls = _op_calls()
    fake_cuda(_entries_for(calls))
    with K.use_backend('auto'):
        for op, tensors, _ in calls:
            assert K.select_backend(op, tensors, kernel_sizes=_kernel_sizes(op)) == 'triton', op
        # gelu_tile_mul has no kernel size, so its call site already passes all an entry needs
        assert _custom_op_calls(calls[2][2]) >= 1
    fake_cuda(_entries_for(calls[1:2]))  # only one op validated
    with K.use_backend('auto'):
        assert [K.select_backend(op, t, kernel_sizes=_kernel_sizes(op)) for op, t, _ in calls] == \
            ['torch', 'triton', 'torch', 'torch']
    with K.use_backend('torch'):
        assert all(K.select_backend(op, t, kernel_sizes=_kernel_sizes(op)) == 'torch' for op, t, _ in calls)


def _dwconv_tensors(layout='channels_last', x_dtype=torch.bfloat16, w_dtype=torch.float32):
    x = torch.randn(2, 5, 5, 4, dtype=x_dtype).permute(0, 3, 1, 2)  # a channels-last view, as EfficientMod feeds it
    if layout != 'channels_last':
        x = x.contiguous()
    return [x, torch.randn(4, 1, 7, 7, dtype=w_dtype), torch.randn(4, dtype=torch.float32)]


BF16_CL = dict(layout='channels_last', dtype='bfloat16', dtypes=['bfloat16', 'float32', 'float32'], k=(5, 9))


@pytest.mark.parametrize('entry,tensors,kernel_sizes,expected', [
    (BF16_CL, _dwconv_tensors(), (7,), 'triton'),
    (BF16_CL, _dwconv_tensors(), (5,), 'triton'),
    (BF16_CL, _dwconv_tensors(), (9,), 'triton'),
    (BF16_CL, _dwconv_tensors('nchw'), (7,), 'torch'),                     # another layout
    (BF16_CL, _dwconv_tensors(), (3,), 'torch'),                           # below the kernel-size range
    (BF16_CL, _dwconv_tensors(), (11,), 'torch'),                          # above it
    (BF16_CL, _dwconv_tensors(), (), 'torch'),                             # a call site that does not say
    (BF16_CL, _dwconv_tensors(w_dtype=torch.bfloat16), (7,), 'torch'),    # a weight's dtype differs
    (BF16_CL, _dwconv_tensors(x_dtype=torch.float32), (7,), 'torch'),     # the activation's dtype differs
    (dict(BF16_CL, gpu='sm90 H100 SXM'), _dwconv_tensors(), (7,), 'torch'),  # another card
    (dict(BF16_CL, triton='3.5.1'), _dwconv_tensors(), (7,), 'torch'),    # checked under another Triton
    (dict(BF16_CL, triton='3.6.1'), _dwconv_tensors(), (7,), 'triton'),   # a patch release of the same one
    (dict(BF16_CL, torch='2.0.0'), _dwconv_tensors(), (7,), 'torch'),     # checked under another torch
], ids=['inside', 'k_min', 'k_max', 'layout', 'k_below', 'k_above', 'k_unknown', 'weight_dtype', 'x_dtype',
        'card', 'triton', 'triton_patch', 'torch'])
def test_auto_dispatches_only_inside_the_validated_entry(fake_cuda, entry, tensors, kernel_sizes, expected):
    fake_cuda([_entry(**entry)])
    with K.use_backend('auto'):
        assert K.select_backend('dwconv_gelu', tensors, kernel_sizes=kernel_sizes) == expected


def test_an_op_without_a_kernel_size_never_matches_a_call_that_passes_one(fake_cuda):
    v, c = torch.randn(1, 3, 3, 8), torch.randn(1, 3, 3, 4)
    fake_cuda([_entry('gelu_tile_mul', k=None)])
    with K.use_backend('auto'):
        assert K.select_backend('gelu_tile_mul', [v, c]) == 'triton'
        assert K.select_backend('gelu_tile_mul', [v, c], kernel_sizes=(3,)) == 'torch'
        assert K.select_backend('gelu_tile_mul', [v[..., ::2], c]) == 'torch'  # strided


def test_auto_on_cuda_still_falls_back_for_unsupported_inputs(fake_cuda):
    fake_cuda([_entry()])
    with K.use_backend('auto'):
        assert K.select_backend('dwconv_gelu', [torch.randn(1, 2, 3, 3, dtype=torch.float64)], kernel_sizes=(3,)) \
            == 'torch'


def test_tensor_layout_and_what_the_dispatch_observes():
    x = torch.randn(2, 4, 5, 6)
    f = torch.randn(2, 11, 5, 6)
    assert dispatch.tensor_layout(x) == 'last_dim_contiguous'
    assert dispatch.tensor_layout(f[:, 4:8]) == 'last_dim_contiguous'  # FocalNet's channel slice
    assert dispatch.tensor_layout(x.contiguous(memory_format=torch.channels_last)) == 'channels_last'
    assert dispatch.tensor_layout(f.contiguous(memory_format=torch.channels_last)[:, 4:8]) == 'channels_last'
    assert dispatch.tensor_layout(torch.randn(2, 5, 6, 4)) == 'last_dim_contiguous'  # (B, H, W, C)
    assert dispatch.tensor_layout(x[..., ::2]) == 'strided'
    with dispatch.observe_calls() as seen, K.use_backend('torch'):
        K.dwconv_gelu(x, torch.randn(4, 1, 3, 3), None)
    assert len(seen) == 1 and seen[0]['layout'] == 'last_dim_contiguous'
    assert seen[0]['dtypes'] == ['float32', 'float32'] and seen[0]['kernel_sizes'] in ([], [3])  # [3] once passed


def _bad(**change):
    entry = dict(_entry(), **change)
    return json.dumps({'entries': [{k: v for k, v in entry.items() if v != 'DROP'}]})


@pytest.mark.parametrize('content,problem', [
    ('{"entries": [', 'not valid JSON'),
    ('[]', 'expected an object with an "entries" list'),
    (_bad(op='focal'), "entry 0 has op 'focal'"),
    (_bad(dtype='fp32'), "has dtype 'fp32'"),
    (_bad(gpu='H200'), "has gpu 'H200'"),
    (_bad(layout='nhwc'), "has layout 'nhwc'"),
    (_bad(dtypes='DROP'), 'has dtypes None'),
    (_bad(k_max='DROP'), 'has k_min 3, k_max None'),
    (_bad(k_min=5, k_max=3), 'has k_min 5, k_max 3'),
    (_bad(triton='DROP'), 'has triton None'),
    (_bad(torch='new'), "has torch 'new'"),
    (_bad(shapes=[]), 'has no "shapes"'),
])
def test_malformed_table_fails_with_one_clear_line(fake_cuda, monkeypatch, tmp_path, content, problem):
    path = tmp_path / 'bad.json'
    path.write_text(content)
    monkeypatch.setenv(validated.TABLE_ENV_VAR, str(path))
    with K.use_backend('auto'), pytest.raises(validated.TableError) as info:
        K.select_backend('dwconv_gelu', [torch.randn(1, 2, 3, 3)], kernel_sizes=(3,))
    message = str(info.value)
    assert problem in message and str(path) in message and 'gpu_check.py' in message and '\n' not in message


def test_missing_table_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv(validated.TABLE_ENV_VAR, str(tmp_path / 'absent.json'))
    with pytest.raises(validated.TableError, match='cannot read it'):
        validated.entries_for('dwconv_gelu', FAMILY)


def test_write_table_replaces_only_the_measured_cards(tmp_path):
    path = str(tmp_path / 'table.json')
    old = [_entry(gpu='sm90 H100 SXM'), _entry()]
    validated.write_table(path, ['sm90 H100 SXM', FAMILY], old)
    validated.write_table(path, [FAMILY], [_entry('focal_context', 'bfloat16')])
    keys = {(e['op'], e['dtype'], e['gpu']) for e in validated.load_table(path)}
    assert keys == {('dwconv_gelu', 'float32', 'sm90 H100 SXM'), ('focal_context', 'bfloat16', FAMILY)}
    with pytest.raises(validated.TableError, match='refusing to write'):
        validated.write_table(path, [FAMILY], [_entry('nope')])


@pytest.mark.parametrize('name,expected', [
    ('NVIDIA H100 80GB HBM3', 'H100 SXM'),
    ('NVIDIA H100 PCIe', 'H100 PCIe'),
    ('NVIDIA H100 NVL', 'H100 NVL'),
    ('NVIDIA H200', 'H200 SXM'),
    ('NVIDIA H200 NVL', 'H200 NVL'),
    ('NVIDIA GH200 480GB', 'GH200'),
    ('NVIDIA GH200 144G HBM3e', 'GH200'),
    ('NVIDIA A100-SXM4-80GB', 'A100 SXM'),
    ('NVIDIA A100 80GB PCIe', 'A100 PCIe'),
    ('NVIDIA L4', 'L4'),
])
def test_card_class_tells_the_boards_apart(name, expected):
    assert card_class(name) == expected


def test_gpu_family_and_peaks():
    assert gpu_family((9, 0), 'NVIDIA GH200 480GB') == 'sm90 GH200'
    assert gpu_family((9, 0), 'NVIDIA H200') == 'sm90 H200 SXM'
    assert card_peak('NVIDIA H200').bandwidth_gbs == 4800
    assert card_peak('NVIDIA GH200 480GB').bandwidth_gbs == 4000
    assert card_peak('NVIDIA GH200 144G HBM3e').bandwidth_gbs == 4900
    assert card_peak('NVIDIA H100 PCIe').bandwidth_gbs == 2000
    assert card_peak('NVIDIA L4') is None


@needs_interpreter
@pytest.mark.parametrize('validated_here', [False, True])
def test_table_lookup_compiles_without_a_graph_break(fake_cuda, validated_here):
    fake_cuda([_entry('gelu_tile_mul', k=None)] if validated_here else [])
    torch._dynamo.reset()
    fn = torch.compile(lambda v, c: K.gelu_tile_mul(v, c, True), fullgraph=True, backend='aot_eager')
    v, c = torch.randn(1, 3, 3, 8), torch.randn(1, 3, 3, 4)
    with K.use_backend('auto'):
        torch.testing.assert_close(fn(v, c), K.gelu_tile_mul_reference(v, c, True), atol=1e-5, rtol=1e-4)
        assert K.select_backend('gelu_tile_mul', [v, c]) == ('triton' if validated_here else 'torch')
    torch._dynamo.reset()
