"""modzoo.bench.gpu_check (tools/gpu_check.py): the dry run (every step of the GPU run on tiny shapes under the
interpreter, the CUDA timer behind a stand-in), results written after every step, the deadline, the verdicts per
(op, dtype, layout, kernel sizes), the command line from a bare checkout without the optional packages."""
import copy
import hashlib
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

import modzoo.kernels as K
from modzoo.bench import gpu_check, gpu_probe
from modzoo.bench import gpu_check as cli
from modzoo.kernels import validated

pytestmark = [pytest.mark.triton,
              pytest.mark.skipif(not K.interpreter_enabled(), reason='the dry run needs TRITON_INTERPRET=1')]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_FILES = {'gpu_check.json', 'kernels_section.md', 'validated_kernels.json', 'gpu_check.log'}


def _digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope='module')
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('dry')
    (out / 'BENCHMARKS.md').write_text('a file of the user that happens to be in --out\n')
    committed = {p: _digest(p) for p in (cli.BENCHMARKS, validated.DEFAULT_TABLE, str(out / 'BENCHMARKS.md'))}
    rc = cli.main(['--dry-run', '--out', str(out)])
    # never touches BENCHMARKS.md, the packaged table, nor a file --out does not document
    assert {p: _digest(p) for p in committed} == committed
    with open(out / 'gpu_check.json') as f:
        return rc, out, json.load(f)


def test_dry_run_runs_every_step_in_order(dry_run):
    rc, out, result = dry_run
    assert rc == 0 and result['dry_run'] and result['finished'] and not result['stopped_at_deadline']
    assert result['errors'] == [] and result['skipped'] == [] and result['steps_done'] == len(result['plan'])
    assert OUT_FILES | {'BENCHMARKS.md'} == set(os.listdir(out))
    # bf16 op by op, then the training steps, then fp32, then torch.compile
    kinds = [w.split()[0] for w in result['plan']]
    assert kinds == ['check', 'time'] * 4 + ['train'] * 7 + ['check', 'time'] * 4 + ['torch.compile'] * 8
    assert [r['dtype'] for r in result['correctness']] == ['bfloat16'] * 4 + ['float32'] * 4
    for r in result['correctness']:
        assert r['correct'] and r['deterministic'] and r['first_call_s'] > 0, r
    by_op = {r['op']: r for r in result['correctness'] if r['dtype'] == 'bfloat16'}
    assert by_op['focal_context']['layout'] == 'last_dim_contiguous'
    assert by_op['focal_context']['kernel_sizes'] == [3, 5]
    assert by_op['dwconv_gelu']['layout'] == 'channels_last'
    assert by_op['dwconv_gelu']['arg_dtypes'] == ['bfloat16', 'float32', 'float32']  # fp32 weights under autocast
    assert by_op['mixed_dwconv_interleave']['kernel_sizes'] == [3, 5, 7, 9]
    for r in result['timing']:
        assert r['eager_fwd_ms'] > 0 and r['fused_fwdbwd_ms'] > 0 and r['fwdbwd_fmas'] > 0
    assert all(r['compile_first_call_s'] > 0 and r['compile_fwdbwd_ms'] > 0 for r in result['compile'])
    runs = {(r['model'], r['kernels']): r for r in result['e2e']}
    assert set(runs) == {(m, 'torch') for m in gpu_check.E2E_MODELS} | {(m, 'triton') for m in gpu_check.E2E_MODELS[:3]}
    for model in gpu_check.E2E_MODELS[:3]:  # FocalNet, EfficientMod and SMT end to end with the kernels forced
        assert runs[(model, 'triton')]['kernel_calls'] > 0 and runs[(model, 'torch')]['kernel_calls'] == 0
    assert result['environment']['torch'] == torch.__version__ and result['copy_gbs'] > 0
    section = (out / 'kernels_section.md').read_text()
    assert section.startswith('## Fused kernels') and 'Training steps' in section and '**stopped' not in section
    assert {e['gpu'] for e in validated.load_table(str(out / 'validated_kernels.json'))} <= {'sm00 dry run'}
    assert 'check  focal_context' in (out / 'gpu_check.log').read_text()


