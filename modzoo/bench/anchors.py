"""modzoo against the networks users would pick instead (issue 32): latency ratios to timm anchors, with goals.

    python tools/bench_anchors.py --write-benchmarks --write-readme --json anchors.json   # the full table
    python tools/bench_anchors.py --pairs zoo_gridpe_pvt_v2_b0=pvt_v2_b0 --paths ort_fp32 --settings 1x1
    python tools/bench_anchors.py --quick                                               # tool check, seconds

Method. Per pair, both models are built with seed 0 and their graphs made as a user gets them: the modzoo model by
``tools/export_onnx.py``'s defaults (``modzoo.export.onnx.export_default_graph``: deploy rewrites, export forms,
onnxslim; for OpenVINO its ``--runtime openvino`` graph), the timm anchor by plain ``torch.onnx.export`` (opset
17), both with a dynamic batch axis (the CLI's default; a fixed batch, ``--dynamic none``, folds the batch's shape
arithmetic but measured within 3% on either side, so neither side gets it); int8 graphs from both the same way
(``modzoo.export.quantize`` QDQ for ONNX Runtime, NNCF IR for OpenVINO, ``--calib-images`` digits images: the scales
do not change the speed). Every path of both models runs in its own worker process (``modzoo.bench.cpu_deploy``'s
paths: eager, torch.compile, ONNX Runtime fp32/int8, OpenVINO fp32/int8) and the parent interleaves single forwards
over all of them (the order reverses every round), so the noise of the machine hits both sides alike; medians of
``--rounds``. GMACs by fvcore (``modzoo.utils.flops``). Ratio = modzoo latency / anchor latency, or per GMAC
(latency / GMACs on each side) where the goal says so; > 1 means modzoo is slower.

The goals (issue 32) are judged on ONNX Runtime fp32, 1 thread, batch 1; every other path and the 2-thread batch-8
setting are reported beside them. A missed goal gets the op types that make the gap and the floor a leaner graph
could reach (its kernel time without data-movement ops), from ONNX Runtime's profiler (``modzoo.bench.profile_graph``;
``--no-explain`` skips it).
"""
import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..utils.cli import OneLineArgumentParser
from .common import BENCHMARKS, README, LoadGuard, add_load_guard_args, interleaved_seconds, load_cell, \
    load_note, machine_description
from .cpu_deploy import HEADINGS, PATHS, prepare_graphs
from .report import Block, check_json_output, escape, failure_status, load_run, markdown_table, provenance_line, \
    write_json, write_report

START, END = '<!-- anchors:start -->', '<!-- anchors:end -->'
README_START, README_END = '<!-- anchors-readme:start -->', '<!-- anchors-readme:end -->'
GATED_PATH, GATED_SETTING = 'ort_fp32', (1, 1)  # (threads, batch)
DEFAULT_SETTINGS = [(1, 1), (2, 8)]
PROFILE_ROUNDS = 5  # alternating profiles of both graphs behind a missed goal's explanation


@dataclass(frozen=True)
class Pair:
    """A modzoo model, the timm model it is held against, the goal on the ratio and whether it is per GMAC."""
    zoo: str
    anchor: str
    goal: float
    per_gmac: bool = False
    zoo_kwargs: Dict = field(default_factory=dict, hash=False, compare=False)
    anchor_kwargs: Dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        return f'{self.zoo}={self.anchor}'


PAIRS = [
    Pair('zoo_efficientmod_s', 'efficientformerv2_s2', 0.80),  # the paper's "25% faster"
    Pair('zoo_efficientmod_xxs', 'efficientformerv2_s0', 1.00),
    Pair('zoo_focalnet_tiny_srf', 'convnext_tiny', 0.90, per_gmac=True),
    Pair('zoo_focalnet_tiny_srf', 'focalnet_tiny_srf', 0.95),
    Pair('zoo_smt_tiny', 'convnext_nano', 1.00, per_gmac=True),
    Pair('zoo_gridpe_pvt_v2_b0', 'pvt_v2_b0', 1.05),
]


def gmacs(model: str, size: int, model_kwargs: Optional[dict] = None) -> float:
    """fvcore's count (multiply-accumulates) for one ``size`` x ``size`` image, in G."""
    import timm
    import torch

    from modzoo.utils.flops import count_flops
    torch.manual_seed(0)
    net = timm.create_model(model, **(model_kwargs or {})).eval()
    return count_flops(net, (3, size, size))[0]


