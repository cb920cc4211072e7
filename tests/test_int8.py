"""int8 ONNX (static QDQ, ``modzoo.export.quantize`` and ``export_onnx.py --int8``), its calibration images, and the
load guard of the CPU benchmark tools (``modzoo.bench.common.LoadGuard``) with a stubbed load reading."""
import os

import numpy as np
import onnx
import pytest
from PIL import Image

from modzoo.bench import common as _bench_common
from modzoo.bench.common import LoadGuard, load_cell, load_note, vnni_description
from modzoo.export import quantize


def _export_tool():
    from modzoo.export import cli
    return cli


# ----------------------------------------------------------------------------------------------------------------
# load guard


class _Loads:
    """A stubbed 1-minute load average: the given readings in turn (the last one repeats)."""

    def __init__(self, *values):
        self.values, self.reads = list(values), 0

    def __call__(self):
        self.reads += 1
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


def test_load_guard_quiet_row_is_measured_once():
    calls, sleeps = [], []
    guard = LoadGuard(1.5, retries=2, read_load=_Loads(0.3, 0.9), sleep=sleeps.append)
    row = guard.measure(lambda: calls.append(1) or {'ms': 10.0})
    assert row == dict(ms=10.0, load_before=0.3, load_after=0.9, load_limit=1.5, loaded=False, attempts=1)
    assert len(calls) == 1 and not sleeps
    assert load_cell(row) == '0.3→0.9'


def test_load_guard_remeasures_a_busy_row_and_keeps_the_quiet_one():
    results = iter([{'ms': 30.0}, {'ms': 10.0}])
    sleeps = []
    guard = LoadGuard(1.5, retries=1, wait_s=7, read_load=_Loads(0.5, 2.4, 1.0, 1.2), sleep=sleeps.append)
    row = guard.measure(lambda: next(results))
    assert row['ms'] == 10.0 and row['attempts'] == 2 and not row['loaded'] and sleeps == [7]
    assert (row['load_before'], row['load_after']) == (1.0, 1.2)


def test_load_guard_marks_a_row_that_stays_busy():
    guard = LoadGuard(1.5, retries=2, read_load=_Loads(3.0), sleep=lambda s: None)
    rows = [guard.measure(lambda: {'ms': 1.0}), LoadGuard(1.5, read_load=_Loads(0.2)).measure(lambda: {'ms': 2.0})]
    assert rows[0]['loaded'] and rows[0]['attempts'] == 3
    assert load_cell(rows[0]) == '3.0→3.0 **LOADED**'
    note = load_note(rows)
    assert '1 of 2 rows' in note and 'LOADED' in note


def test_load_guard_allows_the_rows_own_threads():
    # a two-thread row puts two runnable threads on the machine itself: 2.3 is busy for one thread, not for two
    guard = LoadGuard(1.5, retries=0, read_load=_Loads(2.3))
    assert guard.measure(lambda: {}, threads=1)['loaded']
    row = guard.measure(lambda: {}, threads=2)
    assert not row['loaded'] and row['load_limit'] == 2.5
    # right after a two-thread row the average still carries its threads: 2.3 before a one-thread row is not
    # another job, 2.3 after it is
    for after, loaded in ((1.2, False), (2.3, True)):
        guard = LoadGuard(1.5, retries=0, read_load=_Loads(2.3, 2.3, 2.3, after))
        guard.measure(lambda: {}, threads=2)
        assert guard.measure(lambda: {}, threads=1)['loaded'] is loaded


def test_default_threshold_and_vnni(monkeypatch):
    monkeypatch.setattr(_bench_common.os, 'cpu_count', lambda: 2)
    assert _bench_common.default_load_threshold() == 1.5
    assert vnni_description({'avx512f', 'avx512_vnni'}) == 'AVX-512 VNNI present'
    assert vnni_description({'avx512f', 'avx2'}) == 'no VNNI (AVX-512 only)'


# ----------------------------------------------------------------------------------------------------------------
# calibration images


