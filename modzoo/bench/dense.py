"""The dense runs on the dense digits (``modzoo.dense_digits``): train each family's ``configs/digits_dense`` config
with the stock train tool, evaluate it with the stock test tool, check the goals, and write the BENCHMARKS.md
section (``modzoo-bench-dense`` / ``tools/bench_dense.py``).

Goals on the held-out canvases (issue 34): segmentation mIoU >= 70 for every family; detection bbox AP >= 0.50 and
AP50 >= 0.85; and a negative control, EfficientMod-xxs FPN trained on a copy of the data with the training label maps
shuffled across canvases, that stays far below 70 (mIoU < 30), so the check is seen to fail when nothing is learnt.

Each run is a child process (``modzoo.mm.cli``'s train and test command lines, as
``tools/{train,test}_{seg,det}.py`` run them), so its train time and peak memory are its own.

    python tools/bench_dense.py --work-dir output/dense --update BENCHMARKS.md
    python tools/bench_dense.py --parallel 2 --update BENCHMARKS.md   # two runs at a time, one thread each (2 cores)
"""
import hashlib
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ..dense_digits import write_dense_digits
from ..utils.cli import OneLineArgumentParser, UsageError, print_error
from .common import load_1min, machine_description
from .report import Block, markdown_table, write_json, write_report

__all__ = ['DENSE_RUNS', 'CONTROL_RUNS', 'MAIN_JOB_RUNS', 'SEG_GOAL_MIOU', 'CONTROL_MAX_MIOU', 'DET_GOAL_AP',
           'DET_GOAL_AP50', 'GoalMissed', 'config_path', 'data_root_options', 'write_data', 'run_dense', 'check_goal',
           'goal_misses', 'summary_line', 'config_digest', 'saved_results', 'run_dense_stage', 'dense_table', 'main']

SEG_GOAL_MIOU = 70.0
DET_GOAL_AP = 0.50
DET_GOAL_AP50 = 0.85
# the shuffled-label control must stay below this: less than half the goal, and far above what a model that learnt
# nothing scores (all background: background IoU ~85 / 11 classes ~ 8; the control gave 7.7 in an earlier session)
CONTROL_MAX_MIOU = 30.0
TRAIN_BUDGET_S = 600  # the goals hold after at most 10 minutes of training
_CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs', 'digits_dense')
# row name -> (scope, config file in configs/digits_dense)
DENSE_RUNS: Dict[str, tuple] = {
    'FocalNet-T UperNet': ('mmseg', 'upernet_focalnet-t-srf_dense-digits-128x128.py'),
    'SMT-T UperNet': ('mmseg', 'upernet_smt-t_dense-digits-128x128.py'),
    'SMT-T UperNet + SFM': ('mmseg', 'upernet_smt-t_sfm_dense-digits-128x128.py'),
    'EfficientMod-xxs FPN': ('mmseg', 'fpn_efficientmod-xxs_dense-digits-128x128.py'),
    'GridPE-PVTv2-b0 UperNet': ('mmseg', 'upernet_gridpe-pvt-v2-b0_dense-digits-128x128.py'),
    'GridPE-PVTv2-b0 MACMD': ('mmseg', 'macmd_gridpe-pvt-v2-b0_dense-digits-128x128.py'),
    'SMT-T RetinaNet': ('mmdet', 'retinanet_smt-t_fpn_dense-digits-128x128.py'),
    'GridPE-PVTv2-b0 RetinaNet': ('mmdet', 'retinanet_gridpe-pvt-v2-b0_fpn_dense-digits-128x128.py'),
}
# the negative controls: the same config as the named run, trained on a copy of the dataset (``dense_digits_shuffled``
# beside ``dense_digits``) whose training label maps are permuted across canvases (val keeps the true ones)
CONTROL_RUNS: Dict[str, str] = {'EfficientMod-xxs FPN shuffled-label control': 'EfficientMod-xxs FPN'}
DENSE_RUNS.update({control: DENSE_RUNS[run] for control, run in CONTROL_RUNS.items()})
# the main job's dense stage: one segmentation family, one detector, side by side within 6 minutes on 2 cores.
# GridPE UperNet, not the cheaper EfficientMod FPN: at 96x96 crops EfficientMod FPN reached only mIoU 70.5 in about
# the same time (1800 iterations), GridPE UperNet 79.2 at 2000 iterations.
MAIN_JOB_RUNS = ('GridPE-PVTv2-b0 UperNet', 'GridPE-PVTv2-b0 RetinaNet')
# --quick: every run end to end through the stock tools on a few canvases for a few steps (a check of the pipeline and
# the table, in minutes; its figures mean nothing)
_QUICK_DATA = dict(num_train=16, num_val=4)
_QUICK_OPTIONS = {'mmseg': ('train_cfg.max_iters=10', 'train_cfg.val_interval=10'),
                  'mmdet': ('train_cfg.max_epochs=1', 'train_cfg.val_interval=1')}