def _as_gpu_run(result):
    result = copy.deepcopy(result)
    result['gpu_family'], result['card'] = 'sm90 H200 SXM', 'NVIDIA H200'
    for r in result['timing']:
        r['eager_fwd_ms'], r['fused_fwd_ms'], r['eager_fwdbwd_ms'], r['fused_fwdbwd_ms'] = 2.0, 1.0, 4.0, 2.0
    return result


def test_verdicts_per_op_dtype_layout_and_kernel_sizes(dry_run):
    result = _as_gpu_run(dry_run[2])
    bf16 = {r['op']: r for r in result['correctness'] if r['dtype'] == 'bfloat16'}
    bf16['dwconv_gelu']['correct'] = False
    bf16['gelu_tile_mul']['deterministic'] = False
    timing = {(r['op'], r['dtype']): r for r in result['timing']}
    timing[('mixed_dwconv_interleave', 'bfloat16')]['fused_fwd_ms'] = 3.0  # faster fwd+bwd, slower forward
    timing[('focal_context', 'float32')]['fused_fwdbwd_ms'] = 5.0          # faster forward, slower fwd+bwd
    entries, verdicts = gpu_check.validated_entries(result)
    keys = {(e['op'], e['dtype']) for e in entries}
    assert keys == {('focal_context', 'bfloat16'), ('dwconv_gelu', 'float32'), ('gelu_tile_mul', 'float32'),
                    ('mixed_dwconv_interleave', 'float32')}
    why = {(v['op'], v['dtype']): v['reason'] for v in verdicts}
    assert 'mismatch' in why[('dwconv_gelu', 'bfloat16')] and 'differ' in why[('gelu_tile_mul', 'bfloat16')]
    assert 'slower than eager' in why[('mixed_dwconv_interleave', 'bfloat16')] and 'forward' in \
        why[('mixed_dwconv_interleave', 'bfloat16')]
    assert 'fwd+bwd' in why[('focal_context', 'float32')]
    entry = next(e for e in entries if e['op'] == 'focal_context')
    assert (entry['layout'], entry['k_min'], entry['k_max']) == ('last_dim_contiguous', 3, 5)
    assert entry['triton'] == result['triton'] and entry['torch'] == result['torch'] and len(entry['shapes']) == 1
    tile = next(e for e in entries if e['op'] == 'gelu_tile_mul')
    assert tile['k_min'] is None and tile['dtypes'] == ['float32', 'float32']
    mixed = next(e for e in entries if e['op'] == 'mixed_dwconv_interleave')
    assert (mixed['layout'], mixed['k_min'], mixed['k_max']) == ('channels_last', 3, 9)
    validated.write_table(str(dry_run[1] / 'entries.json'), ['sm90 H200 SXM'], entries)  # the schema takes them
    # a shape checked but not timed is not covered; with none timed there is no entry
    result['timing'] = [r for r in result['timing'] if r['op'] != 'focal_context']
    why = {(v['op'], v['dtype']): v['reason'] for v in gpu_check.validated_entries(result)[1]}
    assert why[('focal_context', 'bfloat16')] == 'no checked shape was timed'


def test_a_crash_keeps_that_op_on_the_reference_and_the_run_goes_on(dry_run):
    result = _as_gpu_run(dry_run[2])
    row = next(r for r in result['correctness'] if r['op'] == 'dwconv_gelu')
    for k in ('fused_err', 'eager_err', 'correct', 'deterministic', 'first_call_s'):
        del row[k]
    row['error'] = 'InterpreterError: TypeError(...)'
    entries, verdicts = gpu_check.validated_entries(result)
    assert ('dwconv_gelu', 'bfloat16') not in {(e['op'], e['dtype']) for e in entries}
    assert next(v for v in verdicts if v['op'] == 'dwconv_gelu')['reason'].startswith('crashed')
    assert '**ERROR** InterpreterError' in gpu_check.report_markdown(result, 'cmd')


