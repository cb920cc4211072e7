"""modzoo.kernels.gpu_check.main (tools/gpu_check.py): the dry run (every step of the GPU run on tiny shapes under
the interpreter), the time budget, the validated-table verdicts and the command line's refusals."""
import copy
import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

import modzoo.kernels as K
from modzoo.kernels import gpu_check, validated

cli = gpu_check  # the command line (tools/gpu_check.py is a shim calling gpu_check.main)

pytestmark = [pytest.mark.triton,
              pytest.mark.skipif(not K.interpreter_enabled(), reason='the dry run needs TRITON_INTERPRET=1')]


def _digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope='module')
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('dry')
    committed = {p: _digest(p) for p in (cli.BENCHMARKS, validated.DEFAULT_TABLE)}
    rc = cli.main(['--dry-run', '--out', str(out)])
    assert {p: _digest(p) for p in committed} == committed  # never touches BENCHMARKS.md or the packaged table
    with open(out / 'gpu_check.json') as f:
        return rc, out, json.load(f)


def test_dry_run_runs_every_step(dry_run):
    rc, out, result = dry_run
    assert rc == 0 and result['dry_run'] and result['errors'] == [] and result['skipped'] == []
    assert {r['op'] for r in result['correctness']} == set(validated.OPS)
    assert all(r['correct'] and r['deterministic'] and r['first_call_s'] > 0 for r in result['correctness'])
    assert {r['op'] for r in result['timing']} == set(validated.OPS)
    for r in result['timing']:
        for impl in ('eager', 'compile', 'fused'):
            assert r[f'{impl}_fwd_ms'] > 0 and r[f'{impl}_fwdbwd_ms'] > 0
        assert r['compile_first_call_s'] > 0 and r['fwdbwd_fmas'] > 0 and r['fwdbwd_bytes'] > 0
    runs = {(r['model'], r['kernels']): r for r in result['e2e']}
    assert set(runs) >= {(m, 'torch') for m in gpu_check.E2E_MODELS} | {('zoo_efficientmod_s', 'triton')}
    assert runs[('zoo_efficientmod_s', 'triton')]['kernel_calls'] > 0
    assert runs[('zoo_efficientmod_s', 'torch')]['kernel_calls'] == 0
    # the table and the section were written into --out, through the same writers as a GPU run
    assert {e['gpu'] for e in validated.load_table(str(out / 'validated_kernels.json'))} <= {'sm00 dry run'}
    section = (out / 'BENCHMARKS.md').read_text()
    assert cli.START in section and 'Correctness' in section and 'Training steps' in section
    assert (out / 'kernels_section.md').read_text().strip() in section


def test_verdicts_need_correct_deterministic_complete_and_faster(dry_run):
    _, _, result = dry_run
    result = copy.deepcopy(result)
    result['gpu_family'] = 'sm90 H200 SXM'
    for r in result['timing']:
        r['eager_fwdbwd_ms'], r['fused_fwdbwd_ms'] = 2.0, 1.0
    by_op = {r['op']: r for r in result['correctness'] if r['dtype'] == 'bfloat16'}
    by_op['dwconv_gelu']['correct'] = False
    by_op['gelu_tile_mul']['deterministic'] = False
    next(r for r in result['timing'] if r['op'] == 'mixed_dwconv_interleave')['fused_fwdbwd_ms'] = 3.0
    entries, verdicts = gpu_check.validated_entries(result)
    assert [(e['op'], e['dtype'], e['gpu']) for e in entries] == [('focal_context', 'bfloat16', 'sm90 H200 SXM')]
    why = {v['op']: v['reason'] for v in verdicts}
    assert 'mismatch' in why['dwconv_gelu'] and 'backward passes differ' in why['gelu_tile_mul']
    assert 'not faster than eager' in why['mixed_dwconv_interleave']
    result['timing'] = result['timing'][1:]  # a shape the budget skipped: no entry for that op
    assert 'shapes timed' in {v['op']: v['reason'] for v in gpu_check.validated_entries(result)[1]}['focal_context']