# ----------------------------------------------------------------------------------------------------------------
# measurement


def _workers(pair: Pair, graphs: Dict[str, dict], paths: Sequence[str], size: int, threads: int) -> Dict[tuple, object]:
    from .onnx_runtime import Worker
    workers = {}
    for side, model, kwargs in (('zoo', pair.zoo, pair.zoo_kwargs), ('anchor', pair.anchor, pair.anchor_kwargs)):
        spec = dict(model=model, model_kwargs=kwargs, seed=0, size=size, threads=threads)
        for key, _, engine, graph in PATHS:
            if key in paths:
                workers[(key, side)] = Worker(engine, dict(spec, onnx=graphs[side]['graphs'].get(graph)))
    return workers


def _measure_rows(workers: Dict[tuple, object], settings: Sequence[Tuple[int, int]], rounds: int, warmup: int,
                  guard: LoadGuard, label: str) -> List[dict]:
    """Per (threads, batch): medians (ms) of interleaved single forwards of every worker."""
    for batch in sorted({b for _, b in settings}):  # compiles and first-call allocations before the rows
        for worker in workers.values():
            worker.ask(cmd='run', batch=batch)
    rows = []
    for threads, batch in settings:
        for worker in workers.values():  # a new thread count recompiles torch.compile's graph: outside the row
            worker.ask(cmd='threads', threads=threads)
            worker.ask(cmd='run', batch=batch)

        def measure(batch=batch):
            times = interleaved_seconds({key: (lambda w=worker: w.ask(cmd='run', batch=batch)['seconds'])
                                         for key, worker in workers.items()}, rounds, warmup)
            return dict(ms={f'{key}/{side}': statistics.median(t) * 1e3 for (key, side), t in times.items()})
        row = dict(guard.measure(measure, threads=threads), threads=threads, batch=batch)
        rows.append(row)
        print(f'{label:<44} t{threads} b{batch:<2} ' + '  '.join(
            f'{key} {row["ms"][key + "/zoo"] / row["ms"][key + "/anchor"]:.2f}'
            for key in dict.fromkeys(k for k, _ in workers)) + f'  load {load_cell(row)}', flush=True)
    return rows


def bench_pair(pair: Pair, size: int, paths: Sequence[str], settings: Sequence[Tuple[int, int]], rounds: int,
               warmup: int, workdir: str, guard: LoadGuard, calib_images: int, explain: bool = True) -> dict:
    """One pair: GMACs, graphs of both sides, the interleaved rows, and the profile of the gated graphs."""
    graphs = {}
    for side, model, kwargs in (('zoo', pair.zoo, pair.zoo_kwargs), ('anchor', pair.anchor, pair.anchor_kwargs)):
        folder = os.path.join(workdir, side)  # the two sides' graphs may share a name (FocalNet in timm and modzoo)
        os.makedirs(folder, exist_ok=True)
        graphs[side] = prepare_graphs(model, size, folder, calib_images, paths, kwargs)
    result = dict(pair=asdict(pair), size=size, rounds=rounds,
                  gmacs=dict(zoo=gmacs(pair.zoo, size, pair.zoo_kwargs),
                             anchor=gmacs(pair.anchor, size, pair.anchor_kwargs)))
    workers = _workers(pair, graphs, paths, size, settings[0][0])
    try:
        result['rows'] = _measure_rows(workers, settings, rounds, warmup, guard, pair.label)
    finally:
        for worker in workers.values():
            worker.close()
    gated = gated_ratio(result)
    if explain and gated is not None and gated > pair.goal:
        result['gap'] = explain_gap(graphs['zoo']['graphs']['fp32'], graphs['anchor']['graphs']['fp32'], result)
    return result


def ratio(result: dict, row: dict, path: str) -> Optional[float]:
    """modzoo / anchor latency of ``path`` in ``row``, per GMAC when the pair's goal is."""
    ms = row['ms']
    zoo, anchor = ms.get(f'{path}/zoo'), ms.get(f'{path}/anchor')
    if zoo is None or anchor is None:
        return None
    value = zoo / anchor
    if result['pair']['per_gmac']:
        value *= result['gmacs']['anchor'] / result['gmacs']['zoo']
    return value


def gated_row(result: dict) -> Optional[dict]:
    return next((row for row in result['rows'] if (row['threads'], row['batch']) == GATED_SETTING), None)


def gated_ratio(result: dict) -> Optional[float]:
    row = gated_row(result)
    return ratio(result, row, GATED_PATH) if row else None