_MARKERS = ('<!-- dense:start -->', '<!-- dense:end -->')


class GoalMissed(RuntimeError):
    """A dense run finished below its goal."""


def config_path(name: str) -> str:
    return osp.join(_CONFIGS, DENSE_RUNS[name][1])


def _run_dir(work_dir: str, name: str) -> str:
    return osp.join(work_dir, name.replace(' + ', '_').replace(' ', '_'))


def data_root_options(scope: str, root: str) -> List[str]:
    """``--cfg-options`` pointing a digits_dense config's loaders (and COCO evaluator) at the dataset in ``root``."""
    root = root.rstrip('/') + '/'
    options = [f'{loader}.dataset.data_root={root}' for loader in ('train_dataloader', 'val_dataloader',
                                                                    'test_dataloader')]
    if scope == 'mmdet':
        options += [f'{name}.ann_file={root}annotations/instances_val.json' for name in ('val_evaluator',
                                                                                          'test_evaluator')]
    return options


def write_data(names: Sequence[str], work_dir: str, **kwargs) -> Dict[str, str]:
    """Write the datasets runs ``names`` train on under ``work_dir`` (``dense_digits``; ``dense_digits_shuffled`` for
    the controls), ``kwargs`` to :func:`~modzoo.dense_digits.write_dense_digits`; ``{name: data root}``."""
    def root(shuffled: bool) -> str:
        return osp.join(work_dir, 'dense_digits_shuffled' if shuffled else 'dense_digits')

    for shuffled in sorted({name in CONTROL_RUNS for name in names}):
        write_dense_digits(root(shuffled), shuffle_train_labels=shuffled, **kwargs)
    return {name: root(name in CONTROL_RUNS) for name in names}


def _child(code: str, argv: Sequence[str], log_path: str, threads: Optional[int] = None) -> Dict:
    """Run ``code`` in a fresh interpreter with ``sys.argv[1:] = argv`` (``threads``: its OpenMP/MKL threads, else
    inherited); seconds and peak RSS (MiB) of that child."""
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable, '-c', code, *argv], stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(argv[:1])}: exit status {proc.returncode}; see {log_path}')
    return dict(seconds=time.perf_counter() - start, peak_mib=usage.ru_maxrss / 1024)


def run_dense(name: str, work_dir: str, data_root: str, extra_options: Sequence[str] = (),
              threads: Optional[int] = None) -> Dict:
    """Train ``DENSE_RUNS[name]`` with the stock train tool, test its last checkpoint with the stock test tool
    (``threads``: each tool's OpenMP threads, else inherited).

    Returns the test metrics with ``train_s`` and ``peak_mib`` (the training process's)."""
    scope, _ = DENSE_RUNS[name]
    config = config_path(name)
    options = ['--cfg-options', *data_root_options(scope, data_root), *extra_options]
    os.makedirs(work_dir, exist_ok=True)
    train = _child(f'import sys; from modzoo.mm.cli import train_main; train_main({scope!r}, sys.argv[1:])',
                   [config, '--work-dir', work_dir, *options], osp.join(work_dir, 'train.log'), threads)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    metrics_path = osp.join(work_dir, 'test_metrics.json')
    # default=float: mmseg reports its metrics as numpy float32, which json cannot write
    _child('import json, sys; from modzoo.mm.cli import test_main; '
           f'json.dump(test_main({scope!r}, sys.argv[2:]), open(sys.argv[1], "w"), default=float)',
           [metrics_path, config, checkpoint, '--work-dir', work_dir, *options], osp.join(work_dir, 'test.log'),
           threads)
    with open(metrics_path) as f:
        metrics = json.load(f)
    return dict(metrics, train_s=train['seconds'], peak_mib=train['peak_mib'])


