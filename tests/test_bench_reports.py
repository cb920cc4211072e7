"""modzoo.bench.report: the one writer of the bench tools' tables, JSON results and marked blocks."""
import json
import os

import pytest

from modzoo.bench import report, static_report
from modzoo.utils.marked_blocks import BENCHMARKS, REPO_ROOT

STATIC_RUNS = os.path.join(REPO_ROOT, 'docs', 'kernel_static')


def test_markdown_table_lines():
    lines = report.markdown_table(['a', 'b', ''], [[1, '`x`', ''], ['2.0', '**y**', 'z']])
    assert lines == ['| a | b | |', '|---|---|---|', '| 1 | `x` |  |', '| 2.0 | **y** | z |']


def test_write_report_writes_the_json_then_replaces_only_its_block(tmp_path):
    bench, results = tmp_path / 'BENCHMARKS.md', tmp_path / 'run.json'
    bench.write_text('# b\n\n<!-- x:start -->\nold\n<!-- x:end -->\n\n<!-- y:start -->\nkept\n<!-- y:end -->\n')
    report.write_report({'rows': [1.5]}, str(results), [report.Block(str(bench), '<!-- x:start -->',
                                                                     '<!-- x:end -->', 'new\ntext')])
    assert json.loads(results.read_text()) == {'rows': [1.5]}
    assert bench.read_text() == ('# b\n\n<!-- x:start -->\nnew\ntext\n<!-- x:end -->\n\n'
                                 '<!-- y:start -->\nkept\n<!-- y:end -->\n')
    assert sorted(os.listdir(tmp_path)) == ['BENCHMARKS.md', 'run.json']  # no temporary file left behind


def test_stored_static_runs_render_the_committed_section():
    """BENCHMARKS.md's static compile report is what the stored --json runs render: the renderer is unchanged."""
    def rows(name):
        with open(os.path.join(STATIC_RUNS, name)) as f:
            return json.load(f)

    baselines = [('before (76320ad), Triton 3.8.0', rows('76320ad-triton3.8.0.json')),
                 ('before (76320ad), Triton 3.6.0', rows('76320ad-triton3.6.0.json')),
                 ('now (4fc2b60), Triton 3.6.0', rows('4fc2b60-triton3.6.0.json'))]
    table = static_report.markdown(rows('4fc2b60-triton3.8.0.json'), baselines, 'now (4fc2b60), Triton 3.8.0')
    with open(BENCHMARKS) as f:
        committed = f.read()
    assert f'{table}\n{static_report.END}' in committed


# ---------------------------------------------------------------------------------------------------------------------
# what is rendered is escaped; a marked block cannot swallow its neighbours

INJECTED = '# pwned <b>raw</b> | <!-- kernels:end -->\n## heading'


def test_escape_keeps_a_value_on_its_line_as_text():
    assert report.escape(INJECTED) == \
        r'\# pwned &lt;b&gt;raw&lt;/b&gt; \| &lt;!-- kernels:end --&gt; ## heading'
    assert report.markdown_table(['a'], [[INJECTED]])[2].count('|') == 3  # the cell's bar is escaped, not a column


def test_marked_blocks_refuse_an_inner_or_doubled_marker():
    from modzoo.utils.marked_blocks import replace_marked
    start, end = '<!-- x:start -->', '<!-- x:end -->'
    with pytest.raises(ValueError, match='inside'):
        replace_marked('', start, end, f'{start}\n{end}\nleft over\n{end}')
    with pytest.raises(ValueError, match='more than once'):
        replace_marked(f'{start}\na\n{end}\nleft over\n{end}\n', start, end, f'{start}\nb\n{end}')


# ---------------------------------------------------------------------------------------------------------------------
# tools/gpu_check.py --from-json: the saved run is parsed against a schema before anything is written


def _gpu_run(**changes):
    case = dict(op='dwconv_gelu', case='EfficientMod-s s1 32x56² k7', stage=1, dtype='bfloat16')
    run = dict(
        card='NVIDIA H100 80GB HBM3', gpu_family='sm90 H100 SXM', dry_run=False, torch='2.11.0+cu130',
        triton='3.6.0', date='2026-12-01', elapsed_s=300.0, finished=True, stopped_at_deadline=False,
        environment={'python': '3.11.7'}, peak={'bandwidth_gbs': 3350, 'fp32_tflops': 66.9}, copy_gbs=2900.0,
        settings=dict(deadline_s=400.0, batch=8, resolution=224, e2e_batch=16, e2e_resolution=224),
        correctness=[dict(case, layout='channels_last', kernel_sizes=[7], arg_dtypes=['bfloat16', 'float32',
                     'float32'], fused_err=1e-3, eager_err=2e-3, correct=True, deterministic=True, first_call_s=2.5)],
        timing=[dict(case, eager_fwd_ms=2.0, fused_fwd_ms=1.0, eager_fwdbwd_ms=4.0, fused_fwdbwd_ms=2.0,
                     eager_fwdbwd_mib=float('nan'))],
        e2e=[dict(model='zoo_efficientmod_s', kernels='torch', step_ms=20.0, img_s=800.0, peak_gib=3.0,
                  kernel_calls=0)],
        compile=[], skipped=[], plan=[], errors=[], command='PYTHONPATH=$PWD python tools/gpu_check.py --out DIR')
    run.update(changes)
    return run