def _image_folder(root, per_class=3, size=(40, 30)):
    rng = np.random.default_rng(0)
    for c, name in enumerate(('cat', 'dog')):
        os.makedirs(root / name)
        for i in range(per_class):
            pixels = np.full(size[::-1] + (3,), 60 * c + 10 * i, np.uint8)
            pixels[0, 0] = rng.integers(0, 255, 3)
            image = Image.fromarray(pixels)
            (image.convert('L') if i == 0 else image).save(root / name / f'{i}.png')  # one greyscale image
    (root / 'cat' / 'notes.txt').write_text('not an image')


def test_image_folder_calibration_images(tmp_path):
    _image_folder(tmp_path)
    calib = quantize.load_calibration_images(str(tmp_path), (16, 24), mean=(0.5,) * 3, std=(0.5,) * 3)
    assert calib.images.shape == (6, 3, 16, 24) and calib.images.dtype == np.float32
    assert calib.classes == ['cat', 'dog'] and sorted(calib.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    # normalised: a uniform grey of 10/255 becomes (10/255 - 0.5) / 0.5 away from the corner pixel
    values = {round(float(v), 4) for v in calib.images[:, :, 8, 12].ravel()}
    assert round((10 / 255 - 0.5) / 0.5, 4) in values
    again = quantize.load_calibration_images(str(tmp_path), (16, 24), mean=(0.5,) * 3, std=(0.5,) * 3)
    np.testing.assert_array_equal(calib.images, again.images)  # one fixed shuffle

    calib_set, held_out = quantize.calibration_split(str(tmp_path), (16, 16), 4, 10)
    assert len(calib_set) == 4 and len(held_out) == 2
    every = quantize.load_calibration_images(str(tmp_path), (16, 16))
    np.testing.assert_array_equal(np.concatenate([calib_set.images, held_out.images]), every.images)


def test_image_folder_val_split_is_preferred(tmp_path):
    _image_folder(tmp_path / 'val', per_class=1)
    _image_folder(tmp_path / 'train', per_class=4)
    assert len(quantize.load_calibration_images(str(tmp_path), (8, 8))) == 2


def test_digits_calibration_images():
    calib, held_out = quantize.calibration_split(quantize.DIGITS, (32, 32), 20, 30)
    assert calib.images.shape == (20, 3, 32, 32) and len(held_out) == 30
    assert calib.classes == [str(i) for i in range(10)] and set(held_out.labels) <= set(range(10))
    # greyscale digits: the three channels agree before normalisation (ImageNet mean/std per channel)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    raw = calib.images * std[None, :, None, None] + mean[None, :, None, None]
    np.testing.assert_allclose(raw[:, 0], raw[:, 2], atol=1e-5)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5 and raw.max() > 0.9  # ink reaches white


@pytest.mark.parametrize('source,message', [('missing_dir', 'no directory'), ('empty', 'no images')])
def test_bad_calibration_folder(tmp_path, source, message):
    (tmp_path / 'empty' / 'class_a').mkdir(parents=True)
    with pytest.raises(quantize.InvalidExportInput, match=message):
        quantize.load_calibration_images(str(tmp_path / source), (8, 8))


def test_too_few_images_for_a_held_out_set(tmp_path):
    _image_folder(tmp_path, per_class=1)
    with pytest.raises(quantize.InvalidExportInput, match='lower --calib-images'):
        quantize.calibration_split(str(tmp_path), (8, 8), 2, 5)


# ----------------------------------------------------------------------------------------------------------------
# int8 export, one model per family at small size

FAMILY_SMALL = {
    'zoo_focalnet_tiny_srf': dict(embed_dim=16, depths=(1, 1, 2, 1)),
    'zoo_efficientmod_xxs': dict(embed_dim=(16, 24, 32, 48), depths=(1, 1, 2, 1), attention_depth=(0, 0, 1, 1)),
    'zoo_smt_tiny': dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 2, 1)),
    'zoo_gridpe_pvt_v2_b0': dict(depths=(1, 1, 1, 1), embed_dims=(16, 32, 48, 64), num_heads=(1, 2, 2, 4)),
}


def _kwargs_argv(kwargs):
    return [f'{k}={v!r}'.replace(' ', '') for k, v in kwargs.items()]