def _median_by_op(profiles: Sequence) -> Dict[str, float]:
    ops = [p.by_op() for p in profiles]
    return {op: statistics.median(o.get(op, 0.) for o in ops) for op in set().union(*ops)}


def explain_gap(zoo_graph: str, anchor_graph: str, result: dict, top: int = 5,
                rounds: int = PROFILE_ROUNDS) -> dict:
    """Where a missed goal's gap is: ONNX Runtime profiles (1 thread, batch 1) of both graphs, taken alternately
    ``rounds`` times (one profile of each is too noisy: the two run seconds apart); medians over the rounds.

    ``ops``: each op type's modzoo time minus the anchor's, largest first. ``floor``: modzoo's kernel time without
    its data-movement ops over the anchor's kernel time, the ratio a graph rewrite could reach at best, with its
    range over the rounds; above the goal, the gap is the architecture's own arithmetic at ONNX Runtime's kernel
    speeds. modzoo's times are scaled by the GMAC ratio for a per-GMAC goal.
    """
    from .profile_graph import profile_ort
    scale = result['gmacs']['anchor'] / result['gmacs']['zoo'] if result['pair']['per_gmac'] else 1.0
    pairs = [tuple(profile_ort(g, threads=1, batch=1, size=result['size']) for g in (zoo_graph, anchor_graph))
             for _ in range(rounds)]
    floors = sorted((z.total_ms - z.data_movement_ms) * scale / a.total_ms for z, a in pairs)
    zoo_ops, anchor_ops = _median_by_op([z for z, _ in pairs]), _median_by_op([a for _, a in pairs])
    excess = {op: zoo_ops.get(op, 0.) * scale - anchor_ops.get(op, 0.) for op in set(zoo_ops) | set(anchor_ops)}
    ranked = sorted(excess.items(), key=lambda kv: -kv[1])[:top]
    return dict(rounds=rounds, zoo_total_ms=statistics.median(z.total_ms for z, _ in pairs),
                anchor_total_ms=statistics.median(a.total_ms for _, a in pairs),
                zoo_data_movement_ms=statistics.median(z.data_movement_ms for z, _ in pairs),
                floor=statistics.median(floors), floor_range=[floors[0], floors[-1]],
                ops=[dict(op=op, excess_ms=ms, zoo_ms=zoo_ops.get(op, 0.), anchor_ms=anchor_ops.get(op, 0.))
                     for op, ms in ranked])


# ----------------------------------------------------------------------------------------------------------------
# markdown


def _ratio_text(value: float, goal: float) -> str:
    """Two decimals, three where two would print the goal itself for a ratio on the other side of it."""
    text = f'{value:.2f}'
    return f'{value:.3f}' if text == f'{goal:.2f}' and value != goal else text


def verdict(result: dict) -> str:
    value = gated_ratio(result)
    if value is None:
        return '-'
    return 'met' if value <= result['pair']['goal'] else '**missed**'


def goals_markdown(run: dict) -> List[str]:
    """The gated table: one row per pair, ONNX Runtime fp32, 1 thread, batch 1."""
    rows = []
    for r in run['results']:
        row, pair = gated_row(r), r['pair']
        if row is None or f'{GATED_PATH}/zoo' not in row['ms']:
            continue
        rows.append([f'`{pair["zoo"]}`', f'`{pair["anchor"]}`', f'{r["gmacs"]["zoo"]:.2f} / {r["gmacs"]["anchor"]:.2f}',
                     f'{row["ms"][GATED_PATH + "/zoo"]:.2f}', f'{row["ms"][GATED_PATH + "/anchor"]:.2f}',
                     f'**{_ratio_text(gated_ratio(r), pair["goal"])}**' + (' per GMAC' if pair['per_gmac'] else ''),
                     f'≤ {pair["goal"]:.2f}', verdict(r), load_cell(row)])
    return markdown_table(['modzoo', 'anchor', 'GMACs (modzoo / anchor)', 'modzoo ms', 'anchor ms', 'ratio', 'goal',
                           'goal met', 'load'], rows)


def measured_paths(run: dict) -> List[str]:
    """The paths (``PATHS`` keys) this run measured, in ``PATHS`` order."""
    return [key for key, *_ in PATHS if any(f'{key}/zoo' in row['ms'] for r in run['results'] for row in r['rows'])]