def config_digest(name: str) -> str:
    """sha256 of run ``name``'s config as mmengine resolves it (its ``_base_`` files included, comments aside): a
    saved result counts only for the same config."""
    from mmengine.config import Config
    return hashlib.sha256(Config.fromfile(config_path(name)).pretty_text.encode()).hexdigest()


def _recorded_run(name: str, work_dir: str, data_root: str, threads: Optional[int], parallel: int) -> Dict:
    """:func:`run_dense` with the date, the load before and after, and the config's digest, also saved as
    ``<run dir>/result.json`` so a later table can take this row (:func:`saved_results`)."""
    load_before, date = load_1min(), time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    result = run_dense(name, _run_dir(work_dir, name), data_root, (), threads)
    result.update(date=date, load_before=load_before, load_after=load_1min(), threads=threads or os.cpu_count(),
                  parallel=parallel, config_sha256=config_digest(name))
    write_json(osp.join(_run_dir(work_dir, name), 'result.json'), result)
    return result


def saved_results(work_dir: str) -> Dict[str, Dict]:
    """The results earlier invocations saved under ``work_dir`` whose config is unchanged since (``{name: result}``)."""
    results = {}
    for name in DENSE_RUNS:
        path = osp.join(_run_dir(work_dir, name), 'result.json')
        if osp.isfile(path):
            with open(path) as f:
                result = json.load(f)
            if result.get('config_sha256') == config_digest(name):
                results[name] = result
    return results


def check_goal(name: str, metrics: Dict) -> None:
    """Raise :class:`GoalMissed` when ``metrics`` of run ``name`` are below the issue's goal (a figure missing from
    ``metrics``, e.g. no box above the score threshold at all, counts as 0)."""
    if name in CONTROL_RUNS:
        if not metrics.get('mIoU', 0.0) < CONTROL_MAX_MIOU:  # NaN counts as a miss
            raise GoalMissed(f'{name}: mIoU {metrics.get("mIoU", 0.0):.1f} >= {CONTROL_MAX_MIOU:g} on shuffled labels, '
                             'so the goal check cannot tell learning from none')
        return
    if DENSE_RUNS[name][0] == 'mmseg':
        miou = metrics.get('mIoU', 0.0)
        if miou < SEG_GOAL_MIOU:
            raise GoalMissed(f'{name}: mIoU {miou:.1f} < {SEG_GOAL_MIOU}')
        return
    ap, ap50 = metrics.get('coco/bbox_mAP', 0.0), metrics.get('coco/bbox_mAP_50', 0.0)
    if ap < DET_GOAL_AP or ap50 < DET_GOAL_AP50:
        raise GoalMissed(f'{name}: bbox AP {ap:.3f} / AP50 {ap50:.3f} < {DET_GOAL_AP} / {DET_GOAL_AP50}')


def goal_misses(results: Dict[str, Dict]) -> List[str]:
    """One line per run in ``results`` (``{name: metrics}``) that is below its goal."""
    missed = []
    for name, metrics in results.items():
        try:
            check_goal(name, metrics)
        except GoalMissed as e:
            missed.append(str(e))
    return missed