def test_from_json_writes_the_section_and_replaces_only_this_cards_entries(dry_run, tmp_path):
    _, _, result = dry_run
    fake = dict(copy.deepcopy(result), dry_run=False, gpu_family='sm90 H200 SXM', card='NVIDIA H200')
    fake['entries'] = [dict(op='focal_context', dtype='bfloat16', gpu='sm90 H200 SXM')]
    run = tmp_path / 'gpu_check.json'
    run.write_text(json.dumps(fake))
    table, bench = tmp_path / 'table.json', tmp_path / 'BENCHMARKS.md'
    validated.write_table(str(table), ['sm90 H100 SXM'], [dict(op='dwconv_gelu', dtype='float32', gpu='sm90 H100 SXM')])
    bench.write_text(f'# b\n\n{cli.START}\nold\n{cli.END}\n\n<!-- other:start -->\nkept\n<!-- other:end -->\n')
    assert cli.main(['--from-json', str(run), '--table', str(table), '--benchmarks', str(bench)]) == 0
    assert {e['gpu'] for e in validated.load_table(str(table))} == {'sm90 H100 SXM', 'sm90 H200 SXM'}
    text = bench.read_text()
    assert 'old' not in text and 'kept' in text and 'NVIDIA H200' in text


def test_budget_skips_and_says_so(tmp_path):
    result = gpu_check.run_check(gpu_check.Settings.for_dry_run(budget_s=0.0, e2e_models=()), log=lambda s: None)
    assert result['correctness'] == result['timing'] == [] and len(result['skipped']) == 8
    assert all('only 0 of 1 shapes checked' in v['reason'] for v in result['verdicts'])
    assert 'Skipped by the time budget' in gpu_check.report_markdown(result, 'cmd')


def test_command_line_refusals(dry_run, tmp_path, capsys):
    _, out, _ = dry_run
    assert cli.main(['--dry-run', '--table', str(tmp_path / 't.json')]) == 2
    assert cli.main(['--from-json', str(out / 'gpu_check.json')]) == 2  # a dry run's timings are never written
    assert cli.main(['--from-json', str(tmp_path / 'absent.json')]) == 2
    if not torch.cuda.is_available():
        assert cli.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 3 and all(line.startswith('gpu_check.py: ') for line in err)


def test_a_torch_compile_failure_costs_only_its_column(monkeypatch):
    settings = gpu_check.Settings.for_dry_run(ops=('gelu_tile_mul',))
    case = gpu_check.build_cases(settings, 2)[0]

    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError('inductor fell over')
        return call
    monkeypatch.setattr(torch, 'compile', broken)
    row = gpu_check.time_case(case, 'bfloat16', torch.device('cpu'), settings, None, 0)
    assert 'inductor fell over' in row['compile_error'] and 'compile_fwd_ms' not in row
    assert row['eager_fwdbwd_ms'] > 0 and row['fused_fwdbwd_ms'] > 0
    result = dict(card='c', gpu_family='sm00 dry run', torch='t', triton='t', date='d', elapsed_s=1.0, peak=None,
                  copy_gbs=None, settings=dict(vars(settings)), correctness=[], verdicts=[], e2e=[], timing=[row],
                  skipped=[])
    timing_row = next(line for line in gpu_check.report_markdown(result, 'cmd').splitlines()
                      if line.startswith('| gelu_tile_mul |'))
    assert ' / – / ' in timing_row  # eager / compile (missing) / fused


def test_command_line_dry_run_sets_the_interpreter_itself(tmp_path):
    """``tools/gpu_check.py --dry-run`` from a shell without TRITON_INTERPRET: Triton is imported with modzoo (by
    timm), before the flag could be set, so the check reruns itself with it (a budget of 0 skips the steps)."""
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tools', 'gpu_check.py')
    proc = subprocess.run([sys.executable, tool, '--dry-run', '--budget-s', '0', '--out', str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / 'gpu_check.json').read_text())
    assert result['dry_run'] and result['gpu_family'] == 'sm00 dry run' and result['errors'] == []