def measured_settings(run: dict) -> List[str]:
    """The (threads, batch) settings this run measured, as ``'1 thread / batch 1'`` phrases."""
    settings = sorted({(row['threads'], row['batch']) for r in run['results'] for row in r['rows']})
    return [f'{t} thread{"s" if t > 1 else ""} / batch {b}' for t, b in settings]


def reported_markdown(run: dict) -> List[str]:
    """Every path and setting: ratio (modzoo ms / anchor ms) per path."""
    paths = measured_paths(run)
    rows = []
    for r in run['results']:
        for row in r['rows']:
            cells = []
            for key in paths:
                value = ratio(r, row, key)
                cells.append('-' if value is None else
                             f'{value:.2f} ({row["ms"][key + "/zoo"]:.1f} / {row["ms"][key + "/anchor"]:.1f})')
            rows.append([f'`{r["pair"]["zoo"]}`', f'`{r["pair"]["anchor"]}`' + (' (per GMAC)' if r['pair']['per_gmac']
                                                                               else ''),
                         row['threads'], row['batch'], *cells, load_cell(row)])
    return markdown_table(['modzoo', 'anchor', 'threads', 'batch', *(HEADINGS[k] for k in paths), 'load'], rows)


def int8_markdown(run: dict) -> List[str]:
    """int8 over fp32 in the same runtime, both sides, per setting."""
    rows = []
    for r in run['results']:
        for row in r['rows']:
            ms, cells = row['ms'], []
            for fp32, int8 in (('ort_fp32', 'ort_int8'), ('ov_fp32', 'ov_int8')):
                for side in ('zoo', 'anchor'):
                    a, b = ms.get(f'{fp32}/{side}'), ms.get(f'{int8}/{side}')
                    cells.append(f'{a / b:.2f}x' if a and b else '-')
            if any(c != '-' for c in cells):
                rows.append([f'`{r["pair"]["zoo"]}`', f'`{r["pair"]["anchor"]}`', row['threads'], row['batch'],
                             *cells])
    if not rows:
        return []
    return markdown_table(['modzoo', 'anchor', 'threads', 'batch', 'ORT int8 speed-up modzoo', 'ORT int8 anchor',
                           'OpenVINO int8 modzoo', 'OpenVINO int8 anchor'], rows)


def _floor_verdict(gap: dict, goal: float) -> str:
    low, high = gap['floor_range']
    if low > goal:
        return ('out of reach by removing data movement: the architecture\'s own arithmetic, at the speed ONNX '
                'Runtime runs it here, takes more than the goal allows')
    if high <= goal:
        return 'within reach by removing data movement: the rest of the gap is data movement and per-node overhead'
    return 'at the goal within the profiles\' spread: only a graph without any data movement could reach it'


def gaps_markdown(run: dict) -> List[str]:
    lines = []
    for r in run['results']:
        if r.get('gap'):
            pair, gap = r['pair'], r['gap']
            low, high = gap['floor_range']
            per = ' (modzoo times scaled to the anchor\'s GMACs)' if pair['per_gmac'] else ''
            ops = ', '.join(f'{g["op"]} {g["excess_ms"]:+.2f} ms ({g["zoo_ms"]:.2f} vs {g["anchor_ms"]:.2f})'
                            for g in gap['ops'] if g['excess_ms'] > 0)
            lines.append(f'- `{pair["zoo"]}` vs `{pair["anchor"]}`: kernel time {gap["zoo_total_ms"]:.2f} vs '
                         f'{gap["anchor_total_ms"]:.2f} ms; largest excess by op type{per}: {ops}. Floor '
                         f'**{gap["floor"]:.2f}** ({low:.2f}-{high:.2f} over {gap["rounds"]} profiles; without its '
                         f'{gap["zoo_data_movement_ms"]:.2f} ms of data movement) against the goal {pair["goal"]:.2f}: '
                         f'{_floor_verdict(gap, pair["goal"])}.')
    return lines


