"""What a GPU check run (:mod:`modzoo.bench.gpu_check`) concludes: the validated-table entries and verdicts, and the
kernel section of BENCHMARKS.md, both computed from the run's JSON alone (so ``--from-json`` and a run stopped at its
deadline give the same answer as a finished one). :func:`parse_result` checks a saved run before anything trusts it.
"""
import math
import re
from typing import Any, Dict, List, Optional, Tuple

from ..kernels.gpu_info import card_class
from ..kernels.validated import DTYPES, LAYOUTS, OPS, major_minor
from ..kernels import validated
from .report import Block, escape, markdown_table, write_report

__all__ = ['START', 'END', 'ResultError', 'parse_result', 'validated_entries', 'report_markdown', 'write_outputs']

START, END = '<!-- kernels:start -->', '<!-- kernels:end -->'


class ResultError(ValueError):
    """A saved GPU check run that does not hold what a run writes; the message names the field."""


def _require(ok: bool, where: str, expected: str) -> None:
    if not ok:
        raise ResultError(f'{where}: expected {expected}')


def _is_number(value: Any, minimum: float = 0.0, above: bool = False) -> bool:
    """A finite JSON number (not a boolean) at least ``minimum`` (greater, with ``above``)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (value > minimum if above else value >= minimum))


def _check_finite(value: Any, where: str) -> None:
    """Every number in the run is finite, except the memory peaks (``*_mib``, ``peak_gib``: NaN where unmeasured)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not (isinstance(item, float) and (key.endswith('_mib') or key == 'peak_gib')):
                _check_finite(item, f'{where}.{key}')
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, f'{where}[{i}]')
    else:
        _require(not isinstance(value, float) or math.isfinite(value), where, 'a finite number')


def _check_row(row: Any, where: str, strings: Dict[str, Any], numbers: Tuple[str, ...] = (),
               flags: Tuple[str, ...] = (), positive: Tuple[str, ...] = ()) -> None:
    """``strings``: key -> allowed values (None: any string); ``numbers`` >= 0, ``positive`` > 0, ``flags`` real
    booleans; a row with an ``error`` string needs only its strings."""
    _require(isinstance(row, dict), where, 'an object')
    for key, allowed in strings.items():
        _require(isinstance(row.get(key), str) and (allowed is None or row[key] in allowed), f'{where}.{key}',
                 f'one of {", ".join(allowed)}' if allowed else 'a string')
    if 'error' in row:
        _require(isinstance(row['error'], str), f'{where}.error', 'a string')
        return
    for key in numbers + positive:
        _require(_is_number(row.get(key), above=key in positive), f'{where}.{key}',
                 'a finite number above 0' if key in positive else 'a finite number >= 0')
    for key in flags:
        _require(isinstance(row.get(key), bool), f'{where}.{key}', 'true or false')


def _check_rows(result: dict) -> None:
    case = dict(op=OPS, case=None, dtype=DTYPES)
    for i, r in enumerate(result['correctness']):
        _check_row(r, f'correctness[{i}]', dict(case, layout=LAYOUTS), ('fused_err', 'eager_err', 'first_call_s'),
                   ('correct', 'deterministic'))
        _require(isinstance(r.get('kernel_sizes'), list) and all(
            isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in r['kernel_sizes']),
            f'correctness[{i}].kernel_sizes', 'a list of kernel sizes')
        _require('error' in r or (isinstance(r.get('arg_dtypes'), list) and r['arg_dtypes']
                                  and all(d in DTYPES for d in r['arg_dtypes'])),
                 f'correctness[{i}].arg_dtypes', f'a list of {", ".join(DTYPES)}')
    for i, r in enumerate(result['timing']):
        _check_row(r, f'timing[{i}]', case, positive=tuple(f'{impl}_{mode}_ms' for impl in ('eager', 'fused')
                                                           for mode in ('fwd', 'fwdbwd')))
    for i, r in enumerate(result['e2e']):
        _check_row(r, f'e2e[{i}]', dict(model=None, kernels=('torch', 'triton')), ('img_s', 'kernel_calls'),
                   positive=('step_ms',))
    for i, r in enumerate(result['compile']):
        _check_row(r, f'compile[{i}]', case)