def test_from_json_writes_the_section_and_replaces_only_this_cards_entries(dry_run, tmp_path):
    fake = dict(_as_gpu_run(dry_run[2]), dry_run=False)
    run = tmp_path / 'gpu_check.json'
    run.write_text(json.dumps(fake))
    table, bench = tmp_path / 'table.json', tmp_path / 'BENCHMARKS.md'
    other = dict(next(iter(gpu_check.validated_entries(fake)[0])), gpu='sm90 H100 SXM')
    validated.write_table(str(table), ['sm90 H100 SXM'], [other])
    bench.write_text(f'# b\n\n{cli.START}\nold\n{cli.END}\n\n<!-- other:start -->\nkept\n<!-- other:end -->\n')
    assert cli.main(['--from-json', str(run), '--table', str(table), '--benchmarks', str(bench)]) == 0
    assert {e['gpu'] for e in validated.load_table(str(table))} == {'sm90 H100 SXM', 'sm90 H200 SXM'}
    text = bench.read_text()
    assert 'old' not in text and 'kept' in text and 'NVIDIA H200' in text


def test_steps_that_would_start_late_are_skipped_and_listed():
    settings = gpu_check.Settings.for_dry_run(deadline_s=0.0)
    result = gpu_check.run_check(settings, started=time.time())
    assert result['correctness'] == result['timing'] == result['e2e'] == [] and result['finished']
    assert result['skipped'] == result['plan'] and len(result['plan']) == 31
    assert 'Not run (the deadline' in gpu_check.report_markdown(result, 'cmd')


def test_the_deadline_writes_what_was_measured_while_a_step_runs(tmp_path):
    """The watchdog, fired while the third step runs: the files in --out hold the first two steps, marked stopped,
    the rest listed as not run, and the process would exit with status 0."""
    settings = gpu_check.Settings.for_dry_run(dtypes=('float32',), e2e_models=(), use_compile=False,
                                              ops=('gelu_tile_mul', 'dwconv_gelu'))
    recorder = gpu_check.Recorder(str(tmp_path), 'cmd', time.time())
    exits = []

    class Exited(Exception):
        pass

    timer = gpu_check.stop_at_deadline(recorder, 3600, lambda r: recorder._write(r, str(tmp_path)), exits.append)
    timer.cancel()
    save = recorder.save

    def save_then_fire(result):
        save(result)
        if result['steps_done'] == 2:
            watchdog = threading.Thread(target=timer.function)
            watchdog.start()
            watchdog.join()
            raise Exited  # what os._exit would do to the step loop
    recorder.save = save_then_fire
    with pytest.raises(Exited):
        gpu_check.run_check(settings, recorder, started=recorder.started)
    assert exits == [0]
    with open(tmp_path / 'gpu_check.json') as f:
        result = json.load(f)
    assert result['stopped_at_deadline'] and result['steps_done'] == 2 and len(result['correctness']) == 1
    assert result['skipped'] == result['plan'][2:]
    section = (tmp_path / 'kernels_section.md').read_text()
    assert 'stopped at the deadline' in section and 'gelu_tile_mul' in section


def test_cuda_timer_logic_behind_a_stand_in():
    calls = []
    cuda = gpu_probe.CpuStandIn()
    ms, graphed = gpu_probe.measure_ms(cuda, torch.device('cpu'), calls.append, 2, graph_calls=4, replays=3)
    assert graphed and ms >= 0 and cuda.counts['capture'] == 1 and cuda.counts['side_stream'] == 1
    assert cuda.counts['replay'] == 1 + 3 and cuda.counts['event'] == 2 * 3
    assert len(calls) == 3 + 4  # the warm-up on the side stream, then the captured calls
    calls.clear()
    cuda = gpu_probe.CpuStandIn(fail_capture=True)
    ms, graphed = gpu_probe.measure_ms(cuda, torch.device('cpu'), calls.append, 1, graph_calls=4, replays=3)
    assert not graphed and cuda.counts['replay'] == 0 and len(calls) == 3 + 4 * (1 + 3)  # timed as launches
    assert gpu_probe.peak_mib(cuda, torch.device('cpu'), lambda: None) == 0.0
    assert gpu_probe.copy_bandwidth_gbs(cuda, torch.device('cpu'), 1024, 2, 2) > 0


def test_a_torch_compile_failure_costs_only_its_row(monkeypatch):
    settings = gpu_check.Settings.for_dry_run(ops=('gelu_tile_mul',))
    case = gpu_check.build_cases(settings, 2)[0]

    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError('inductor fell over')
        return call
    monkeypatch.setattr(torch, 'compile', broken)
    row = gpu_check.compile_case(case, 'bfloat16', torch.device('cpu'), settings, 0, gpu_probe.CpuStandIn())
    assert 'inductor fell over' in row['compile_error'] and 'compile_fwd_ms' not in row