def table_markdown(run: dict) -> str:
    results = run['results']
    lines = [
        '## modzoo against the anchors users would pick instead',
        '',
        provenance_line(f'{run.get("host", "?")}: {run["machine"]}', run['date'], run['command']),
        '',
        'Ratio = modzoo latency / anchor latency (> 1: modzoo slower), per GMAC where the goal says so; medians of '
        f'{results[0]["rounds"] if results else "-"} single forwards interleaved over every path of both models, '
        'each in its own process, at ' + ', '.join(sorted({f'{r["size"]}x{r["size"]}' for r in results}))
        + ' px, random weights (seed 0). modzoo graphs as `tools/export_onnx.py` writes them by default (with '
        '`--runtime openvino` for the OpenVINO columns), timm\'s by '
        'plain `torch.onnx.export` (opset 17), both with a dynamic batch axis; GMACs by fvcore. Goals (issue 32) on '
        'ONNX Runtime fp32, 1 thread, '
        'batch 1:',
        '',
        *goals_markdown(run),
    ]
    gaps = gaps_markdown(run)
    if gaps:
        lines += ['', 'Where a goal is missed, ONNX Runtime\'s profiler (1 thread, batch 1; medians of alternating '
                  'profiles of each graph) by op type: each op '
                  'type\'s kernel time in modzoo\'s graph minus the anchor\'s (the profiler adds a little time to '
                  'every node, so kernel totals exceed the latencies above; `tools/profile_graph.py` shows every '
                  'node). The floor is modzoo\'s kernel time without its data-movement ops (transposes, NCHWc '
                  'reorders, reshapes, slices, concats, shape arithmetic: `DATA_MOVEMENT_OPS` in '
                  '`modzoo/bench/profile_graph.py`) over the anchor\'s kernel time: the best ratio a rewrite of the '
                  'graph can reach while ONNX Runtime\'s kernels run the same arithmetic.', '', *gaps]
    lines += ['', '### Every path and setting (reported, not gated)', '',
              'Each cell: ratio (modzoo ms / anchor ms).', '', *reported_markdown(run)]
    int8 = int8_markdown(run)
    if int8:
        lines += ['', '### int8 over fp32 in the same runtime', '',
                  'fp32 latency / int8 latency (the open goal is 1.8x); int8 calibrated on digits images.', '', *int8]
    rows = [row for r in results for row in r['rows']]
    if rows:
        lines += ['', load_note(rows)]
    for name, why in run.get('skipped', {}).items():
        lines.append(f'\nNot benchmarked: `{escape(name)}` ({escape(why)}).')
    return '\n'.join(lines)


def readme_markdown(run: dict) -> str:
    """The README's performance paragraph: each pair's gated ratio against its goal."""
    parts = []
    for r in run['results']:
        value = gated_ratio(r)
        if value is not None:
            pair = r['pair']
            floor = f', floor {r["gap"]["floor"]:.2f}' if r.get('gap') else ''
            per = ' per GMAC' if pair['per_gmac'] else ''
            parts.append(f'`{pair["zoo"]}` {_ratio_text(value, pair["goal"])}x `{pair["anchor"]}`{per} '
                         f'(goal ≤ {pair["goal"]:.2f}: {verdict(r).strip("*")}{floor})')
    return (f'**Against the networks users would pick instead** (ONNX Runtime fp32, 1 thread, batch 1, latency ratio '
            f'modzoo / timm, < 1 is faster; `{escape(run["command"])}`, {escape(run["date"])}; '
            f'{escape(run["machine"])}): ' + '; '.join(parts) + '. The full table (every path this run measured: '
            + ', '.join(HEADINGS[k] for k in measured_paths(run)) + '; ' + ', '.join(measured_settings(run))
            + ') and the profile of every missed goal are in `BENCHMARKS.md`. A floor is the ratio modzoo\'s graph '
            'would have without any data movement (transposes, reorders, reshapes): a goal below it cannot be reached '
            'by removing data movement, only by faster arithmetic.')


# ----------------------------------------------------------------------------------------------------------------
# command line


def run_benchmarks(pairs: Sequence[Pair], args, command: str) -> dict:
    """Every pair of ``pairs`` with the command's settings; a pair that fails is listed, the others kept."""
    run = dict(machine=machine_description(libraries=('torch', 'timm', 'onnxruntime', 'openvino'), vnni=True),
               command=command, date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), host=os.uname().nodename,
               results=[], skipped={})
    guard = LoadGuard(args.load_threshold, retries=args.load_retries, wait_s=args.load_wait)
    with tempfile.TemporaryDirectory() as workdir:
        for i, pair in enumerate(pairs):
            try:
                result = bench_pair(pair, args.size, args.paths, args.settings, args.rounds, args.warmup,
                                    os.path.join(workdir, str(i)), guard, args.calib_images, args.explain)
            except Exception as e:  # noqa: BLE001 - one pair's failure must not lose the others' rows
                detail = str(e).splitlines()[0][:200] if str(e) else ''
                run['skipped'][pair.label] = f'failed: {type(e).__name__}: {detail}'
                print(f'{pair.label:<44} {run["skipped"][pair.label]}', flush=True)
                continue
            run['results'].append(result)
            if args.json:  # keep what is done if the run is cut short
                write_json(args.json, dict(run, partial=True))
    return run


