"""modzoo.bench.zoo_report (tools/zoo_report.py): the report, its plots and its measurement cache; and the committed
report covers the zoo."""
import json
import os

import pytest
import torch
from PIL import Image

import modzoo
from modzoo.bench import zoo_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODELS = ['zoo_efficientmod_xxs', 'zoo_focalnet_tiny_iso']


@pytest.fixture
def two_models(monkeypatch):
    monkeypatch.setattr(modzoo, 'list_models', lambda *a, **k: list(MODELS))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_report_measures_caches_and_plots(tmp_path, two_models, capsys):
    out = str(tmp_path)
    assert zoo_report.main(['--out-dir', out, '--onnx-size', '32']) == 0
    assert 'measured zoo_efficientmod_xxs' in capsys.readouterr().out
    md = open(os.path.join(out, 'zoo.md')).read()
    cache = json.load(open(os.path.join(out, 'zoo_measurements.json')))
    for name, paper_top1 in (('zoo_efficientmod_xxs', '77.1'), ('zoo_focalnet_tiny_iso', '74.1')):
        e = cache['models'][name]
        assert e['onnx']['passed'] and e['onnx']['max_abs_diff'] < 1e-4 and e['onnx']['size'] == 32
        assert e['gflops'] > 0.3 and e['throughput']['img_per_s'] > 0 and e['params_m'] > 4
        row = next(line for line in md.splitlines() if line.startswith(f'| `{name}`'))
        assert f'| {paper_top1} |' in row and 'pass' in row  # paper number from modzoo/data/reported
    # GFLOPs as fvcore counts them (the papers' FocalNet-T iso: 1.1; EfficientMod-xxs measured: 0.58)
    assert abs(cache['models']['zoo_focalnet_tiny_iso']['gflops'] - 1.1) < 0.05
    for plot in (zoo_report.PLOT_TOP1, zoo_report.PLOT_SPEED):
        with Image.open(os.path.join(out, plot)) as png:
            assert png.format == 'PNG'
        assert f']({plot})' in md

    # unchanged models are not measured again and the report is byte-identical
    assert zoo_report.main(['--out-dir', out, '--onnx-size', '32']) == 0
    assert '0 measured now' in capsys.readouterr().out
    assert open(os.path.join(out, 'zoo.md')).read() == md

    # a structural change (fingerprint) re-measures that model only; a budget leaves the rest marked, not filled
    cache['models']['zoo_focalnet_tiny_iso']['fingerprint'] = 'changed'
    with open(os.path.join(out, 'zoo_measurements.json'), 'w') as f:
        json.dump(cache, f)
    assert zoo_report.main(['--out-dir', out, '--onnx-size', '32', '--budget-s', '0']) == 0
    printed = capsys.readouterr().out
    assert 'measured' not in printed.replace('measured now', '') and '1 left for a later run' in printed
    md = open(os.path.join(out, 'zoo.md')).read()
    assert '**Not yet measured** (1): `zoo_focalnet_tiny_iso`' in md


def test_committed_report_covers_every_registered_model():
    md = open(os.path.join(ROOT, 'docs', 'zoo.md')).read()
    cache = json.load(open(os.path.join(ROOT, 'docs', 'zoo_measurements.json')))
    missing = [n for n in modzoo.list_models() if f'`{n}`' not in md or n not in cache['models']]
    assert not missing, f'docs/zoo.md is stale, run `python tools/zoo_report.py`: missing {missing}'
    assert 'Not yet measured' not in md
    for plot in (zoo_report.PLOT_TOP1, zoo_report.PLOT_SPEED):
        assert os.path.isfile(os.path.join(ROOT, 'docs', plot))