@pytest.fixture
def gpu_outputs(tmp_path):
    bench, table = tmp_path / 'BENCHMARKS.md', tmp_path / 'table.json'
    bench.write_text('# b\n\n<!-- kernels:start -->\nold\n<!-- kernels:end -->\n\n<!-- x:start -->\nkept\n'
                     '<!-- x:end -->\n')
    table.write_text('{"written_by": "tools/gpu_check.py", "entries": []}\n')
    return bench, table


def _from_json(path, bench, table, capsys):
    from modzoo.bench import gpu_check
    rc = gpu_check.main(['--from-json', str(path), '--benchmarks', str(bench), '--table', str(table)])
    return rc, capsys.readouterr().err


def test_gpu_check_from_json_writes_a_valid_run(tmp_path, gpu_outputs, capsys):
    bench, table = gpu_outputs
    (tmp_path / 'run.json').write_text(json.dumps(_gpu_run()))
    rc, err = _from_json(tmp_path / 'run.json', bench, table, capsys)
    assert rc == 0 and err == ''
    assert '| dwconv_gelu | bfloat16 | channels_last | 7-7 | 1 | yes |' in bench.read_text()
    assert [e['gpu'] for e in json.loads(table.read_text())['entries']] == ['sm90 H100 SXM']


def test_gpu_check_renders_what_it_read_as_text(tmp_path, gpu_outputs, capsys):
    """A card name, an environment value, an error and a skipped step holding a heading, raw HTML and the section's
    own end marker render escaped; a later clean render replaces the whole section."""
    bench, table = gpu_outputs
    bad = _gpu_run(card='NVIDIA H100 80GB HBM3 ' + INJECTED, environment={'python': INJECTED}, skipped=[INJECTED])
    bad['correctness'].append(dict(bad['correctness'][0], case='other', error=INJECTED))
    (tmp_path / 'bad.json').write_text(json.dumps(bad))
    assert _from_json(tmp_path / 'bad.json', bench, table, capsys)[0] == 0
    text = bench.read_text()
    assert text.count('<!-- kernels:end -->') == 1 and '<b>' not in text
    assert not any(line.startswith(('# pwned', '## heading')) for line in text.splitlines())
    (tmp_path / 'clean.json').write_text(json.dumps(_gpu_run()))
    assert _from_json(tmp_path / 'clean.json', bench, table, capsys)[0] == 0
    assert 'pwned' not in bench.read_text() and 'kept' in bench.read_text()


BAD_RUNS = {
    'truncated': lambda: json.dumps(_gpu_run())[:200],
    'a JSON list': lambda: '[]',
    'an empty object': lambda: '{}',
    'a NaN timing': lambda: json.dumps(_gpu_run(timing=[dict(_gpu_run()['timing'][0], fused_fwd_ms=float('nan'))])),
    'correct as a string': lambda: json.dumps(_gpu_run(correctness=[dict(_gpu_run()['correctness'][0],
                                                                          correct='false')])),
    'a 0 ms timing': lambda: json.dumps(_gpu_run(timing=[dict(_gpu_run()['timing'][0], fused_fwdbwd_ms=0)])),
    'an unknown GPU family': lambda: json.dumps(_gpu_run(gpu_family='H100')),
    'a family of another card': lambda: json.dumps(_gpu_run(gpu_family='sm90 H200 SXM')),
    'an unknown op': lambda: json.dumps(_gpu_run(correctness=[dict(_gpu_run()['correctness'][0], op='conv')])),
}


