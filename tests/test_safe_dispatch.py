"""``auto`` runs a Triton kernel on CUDA only for a validated (op, dtype, GPU family) entry; card identification;
the validated-kernel table's loader and writer."""
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


def test_auto_on_cuda_runs_the_reference_without_an_entry(fake_cuda):
    fake_cuda([{'op': op, 'dtype': 'bfloat16', 'gpu': FAMILY} for op in validated.OPS]  # other dtype
              + [{'op': op, 'dtype': 'float32', 'gpu': 'sm90 GH200'} for op in validated.OPS])  # other card
    with K.use_backend('auto'):
        for op, tensors, call in _op_calls():
            assert K.select_backend(op, tensors) == 'torch', op
            assert _custom_op_calls(call) == 0, op
    with K.use_backend('triton'):  # forcing ignores the table
        for op, tensors, _ in _op_calls():
            assert K.select_backend(op, tensors) == 'triton', op


@needs_interpreter
def test_auto_on_cuda_runs_the_kernel_with_an_entry(fake_cuda):
    calls = _op_calls()
    fake_cuda([{'op': op, 'dtype': 'float32', 'gpu': FAMILY} for op, _, _ in calls])
    with K.use_backend('auto'):
        for op, tensors, call in calls:
            assert K.select_backend(op, tensors) == 'triton', op
            assert _custom_op_calls(call) >= 1, op
    fake_cuda([{'op': 'dwconv_gelu', 'dtype': 'float32', 'gpu': FAMILY}])  # only one op validated
    with K.use_backend('auto'):
        assert [K.select_backend(op, t) for op, t, _ in calls] == ['torch', 'triton', 'torch', 'torch']
    with K.use_backend('torch'):
        assert all(K.select_backend(op, t) == 'torch' for op, t, _ in calls)


def test_auto_on_cuda_still_falls_back_for_unsupported_inputs(fake_cuda):
    fake_cuda([{'op': 'dwconv_gelu', 'dtype': 'float32', 'gpu': FAMILY}])
    with K.use_backend('auto'):
        assert K.select_backend('dwconv_gelu', [torch.randn(1, 2, 3, 3, dtype=torch.float64)]) == 'torch'


@pytest.mark.parametrize('content,problem', [
    ('{"entries": [', 'not valid JSON'),
    ('[]', 'expected an object with an "entries" list'),
    ('{"entries": [{"op": "focal", "dtype": "float32", "gpu": "sm90 H200 SXM"}]}', "entry 0 has op 'focal'"),
    ('{"entries": [{"op": "dwconv_gelu", "dtype": "fp32", "gpu": "sm90 H200 SXM"}]}', "has dtype 'fp32'"),
    ('{"entries": [{"op": "dwconv_gelu", "dtype": "float32", "gpu": "H200"}]}', "has gpu 'H200'"),
])
def test_malformed_table_fails_with_one_clear_line(fake_cuda, monkeypatch, tmp_path, content, problem):
    path = tmp_path / 'bad.json'
    path.write_text(content)
    monkeypatch.setenv(validated.TABLE_ENV_VAR, str(path))
    with K.use_backend('auto'), pytest.raises(validated.TableError) as info:
        K.select_backend('dwconv_gelu', [torch.randn(1, 2, 3, 3)])
    message = str(info.value)
    assert problem in message and str(path) in message and 'gpu_check.py' in message and '\n' not in message


def test_missing_table_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv(validated.TABLE_ENV_VAR, str(tmp_path / 'absent.json'))
    with pytest.raises(validated.TableError, match='cannot read it'):
        validated.validated_keys()


def test_write_table_replaces_only_the_measured_cards(tmp_path):
    path = str(tmp_path / 'table.json')
    old = [{'op': 'dwconv_gelu', 'dtype': 'float32', 'gpu': 'sm90 H100 SXM'},
           {'op': 'dwconv_gelu', 'dtype': 'float32', 'gpu': FAMILY}]
    validated.write_table(path, ['sm90 H100 SXM', FAMILY], old)
    validated.write_table(path, [FAMILY], [{'op': 'focal_context', 'dtype': 'bfloat16', 'gpu': FAMILY}])
    keys = {(e['op'], e['dtype'], e['gpu']) for e in validated.load_table(path)}
    assert keys == {('dwconv_gelu', 'float32', 'sm90 H100 SXM'), ('focal_context', 'bfloat16', FAMILY)}
    with pytest.raises(validated.TableError, match='refusing to write'):
        validated.write_table(path, [FAMILY], [{'op': 'nope', 'dtype': 'float32', 'gpu': FAMILY}])


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
    fake_cuda([{'op': 'dwconv_gelu', 'dtype': 'float32', 'gpu': FAMILY}] if validated_here else [])
    torch._dynamo.reset()
    fn = torch.compile(lambda x, w: K.dwconv_gelu(x, w, None), fullgraph=True, backend='aot_eager')
    x, w = torch.randn(1, 4, 5, 5), torch.randn(4, 1, 3, 3) / 3
    with K.use_backend('auto'):
        torch.testing.assert_close(fn(x, w), K.dwconv_gelu_reference(x, w, None), atol=1e-5, rtol=1e-4)
        assert K.select_backend('dwconv_gelu', [x, w]) == ('triton' if validated_here else 'torch')
    torch._dynamo.reset()