def summary_line(name: str, metrics: Dict) -> str:
    """``name: mIoU 75.1 (goal >= 70)`` / ``name: bbox AP 0.612, AP50 0.930 (goals >= 0.5 / 0.85)``, with the
    training time: the figures the main job prints."""
    if DENSE_RUNS[name][0] == 'mmseg':
        goal = f'< {CONTROL_MAX_MIOU:g}' if name in CONTROL_RUNS else f'>= {SEG_GOAL_MIOU:g}'
        figures = f'mIoU {metrics.get("mIoU", 0.0):.1f} (goal {goal})'
    else:
        figures = (f'bbox AP {metrics.get("coco/bbox_mAP", 0.0):.3f}, AP50 {metrics.get("coco/bbox_mAP_50", 0.0):.3f} '
                   f'(goals >= {DET_GOAL_AP:g} / {DET_GOAL_AP50:g})')
    return f'{name}: {figures}, trained in {metrics["train_s"]:.0f}s'


def _run_all(data_roots: Dict[str, str], work_dir: str, parallel: int, threads: Optional[int],
             extra_options: Optional[Dict[str, Sequence[str]]] = None, record: bool = False) -> Dict[str, Dict]:
    """Every run of ``data_roots`` (``{name: its data}``), ``parallel`` at a time; ``record``: each saved for later
    tables (`_recorded_run`)."""
    from concurrent.futures import ThreadPoolExecutor  # each run is a child process; a thread only waits for it
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {name: pool.submit(_recorded_run, name, work_dir, root, threads, parallel) if record else
                   pool.submit(run_dense, name, _run_dir(work_dir, name), root,
                               (extra_options or {}).get(DENSE_RUNS[name][0], ()), threads)
                   for name, root in data_roots.items()}
        return {name: future.result() for name, future in futures.items()}


def run_dense_stage(work_dir: str, names: Sequence[str] = MAIN_JOB_RUNS,
                    parallel: int = 2) -> Tuple[Dict[str, Dict], List[str]]:
    """The main job's dense stage: write the dense digits under ``work_dir``, run ``names`` with the stock tools,
    ``parallel`` at a time (one thread each when more than one: on 2 cores the stage takes as long as its longest run).

    Returns ``({name: metrics}, misses)``, ``misses`` one line per run below its goal (:func:`goal_misses`)."""
    results = _run_all(write_data(names, work_dir), work_dir, parallel, 1 if parallel > 1 else None)
    return results, goal_misses(results)


def _figure(metrics: Dict, key: str, scale: float = 1.0, digits: int = 1) -> str:
    return f'{metrics[key] * scale:.{digits}f}' if key in metrics else '-'


def _goal_cell(name: str, metrics: Dict) -> str:
    try:
        check_goal(name, metrics)
        cell = 'met'
    except GoalMissed:
        cell = '**missed**'
    return cell + (f', **trained over {TRAIN_BUDGET_S // 60} min**' if metrics['train_s'] > TRAIN_BUDGET_S else '')


def _when_cell(m: Dict) -> str:
    if 'date' not in m:
        return ''
    beside = f', {m["parallel"]} runs at a time' if m.get('parallel', 1) > 1 else ''
    return f'{m["date"]}, load {m["load_before"]:.1f}→{m["load_after"]:.1f}, {m["threads"]} thread(s){beside}'


def dense_table(results: Dict[str, Dict], machine: str) -> str:
    """Rows (``{name: metrics}`` of :func:`run_dense`, with the date and load where recorded) -> the markdown table,
    with ``machine`` (and how it was run) under it."""
    header = ('model', 'config', 'mIoU', 'bbox AP', 'AP50', 'mask AP', 'goal', 'train time (s)', 'peak memory (MiB)',
              'measured')
    rows = [(name, f'`configs/digits_dense/{DENSE_RUNS[name][1]}`', _figure(m, 'mIoU'),
             _figure(m, 'coco/bbox_mAP', digits=3), _figure(m, 'coco/bbox_mAP_50', digits=3),
             _figure(m, 'coco/segm_mAP', digits=3), _goal_cell(name, m), f'{m["train_s"]:.0f}',
             f'{m["peak_mib"]:.0f}', _when_cell(m))
            for name, m in results.items()]
    return '\n'.join(['## Dense digits: segmentation and detection that learn', ''] + markdown_table(header, rows)
                     + ['', machine])