def test_command_line_refusals(dry_run, tmp_path, capsys):
    _, out, _ = dry_run
    assert cli.main(['--dry-run', '--table', str(tmp_path / 't.json')]) == 2
    assert cli.main(['--from-json', str(out / 'gpu_check.json')]) == 2  # a dry run's timings are never written
    assert cli.main(['--from-json', str(tmp_path / 'absent.json')]) == 2
    if not torch.cuda.is_available():
        assert cli.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 3 and all(line.startswith('gpu_check.py: ') for line in err)


HIDDEN = ('fvcore', 'onnxslim', 'onnxconverter_common', 'mmcv', 'mmengine', 'mmseg', 'mmdet')


def test_documented_command_from_a_bare_checkout_without_optional_packages(tmp_path):
    """``PYTHONPATH=$PWD python tools/gpu_check.py`` (tools/ first on sys.path) with the packages the lent GPU lacks
    hidden: --help names the command; a dry run with a short deadline exits 0 by itself and leaves valid JSON and
    the section in --out."""
    hide = tmp_path / 'hide'
    hide.mkdir()
    (hide / 'sitecustomize.py').write_text(
        'import sys\n'
        'class Hide:\n'
        f'    names = {HIDDEN!r}\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        '        if name.split(".")[0] in self.names:\n'
        '            raise ModuleNotFoundError(f"No module named {name!r}", name=name)\n'
        'sys.meta_path.insert(0, Hide())\n')
    env = dict(os.environ, PYTHONPATH=f'{hide}{os.pathsep}{ROOT}', TRITON_INTERPRET='1')
    tool = [sys.executable, os.path.join(ROOT, 'tools', 'gpu_check.py')]
    proc = subprocess.run(tool + ['--help'], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0 and gpu_check.COMMAND in proc.stdout, proc.stderr[-2000:]
    out = tmp_path / 'out'
    start = time.time()
    proc = subprocess.run(tool + ['--dry-run', '--deadline-s', '30', '--out', str(out)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert time.time() - start < 30 + 20
    assert proc.stdout.startswith('environment: ')  # versions first
    result = json.loads((out / 'gpu_check.json').read_text())
    # a warm inductor cache finishes the dry run inside 30 s; a cold one stops at the deadline with the rest listed
    assert result['dry_run'] and (result['finished'] or (result['stopped_at_deadline'] and result['skipped']))
    assert OUT_FILES <= set(os.listdir(out)) and '## Fused kernels' in (out / 'kernels_section.md').read_text()


def test_plan_and_the_readme_agree(capsys):
    """The README's step count and estimate for a GPU run are --plan's, at the default settings."""
    steps = gpu_check.plan(gpu_check.Settings())
    kinds = [s.kind for s in steps]
    assert kinds[:2] == ['check', 'time'] and kinds[-1] == 'compile'
    assert [s.case.op for s in steps[:8:2]] == list(validated.OPS)  # every op's first shape first
    low, high = gpu_check.estimate_s(steps)
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = ' '.join(f.read().split())
    assert f'`--plan` counts {len(steps)} steps ({kinds.count("check")} checks, {kinds.count("time")} timings, ' \
           f'{kinds.count("train")} training runs, {kinds.count("compile")} `torch.compile` rows)' in readme
    assert f'{round(low, -1):.0f}–{round(high, -1):.0f} s in all' in readme
    assert f'{len(gpu_check.plan(gpu_check.Settings.for_dry_run()))} steps, on tiny shapes' in readme
    assert cli.main(['--plan']) == 0 and f'{len(steps)} steps' in capsys.readouterr().out


def test_the_deadline_counts_from_the_process_start(monkeypatch):
    now = time.time()
    started = gpu_probe.process_start_time()
    assert started <= now and now - started < 24 * 3600
    monkeypatch.setenv(gpu_probe.START_ENV_VAR, repr(now - 5))  # a re-executed child counts from its parent's start
    assert gpu_probe.process_start_time() == now - 5