@pytest.mark.parametrize('name', sorted(FAMILY_SMALL))
def test_int8_export_and_check(name, tmp_path, capsys):
    out = tmp_path / 'm.onnx'
    argv = [name, '--img-size', '64', '64', '--num-classes', '10', '--int8', '--calib-data', 'digits',
            '--calib-images', '16', '--check-images', '32', '--check', '-o', str(out),
            '--model-kwargs'] + _kwargs_argv(FAMILY_SMALL[name])
    assert _export_tool().main(argv) == 0
    printed = capsys.readouterr().out
    int8_path = tmp_path / 'm-int8.onnx'
    assert out.is_file() and int8_path.is_file()
    assert 'int8 vs fp32 in ONNX Runtime (CPU EP) on 32 held-out images: top-1 agreement' in printed
    assert 'accuracy: fp32 top-1' in printed  # digits' 10 classes are the model's 10 classes

    graph = onnx.load(str(int8_path))
    producers = {o: n for n in graph.graph.node for o in n.output}
    ops = {n.op_type for n in graph.graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    dequantized_inputs = {}  # op type -> the input positions a DequantizeLinear feeds
    for n in graph.graph.node:
        for k, i in enumerate(n.input):
            if getattr(producers.get(i), 'op_type', '') == 'DequantizeLinear':
                dequantized_inputs.setdefault(n.op_type, set()).add(k)
    assert {0, 1} <= dequantized_inputs.get('Conv', set()) | dequantized_inputs.get('MatMul', set())
    # the float ops compute on float tensors: no int8 activation or weight feeds them (a LayerNorm's zero bias may be
    # the very initializer a quantized conv shares, as the exporter de-duplicates equal constants)
    assert not dequantized_inputs.get('LayerNormalization', set()) & {0, 1}
    assert not set(dequantized_inputs) & {'Softmax', 'Sigmoid', 'Einsum', 'Cos', 'Sin', 'Erf'}
    # weights stored as int8 per output channel: scales with one entry per channel
    per_channel = [n for n in graph.graph.node if n.op_type == 'DequantizeLinear' and
                   any(a.name == 'axis' for a in n.attribute)]
    assert per_channel

    fp32_mib, int8_mib = os.path.getsize(out) / 2 ** 20, os.path.getsize(int8_path) / 2 ** 20
    assert int8_mib < 0.6 * fp32_mib


def test_int8_agreement_on_a_small_model(tmp_path):
    """The agreement report's figures on a small FocalNet: near-identical logits on held-out digits."""
    import torch
    from modzoo.export import onnx as zoo_onnx
    torch.manual_seed(0)
    model = zoo_onnx.build_export_model('zoo_focalnet_tiny_srf', num_classes=10,
                                        model_kwargs=FAMILY_SMALL['zoo_focalnet_tiny_srf'])
    fp32 = zoo_onnx.export_onnx(model, tmp_path / 'f.onnx', img_size=(32, 32), batch=2, dynamic='batch')
    calib, held_out = quantize.calibration_split(quantize.DIGITS, (32, 32), 32, 64)
    result = quantize.quantize_onnx_int8(fp32.path, str(tmp_path / 'q.onnx'), calib.images)
    assert result.quantized_nodes > 0 and result.size_mib < result.fp32_size_mib
    report = quantize.compare_int8(fp32.path, result.path, held_out)
    assert report.images == 64
    # the report's figures are the two graphs' own: recompute them from the logits
    from modzoo.runtimes import open_session, run_batched
    ref, q = (run_batched(open_session(p), held_out.images, 8) for p in (fp32.path, result.path))
    assert report.mean_logit_error == pytest.approx(float(np.abs(q - ref).mean()), rel=1e-5)
    assert report.top1_agreement == pytest.approx(100.0 * float((q.argmax(-1) == ref.argmax(-1)).mean()))
    # random weights give near-tied logits (spread ~0.2), so int8 is judged against that spread, not by agreement
    with torch.no_grad():
        spread = float(model(torch.from_numpy(held_out.images)).std())
    assert report.mean_logit_error < 0.5 * spread and report.max_logit_error < 2 * spread
    assert report.int8_top1 is not None and report.fp32_top1 is not None
    # labels that are not the model's classes: no accuracy, and the report says why
    other = quantize.compare_int8(fp32.path, result.path, held_out, num_classes=1000)
    assert other.int8_top1 is None and 'not the model' in other.format()


def test_int8_cli_bad_input(tmp_path, capsys):
    tool = _export_tool()
    out = str(tmp_path / 'x.onnx')
    assert tool.main(['zoo_efficientmod_xxs', '--int8', '-o', out]) == 2
    assert '--calib-data' in capsys.readouterr().err
    assert tool.main(['zoo_efficientmod_xxs', '--calib-data', 'digits', '-o', out]) == 2
    assert 'only apply with --int8' in capsys.readouterr().err
    assert tool.main(['zoo_efficientmod_xxs', '--int8', '--fp16', '--calib-data', 'digits', '-o', out]) == 2
    assert tool.main(['zoo_efficientmod_xxs', '--int8', '--calib-data', str(tmp_path / 'nope'), '-o', out,
                      '--img-size', '32', '32']) == 2
    assert 'no directory' in capsys.readouterr().err
    assert not os.listdir(tmp_path)  # nothing written


def test_bench_tables_show_the_load_of_every_row():
    """A table that mixes a quiet and a loaded row says so on the row itself and under the table."""
    from modzoo.bench import onnx_runtime as bench_onnx
    quiet = dict(batch=1, threads=1, torch_ms=40.0, ort_ms=20.0, torch_img_s=25.0, ort_img_s=50.0, speedup=2.0,
                 torch_peak_mib=700, torch_model_mib=40, ort_peak_mib=100, ort_model_mib=50, load_before=0.4,
                 load_after=1.1, load_limit=1.5, loaded=False, attempts=1)
    busy = dict(quiet, threads=2, speedup=1.2, load_before=3.9, load_after=4.2, load_limit=2.5, loaded=True,
                attempts=2)
    run = dict(kind='latency', machine='test CPU', command='python tools/bench_onnx.py x', date='2026-01-01',
               skipped={}, results=[dict(model='zoo_x', size=224, rows=[quiet, busy], max_abs_diff=1e-6)])
    text = bench_onnx.render(run)
    lines = [line for line in text.splitlines() if line.startswith('| `zoo_x`')]
    assert lines[0].endswith('| 0.4→1.1 | 1.0e-06 |') and '| 3.9→4.2 **LOADED** |' in lines[1]
    assert '1 of 2 rows stayed above it' in text
    int8_row = dict(quiet, ort_int8_ms=10.0, ort_int8_img_s=100.0, ort_int8_peak_mib=80, ort_int8_model_mib=30)
    int8_run = dict(run, kind='int8', results=[dict(model='zoo_x', size=224, rows=[int8_row], max_abs_diff=0.01,
                                                    fp32_file_mib=17.0, int8_file_mib=4.6)])
    int8_text = bench_onnx.render(int8_run)
    assert '| 17.0 | 4.6 |' in int8_text and 'All 1 rows are within it.' in int8_text


def test_int8_leaves_the_working_directory_alone(tmp_path, monkeypatch):
    """ONNX Runtime's symbolic shape pass, when it fails (EfficientFormerV2, PVT), dumps ``sym_shape_infer_temp.onnx``
    and a uuid-named ``.data`` into the working directory; the quantizer runs its pre-pass in its staging folder."""
    import torch
    from onnxruntime.quantization import shape_inference
    from modzoo.export import onnx as zoo_onnx
    real = shape_inference.quant_pre_process

    def dumping_pre_pass(source, target, skip_symbolic_shape=False, **kwargs):
        if not skip_symbolic_shape:  # as ORT's pass does when the symbolic inference is incomplete
            open('sym_shape_infer_temp.onnx', 'w').close()
            raise RuntimeError('Incomplete symbolic shape inference')
        return real(source, target, skip_symbolic_shape=True, **kwargs)

    monkeypatch.setattr(shape_inference, 'quant_pre_process', dumping_pre_pass)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    zoo_onnx.export_onnx(model, tmp_path / 'f.onnx', img_size=(16, 16), batch=1, dynamic='batch')
    user_dir = tmp_path / 'cwd'
    user_dir.mkdir()
    monkeypatch.chdir(user_dir)
    images = np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32)
    result = quantize.quantize_onnx_int8('../f.onnx', 'q.onnx', images)
    assert os.listdir(user_dir) == ['q.onnx'] and result.quantized_nodes > 0