def _machine(command: str) -> str:
    goals = (f'Goals (issue 34), on the held-out canvases after at most {TRAIN_BUDGET_S // 60} minutes of training: '
             f'mIoU >= {SEG_GOAL_MIOU:g}; bbox AP >= {DET_GOAL_AP:g} and AP50 >= {DET_GOAL_AP50:g}; the negative '
             f'control (the same run on training label maps shuffled across canvases) mIoU < {CONTROL_MAX_MIOU:g}.')
    return (f'{goals} Machine: {machine_description()}. Command: `{command}`. Train time: wall seconds of the '
            'training process (with another run beside it where the row says so). Measured: each row\'s date, '
            '1-minute load average before→after its run and threads; rows saved by earlier runs in the same work '
            'directory with an unchanged config are kept.')


def _train_and_test(args, work_dir: str, threads: int) -> Dict[str, Dict]:
    data_roots = write_data(args.only or list(DENSE_RUNS), work_dir, **(_QUICK_DATA if args.quick else {}))
    return _run_all(data_roots, work_dir, args.parallel, threads, _QUICK_OPTIONS if args.quick else None,
                    record=not args.quick)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``modzoo-bench-dense`` / ``tools/bench_dense.py``."""
    parser = OneLineArgumentParser(description='Train and test every dense-digits config with the stock tools; '
                                               'check the goals and write the BENCHMARKS.md dense section.')
    parser.add_argument('--work-dir', default='output/dense', help='runs and the written dataset go here')
    parser.add_argument('--only', nargs='+', choices=sorted(DENSE_RUNS), help='these runs only')
    parser.add_argument('--update', metavar='MARKDOWN', help=f'rewrite the section between {_MARKERS[0]} and '
                                                             f'{_MARKERS[1]} of this file (e.g. BENCHMARKS.md)')
    parser.add_argument('--parallel', type=int, default=1, metavar='N',
                        help='run N configs at a time (default 1), each with cores/N threads (at least 1)')
    parser.add_argument('--quick', action='store_true',
                        help=f'check the pipeline only: every run for {_QUICK_OPTIONS["mmseg"][0].split("=")[1]} '
                             f'iterations (mmseg) or one epoch (mmdet) on {_QUICK_DATA["num_train"]} training '
                             'canvases; prints the table, checks no goal, cannot --update')
    parser.add_argument('--saved-only', action='store_true',
                        help='train nothing: write the table from the results earlier runs saved in --work-dir')
    args = parser.parse_args(argv)
    threads = max(1, (os.cpu_count() or 1) // max(args.parallel, 1))
    try:
        if args.update and not osp.isfile(args.update):
            raise UsageError(f'--update {args.update}: no such file; name an existing markdown file')
        if args.parallel < 1:
            raise UsageError(f'--parallel {args.parallel}: give at least 1')
        if args.quick and args.update:
            raise UsageError('--quick figures mean nothing and go in no table: drop --update (or --quick)')
        if args.saved_only and (args.quick or args.only):
            raise UsageError('--saved-only trains nothing: drop --quick and --only')
        work_dir = osp.join(args.work_dir, 'quick') if args.quick else args.work_dir  # apart from the full runs
        results = {} if args.saved_only else _train_and_test(args, work_dir, threads)
        if args.saved_only and not saved_results(work_dir):
            raise UsageError(f'--saved-only: no saved result of an unchanged config in {work_dir}; run without it')
    except UsageError as e:
        return print_error(e)
    command = shlex.join(['python', 'tools/bench_dense.py', *(argv if argv is not None else sys.argv[1:])])
    shown = results if args.quick else {**saved_results(work_dir), **results}  # + earlier runs' rows
    table = dense_table({name: shown[name] for name in DENSE_RUNS if name in shown},
                        _machine(command))
    print(table)
    if args.update:
        write_report(blocks=[Block(args.update, *_MARKERS, table)])
    if args.quick:
        print('--quick: every run trained and tested end to end; goals not checked')
        return 0
    missed = goal_misses(results)
    for line in missed:
        print(f'goal missed: {line}', file=sys.stderr)
    return 1 if missed else 0