def parse_result(data: Any) -> dict:
    """``data`` (a loaded ``gpu_check.json``) when it holds what a GPU check run writes: an object with finite
    numbers, real booleans, known ops, dtypes and layouts, and a GPU family that names its card; else
    :class:`ResultError`. The entries and verdicts are computed again from it (a file's own are not trusted)."""
    _require(isinstance(data, dict), 'the file', 'the JSON object gpu_check.py writes')
    for key, kind in (('card', str), ('gpu_family', str), ('date', str), ('torch', str), ('triton', str),
                      ('settings', dict), ('correctness', list), ('timing', list), ('e2e', list), ('compile', list),
                      ('skipped', list)):
        _require(isinstance(data.get(key), kind), key, f'a JSON {"object" if kind is dict else kind.__name__}')
    for key in ('dry_run', 'finished', 'stopped_at_deadline'):
        _require(isinstance(data.get(key), bool), key, 'true or false')
    _check_finite(data, 'the file')
    family = re.fullmatch(r'sm\d+ (.+)', data['gpu_family'])
    _require(data['dry_run'] or (family is not None and family.group(1) == card_class(data['card'])),
             'gpu_family', f'the family of its card {data["card"]!r} ("sm<capability> {card_class(data["card"])}")')
    for key in ('torch', 'triton'):
        _require(major_minor(data[key]) is not None, key, 'a version such as "3.6.0"')
    settings = data['settings']
    for key in ('deadline_s', 'batch', 'resolution', 'e2e_batch', 'e2e_resolution'):
        _require(_is_number(settings.get(key)), f'settings.{key}', 'a finite number')
    _require(_is_number(data.get('elapsed_s')), 'elapsed_s', 'a finite number of seconds')
    _require(data.get('peak') is None or (isinstance(data['peak'], dict) and all(
        _is_number(data['peak'].get(k), above=True) for k in ('bandwidth_gbs', 'fp32_tflops'))), 'peak',
        'null or the card\'s bandwidth_gbs and fp32_tflops')
    _require(data.get('copy_gbs') is None or _is_number(data['copy_gbs']), 'copy_gbs', 'null or a number')
    _require(isinstance(data.get('environment', {}), dict), 'environment', 'a JSON object')
    _require(all(isinstance(step, str) for step in data['skipped']), 'skipped', 'a list of step names')
    _check_rows(data)
    data['entries'], data['verdicts'] = validated_entries(data)
    return data


def _groups(result: dict) -> Dict[Tuple[str, str, str], List[dict]]:
    """Correctness rows by (op, activation dtype, layout), in the order they were checked."""
    groups: Dict[Tuple[str, str, str], List[dict]] = {}
    for r in result['correctness']:
        groups.setdefault((r['op'], r['dtype'], r['layout']), []).append(r)
    return groups


def validated_entries(result: dict) -> Tuple[List[dict], List[dict]]:
    """(table entries, one verdict per checked (op, dtype, layout)) of a run.

    An entry covers the shapes that were both checked and timed; it is written only when every checked shape of the
    group matched the fp64 reference and was deterministic, every covered shape was not slower than eager in the
    forward nor in forward+backward, and the tensors reached the dispatch with one tuple of dtypes. Its kernel-size
    range is that of the covered shapes.
    """
    timed = {(r['op'], r['case'], r['dtype']): r for r in result['timing']}
    entries, verdicts = [], []
    for (op, dtype, layout), checked in _groups(result).items():
        rows = [timed.get((r['op'], r['case'], r['dtype'])) for r in checked]
        covered = [(c, t) for c, t in zip(checked, rows, strict=True)
                   if 'error' not in c and t is not None and 'error' not in t]
        slower = [(c['case'], mode) for c, t in covered for mode in ('fwd', 'fwdbwd')
                  if t[f'fused_{mode}_ms'] > t[f'eager_{mode}_ms']]
        signatures = {tuple(c['arg_dtypes']) for c, _ in covered}
        if any('error' in c for c in checked):
            reason = 'crashed: ' + next(c['error'] for c in checked if 'error' in c)
        elif any(t is not None and 'error' in t for t in rows):
            reason = 'crashed while timed: ' + next(t['error'] for t in rows if t is not None and 'error' in t)
        elif not all(c['correct'] for c in checked):
            reason = 'mismatch against the fp64 reference at ' + next(c['case'] for c in checked if not c['correct'])
        elif not all(c['deterministic'] for c in checked):
            reason = 'two backward passes differ at ' + next(c['case'] for c in checked if not c['deterministic'])
        elif not covered:
            reason = 'no checked shape was timed'
        elif slower:
            reason = f'slower than eager at {slower[0][0]} ({"forward" if slower[0][1] == "fwd" else "fwd+bwd"})'
        elif len(signatures) != 1:
            reason = f'its tensors reached the dispatch with different dtypes: {sorted(signatures)}'
        else:
            reason = None
        ks = sorted({k for c, _ in covered for k in c['kernel_sizes']})
        shapes = [c['case'] for c, _ in covered]
        verdict = dict(op=op, dtype=dtype, layout=layout, k=f'{ks[0]}-{ks[-1]}' if ks else '–', shapes=shapes,
                       validated=reason is None)
        if reason is None:
            fwd = min(t['eager_fwd_ms'] / t['fused_fwd_ms'] for _, t in covered)
            fwdbwd = min(t['eager_fwdbwd_ms'] / t['fused_fwdbwd_ms'] for _, t in covered)
            untimed = len(checked) - len(covered)
            reason = (f'at least {fwd:.2f}x (forward) and {fwdbwd:.2f}x (fwd+bwd) eager\'s speed at every shape'
                      + (f'; {untimed} checked shape(s) not timed, not covered' if untimed else ''))
            entries.append(dict(op=op, dtype=dtype, gpu=result['gpu_family'], layout=layout,
                                dtypes=list(signatures.pop()), k_min=ks[0] if ks else None,
                                k_max=ks[-1] if ks else None, triton=result['triton'], torch=result['torch'],
                                shapes=shapes, card=result['card'], date=result['date'],
                                min_speedup_fwd=round(fwd, 3), min_speedup_fwdbwd=round(fwdbwd, 3)))
        verdict['reason'] = reason
        verdicts.append(verdict)
    return entries, verdicts