def _setting(text: str) -> Tuple[int, int]:
    match = re.fullmatch(r'(\d+)x(\d+)', text)
    if not match or min(int(match.group(1)), int(match.group(2))) < 1:
        raise argparse.ArgumentTypeError(f'{text!r}: write THREADSxBATCH, e.g. 1x1 or 2x8')
    return int(match.group(1)), int(match.group(2))


QUICK = dict(pairs=['zoo_gridpe_pvt_v2_b0=pvt_v2_b0'], paths=['ort_fp32'], settings=[(1, 1)], size=64, rounds=3,
             warmup=1, calib_images=8, load_retries=0)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    labels = [pair.label for pair in PAIRS]
    parser.add_argument('--pairs', nargs='+', default=labels, metavar='ZOO=ANCHOR',
                        help=f'pairs to measure (default: all of {", ".join(labels)})')
    parser.add_argument('--paths', nargs='+', choices=[key for key, *_ in PATHS], default=[key for key, *_ in PATHS],
                        help='engines of both sides (default: all; the goals need ort_fp32)')
    parser.add_argument('--settings', nargs='+', type=_setting, default=DEFAULT_SETTINGS, metavar='THREADSxBATCH',
                        help='rows per pair (default 1x1 2x8; the goals need 1x1)')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=11, help='timed interleaved rounds per row (default 11)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed rounds per row')
    parser.add_argument('--calib-images', type=int, default=64, help='digits images that calibrate the int8 graphs')
    parser.add_argument('--no-explain', dest='explain', action='store_false',
                        help='skip the profile of the pairs that miss their goal')
    parser.add_argument('--quick', action='store_true',
                        help='tool check: GridPE-PVT vs PVT v2 only, ORT fp32, 1x1, 64 px, 3 rounds (numbers '
                             'meaningless; never written with --write-*)')
    add_load_guard_args(parser)
    parser.add_argument('--json', help='also write the raw results here')
    parser.add_argument('--from-json', help='only render (and write) a saved --json run')
    parser.add_argument('--write-benchmarks', action='store_true', help='refresh the anchors block of BENCHMARKS.md')
    parser.add_argument('--write-readme', action='store_true', help='refresh the anchors paragraph of README.md')
    return parser


def blocks(run: dict, benchmarks: Optional[str] = None, readme: Optional[str] = None) -> List[Block]:
    """The marked blocks of this run: the table in ``benchmarks``, the paragraph in ``readme`` (when given)."""
    return (([Block(benchmarks, START, END, table_markdown(run))] if benchmarks else [])
            + ([Block(readme, README_START, README_END, readme_markdown(run))] if readme else []))


def _selected_pairs(parser, labels: Sequence[str]) -> List[Pair]:
    known = {pair.label: pair for pair in PAIRS}
    unknown = [label for label in labels if label not in known]
    if unknown:
        parser.error(f'unknown pair {", ".join(unknown)}: choose from {", ".join(known)}')
    return [known[label] for label in dict.fromkeys(labels)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        if args.write_benchmarks or args.write_readme:
            parser.error('--quick measures at 64 px with 3 rounds: its figures are not for BENCHMARKS.md or README.md')
        for key, value in QUICK.items():
            setattr(args, key, value)
    if min(args.size, args.rounds, args.calib_images) < 1 or args.warmup < 0:
        parser.error('--size, --rounds and --calib-images must be at least 1, --warmup at least 0')
    pairs = _selected_pairs(parser, args.pairs)
    check_json_output(parser, args.json, inputs={'--from-json': args.from_json},
                      outputs={'--write-benchmarks': BENCHMARKS if args.write_benchmarks else None,
                               '--write-readme': README if args.write_readme else None})
    if args.from_json:
        run = load_run(parser, args.from_json, ('machine', 'command', 'date', 'results'))
    else:
        command = 'python tools/bench_anchors.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
        run = run_benchmarks(pairs, args, re.sub(r' --json \S+', '', command).strip())
    print()
    print(table_markdown(run))
    write_report(run, None if args.from_json else args.json,
                 blocks(run, BENCHMARKS if args.write_benchmarks else None, README if args.write_readme else None))
    return 0 if args.from_json else failure_status(run)
