"""modzoo.bench.report: the one writer of the bench tools' tables, JSON results and marked blocks."""
import json
import os

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