def _f(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return '–'
    return f'{v:.{digits}f}' if isinstance(v, float) else str(v)


def _environment_line(env: dict) -> str:
    keys = ('python', 'torch', 'triton', 'timm', 'numpy', 'onnx', 'onnxruntime', 'driver', 'sm_clock_mhz',
            'max_sm_clock_mhz', 'mem_clock_mhz', 'load_average')
    return '; '.join(f'{k} {escape(env[k])}' for k in keys if env.get(k) not in (None, ''))


def _correctness_row(r: dict) -> list:
    head = [r['op'], r['case'], r['dtype'], r['layout'], '/'.join(str(k) for k in r['kernel_sizes']) or '–']
    if 'error' in r:
        return head + ['–', '–', '–', '–', f"**ERROR** {r['error']}"]
    return head + [f"{r['fused_err']:.1e}", f"{r['eager_err']:.1e}", 'yes' if r['deterministic'] else '**no**',
                   f"{r['first_call_s']:.2f}", 'ok' if r['correct'] else '**MISMATCH**']


def _timing_row(r: dict, compiled: dict) -> list:
    """An op timing row, with the torch.compile figures of its (op, shape, dtype)."""
    impls = ('eager', 'compile', 'fused')
    if 'error' in r:
        return [r['op'], r['case'], r['dtype'], f"**ERROR** {r['error']}", '', '', '', '']
    r = dict(compiled.get((r['op'], r['case'], r['dtype']), {}), **r)
    graphed = all(r.get(f'{i}_graphed', True) for i in impls)
    return [r['op'], r['case'], r['dtype'], ' / '.join(_f(r.get(f'{i}_fwd_ms')) for i in impls),
            ' / '.join(_f(r.get(f'{i}_fwdbwd_ms')) for i in impls) + ('' if graphed else ' (launches)'),
            f"{r['eager_fwd_ms'] / r['fused_fwd_ms']:.2f}× / {r['eager_fwdbwd_ms'] / r['fused_fwdbwd_ms']:.2f}×",
            f"{r['fwdbwd_roofline_pct']:.0f}% ({r['fwdbwd_bound']})" if 'fwdbwd_roofline_pct' in r else '–',
            ' / '.join(_f(r.get(f'{i}_fwdbwd_mib'), 0) for i in impls)]


def _training_rows(e2e: List[dict]) -> List[list]:
    off = {r['model']: r['step_ms'] for r in e2e if r['kernels'] == 'torch' and 'error' not in r}
    rows = []
    for r in e2e:
        if 'error' in r:
            rows.append([r['model'], r['kernels'], f"**ERROR** {r['error']}", '', '', '', '', ''])
            continue
        speed = off[r['model']] / r['step_ms'] if r['model'] in off else float('nan')
        vs_timm = off['timm:focalnet_tiny_srf'] / r['step_ms'] if 'timm:focalnet_tiny_srf' in off else float('nan')
        rows.append([r['model'], 'n/a' if r['model'].startswith('timm:') else r['kernels'], f"{r['step_ms']:.1f}",
                     f"{r['img_s']:.0f}", _f(r['peak_gib'], 2), r['kernel_calls'], f'{_f(speed, 2)}×',
                     f'{_f(vs_timm, 2)}×'])
    return rows


def report_markdown(result: dict, command: str) -> str:
    """The kernel section of BENCHMARKS.md for a run (finished or not)."""
    peak, s = result['peak'], result['settings']
    compiled = {(r['op'], r['case'], r['dtype']): r for r in result.get('compile', [])}
    impls = ('eager', 'compile', 'fused')
    state = ('finished' if result.get('finished') else
             f"**stopped at the deadline** ({s['deadline_s']:.0f} s)" if result.get('stopped_at_deadline') else
             '**incomplete** (written while running)')
    lines = [
        '## Fused kernels (Triton): GPU check', '',
        f"{escape(result['card'])} (`{escape(result['gpu_family'])}`); {escape(result['date'])}; "
        f"{result['elapsed_s']:.0f} s from process start, {state}. Command: `{escape(command)}`.", '',
        'Environment: ' + _environment_line(result.get('environment', {})) + '.', '',
        'Peaks used for the roofline: ' + (f"{peak['bandwidth_gbs']:.0f} GB/s DRAM, {peak['fp32_tflops']} FP32 "
                                           f'TFLOP/s (datasheet)' if peak else 'unknown card, no roofline')
        + (f"; measured device-to-device copy {result['copy_gbs']:.0f} GB/s." if result.get('copy_gbs') else '.'),
        '',
        '### Correctness (against the reference in float64, forward and every gradient; TF32 off)', '',
        *markdown_table(['op', 'shape', 'dtype', 'layout', 'k', 'fused err', 'eager err', 'two backwards equal',
                         'first call s', 'verdict'], map(_correctness_row, result['correctness'])),
        '', '### Validated-table verdicts (`auto` runs a kernel only inside a validated entry)', '',
        *markdown_table(['op', 'dtype', 'layout', 'k', 'shapes covered', 'validated', 'why'],
                        ([v['op'], v['dtype'], v['layout'], v['k'], len(v['shapes']),
                          'yes' if v['validated'] else 'no', v['reason']] for v in result['verdicts']))]
    names = '/'.join(impls)
    lines += ['', f'### Op timing (batch {s["batch"]} at {s["resolution"]}², CUDA-graph replays; ms per call; '
                  f'torch.compile measured last, – where the deadline came first)', '',
              *markdown_table(['op', 'shape', 'dtype', f'fwd ms ({names})', f'fwd+bwd ms ({names})',
                               'fwd / fwd+bwd speed-up vs eager', 'fwd+bwd roofline % (bound)',
                               f'fwd+bwd peak MiB ({names})'],
                              (_timing_row(r, compiled) for r in result['timing']))]
    failed = [r for r in result.get('compile', []) if 'error' in r or 'compile_error' in r]
    if failed:
        lines += ['', 'torch.compile failed on: ' + '; '.join(
            escape(f"{r['op']} {r['case']} {r['dtype']} ({r.get('error') or r['compile_error']})") for r in failed)
            + '.']
    lines += ['', f"### Training steps (bf16 autocast, SGD, batch {s['e2e_batch']} at {s['e2e_resolution']}²)", '',
              *markdown_table(['model', 'kernels', 'step ms', 'img/s', 'peak GiB', 'kernel calls / step',
                               'speed-up vs kernels off', 'speed-up vs timm focalnet_tiny_srf'],
                              _training_rows(result['e2e']))]
    if result['skipped']:
        lines += ['', f"Not run (the deadline, {s['deadline_s']:.0f} s from process start, came first): "
                  + '; '.join(map(escape, result['skipped'])) + '.']
    return '\n'.join(lines) + '\n'


def write_outputs(result: dict, command: str, benchmarks: Optional[str], table: Optional[str]) -> None:
    """The section into ``benchmarks`` and this card's entries into ``table`` (other cards' entries kept)."""
    if benchmarks:
        write_report(blocks=[Block(benchmarks, START, END, report_markdown(result, command).rstrip())])
        print(f'wrote {benchmarks}', flush=True)
    if table:
        validated.write_table(table, [result['gpu_family']], result['entries'])
        print(f'wrote {table} ({len(result["entries"])} validated entries for {result["gpu_family"]})', flush=True)