@pytest.mark.parametrize('what', sorted(BAD_RUNS))
def test_gpu_check_from_json_refuses_a_bad_run_before_writing(tmp_path, gpu_outputs, capsys, what):
    bench, table = gpu_outputs
    before = bench.read_bytes(), table.read_bytes()
    (tmp_path / 'run.json').write_text(BAD_RUNS[what]())
    rc, err = _from_json(tmp_path / 'run.json', bench, table, capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and 'Traceback' not in err, err
    assert err.startswith('gpu_check.py: ') and 'run.json' in err
    assert (bench.read_bytes(), table.read_bytes()) == before


def test_gpu_check_checks_its_outputs_first(tmp_path, gpu_outputs, capsys):
    bench, table = gpu_outputs
    (tmp_path / 'run.json').write_text(json.dumps(_gpu_run()))
    before = bench.read_bytes()
    assert _from_json(tmp_path / 'run.json', tmp_path, table, capsys) == (2, f'gpu_check.py: --benchmarks '
                                                                          f'{tmp_path} is a folder: pass a file path\n')
    table.write_text('not json')
    rc, err = _from_json(tmp_path / 'run.json', bench, table, capsys)
    assert rc == 2 and 'not valid JSON' in err and bench.read_bytes() == before and table.read_text() == 'not json'
    bench.write_text('<!-- kernels:start -->\na\n<!-- kernels:end -->\ninjected\n<!-- kernels:end -->\n')
    table.write_text('{"written_by": "tools/gpu_check.py", "entries": []}\n')
    rc, err = _from_json(tmp_path / 'run.json', bench, table, capsys)
    assert rc == 2 and 'more than once' in err and 'injected' in bench.read_text()


# ---------------------------------------------------------------------------------------------------------------------
# the CPU bench tools: a bad --from-json or --json is one line before any work; a failed model is a failed run

def _refused(main, argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith('error: '), err
    return err


@pytest.mark.parametrize('content', ['{"machine": "m", "results": [', '{}', '[]'])
def test_cpu_bench_tools_refuse_a_bad_from_json_in_one_line(tmp_path, capsys, content):
    from modzoo.bench import cpu_deploy, cpu_paths, onnx_runtime
    path = tmp_path / 'run.json'
    path.write_text(content)
    for main in (cpu_deploy.main, cpu_paths.main, onnx_runtime.main):
        assert str(path) in _refused(main, ['--from-json', str(path)], capsys)


def test_cpu_bench_tools_check_the_json_output_before_measuring(tmp_path, capsys, monkeypatch):
    from modzoo.bench import anchors, cpu_deploy, cpu_paths, gridpe, onnx_runtime, profile_graph, vs_timm
    for module in (cpu_deploy, onnx_runtime, anchors):
        monkeypatch.setattr(module, 'run_benchmarks', lambda *a: pytest.fail('measured before checking --json'))
    monkeypatch.setattr(gridpe, 'run', lambda *a: pytest.fail('measured before checking --json'))
    monkeypatch.setattr(vs_timm, 'bench_pair', lambda *a: pytest.fail('measured before checking --json'))
    monkeypatch.setattr(profile_graph, 'export_graph', lambda *a: pytest.fail('measured before checking --json'))
    (tmp_path / 'file').write_text('')
    for main in (cpu_deploy.main, cpu_paths.main, onnx_runtime.main, gridpe.main, vs_timm.main, anchors.main):
        assert 'is a folder' in _refused(main, ['--json', str(tmp_path)], capsys)
        assert 'file' in _refused(main, ['--json', str(tmp_path / 'file' / 'run.json')], capsys)
    assert 'is a folder' in _refused(profile_graph.main, ['zoo_smt_tiny', '--json', str(tmp_path)], capsys)


def test_results_into_a_folder_that_does_not_exist_yet(tmp_path):
    report.write_report({'a': 1}, str(tmp_path / 'new' / 'run.json'))  # the output check calls it creatable
    assert json.loads((tmp_path / 'new' / 'run.json').read_text()) == {'a': 1}


def test_cpu_deploy_refuses_size_0_and_fails_when_a_model_fails(tmp_path, capsys, monkeypatch):
    from modzoo.bench import cpu_deploy
    assert '--size' in _refused(cpu_deploy.main, ['--size', '0'], capsys)

    def fail(*args, **kwargs):
        raise RuntimeError('out of memory at batch 100000')
    monkeypatch.setattr(cpu_deploy, 'bench_model', fail)
    out = tmp_path / 'run.json'
    assert cpu_deploy.main(['zoo_efficientmod_xxs', '--paths', 'eager', '--load-retries', '0', '--json',
                            str(out)]) == 1
    assert 'FAILED zoo_efficientmod_xxs: failed: RuntimeError: out of memory' in capsys.readouterr().err
    assert json.loads(out.read_text())['skipped']['zoo_efficientmod_xxs'].startswith('failed')
