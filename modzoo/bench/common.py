"""Helpers shared by the benchmarks and reports of ``modzoo.bench``.

The machine line of a result (CPU name and flags, cores, memory, library versions), the load guard that marks or
re-measures rows taken on a busy machine, interleaved timing of several engines, the memory figures of
``/proc/self/status``, the environment of measurement subprocesses, and the paths of BENCHMARKS.md and README.md
(their tables and marked blocks are written by :mod:`modzoo.bench.report`).
Standard library only (torch is imported inside the one function that needs it).
"""
import contextlib
import importlib
import os
import platform
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

from ..runtimes.worker import proc_status_mib, reset_peak_rss
from ..utils.marked_blocks import BENCHMARKS, README, REPO_ROOT

__all__ = ['REPO_ROOT', 'BENCHMARKS', 'README', 'cpu_name', 'cpu_flags', 'vnni_description', 'machine_description',
           'load_1min', 'default_load_threshold', 'LoadGuard', 'load_cell', 'load_note', 'interleaved_seconds',
           'keep_torch_threads', 'proc_status_mib', 'reset_peak_rss', 'subprocess_env']


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` reports."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty off Linux)."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def vnni_description(flags: Optional[set] = None) -> str:
    """Which int8 dot-product instructions the CPU has: int8 ONNX Runtime kernels are fastest with VNNI."""
    flags = cpu_flags() if flags is None else flags
    vnni = [name for name, flag in (('AVX-512 VNNI', 'avx512_vnni'), ('AVX-VNNI', 'avx_vnni'),
                                    ('AMX-INT8', 'amx_int8')) if flag in flags]
    if vnni:
        return ', '.join(vnni) + ' present'
    widest = 'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX-512/AVX2'
    return f'no VNNI ({widest} only)'


def _mem_gib() -> float:
    try:
        with open('/proc/meminfo') as f:
            return int(f.readline().split()[1]) / 2 ** 20
    except (OSError, ValueError, IndexError):
        return float('nan')


def machine_description(threads: Optional[int] = None, libraries: Sequence[str] = ('torch',),
                        vnni: bool = False) -> str:
    """The one machine line of every benchmark: CPU, cores, RAM, threads, library versions (only those given, so the
    torch-free ONNX Runtime worker can call it with ``libraries=('onnxruntime',)``), Python."""
    parts = [cpu_name()]
    if vnni:
        parts.append(vnni_description())
    parts += [f'{os.cpu_count()} cores', f'{_mem_gib():.0f} GiB RAM']
    if threads is not None:
        parts.append(f'{threads} intra-op thread{"s" if threads != 1 else ""}')
    versions = []
    for name in libraries:
        try:
            versions.append(f'{name} {importlib.import_module(name).__version__}')
        except ImportError:
            continue
    return ', '.join(parts) + '; ' + ', '.join(versions + [f'Python {platform.python_version()}'])


# ----------------------------------------------------------------------------------------------------------------
# load guard


def load_1min() -> float:
    """The 1-minute load average (runnable + uninterruptible tasks, including this process's own threads)."""
    return os.getloadavg()[0]


def default_load_threshold() -> float:
    """0.75 x cores (1.5 on 2 cores): above it a one-thread row shares its core with other jobs."""
    return 0.75 * (os.cpu_count() or 1)


class LoadGuard:
    """Measure a benchmark row, read the load average before and after it, re-measure when the machine was busy.

    ``threshold`` is the 1-minute load a one-thread row may see; a row running ``threads`` threads puts that many
    runnable threads on the machine itself, so its limit is ``threshold + threads - 1``; the reading before a row still
    carries the previous row's threads (the average decays over a minute), so it is judged against the larger of the
    two limits. A row above its limit is measured again after ``wait_s`` (up to ``retries`` times); if the machine
    stays busy the last measurement is kept
    and marked ``loaded``, never silently mixed with quiet rows. ``read_load`` and ``sleep`` are injectable for
    tests.
    """

    def __init__(self, threshold: Optional[float] = None, retries: int = 1, wait_s: float = 30.0,
                 read_load: Callable[[], float] = load_1min, sleep: Callable[[float], None] = time.sleep):
        self.threshold = default_load_threshold() if threshold is None else float(threshold)
        self.retries, self.wait_s = int(retries), float(wait_s)
        self.read_load, self.sleep = read_load, sleep
        self.previous_threads = 1

    def limit(self, threads: int = 1) -> float:
        return self.threshold + max(int(threads), 1) - 1

    def measure(self, fn: Callable[[], Dict], threads: int = 1) -> Dict:
        """``fn()`` (a dict of figures) with ``load_before``, ``load_after``, ``load_limit``, ``loaded`` and
        ``attempts`` added."""
        limit = self.limit(threads)
        before_limit = self.limit(max(threads, self.previous_threads))
        for attempt in range(1, self.retries + 2):
            before = self.read_load()
            row = dict(fn())
            after = self.read_load()
            loaded = before > before_limit or after > limit
            if not loaded or attempt > self.retries:
                break
            self.sleep(self.wait_s)
            before_limit = limit  # after the pause the previous row's threads have decayed out of the average
        self.previous_threads = threads
        row.update(load_before=round(before, 2), load_after=round(after, 2), load_limit=round(limit, 2),
                   loaded=loaded, attempts=attempt)
        return row


def add_load_guard_args(parser) -> None:
    """The options of :class:`LoadGuard` every CPU benchmark takes: the load a row may see, and its re-measuring."""
    parser.add_argument('--load-threshold', type=float, default=default_load_threshold(),
                        help="1-minute load average a one-thread row may see (default 0.75 x cores; a row's own "
                             'threads beyond one are added); rows above it are re-measured, then marked LOADED')
    parser.add_argument('--load-retries', type=int, default=1, help='re-measurements of a row above the threshold')
    parser.add_argument('--load-wait', type=float, default=30.0, help='seconds to wait before re-measuring a row')


def load_cell(row: Dict) -> str:
    """The load column of a table row: ``before→after``, with ``LOADED`` when above the row's limit."""
    text = f'{row["load_before"]:.1f}→{row["load_after"]:.1f}'
    return text + (' **LOADED**' if row.get('loaded') else '')


def load_note(rows: Sequence[Dict]) -> str:
    """One sentence under a table: the limit, and how many rows exceeded it after re-measuring."""
    if not rows:
        return ''
    loaded = sum(bool(r.get('loaded')) for r in rows)
    limits = sorted({r['load_limit'] for r in rows})
    text = (f'Load: the 1-minute load average before→after each row; a row above its limit '
            f'({", ".join(f"{x:g}" for x in limits)}: the threshold plus the row\'s own threads beyond one) was '
            f'measured again after a pause. ')
    if loaded:
        return text + (f'**{loaded} of {len(rows)} rows stayed above it and are marked LOADED: other jobs shared '
                       f'the CPU, do not compare them with the rest.**')
    return text + f'All {len(rows)} rows are within it.'


# ----------------------------------------------------------------------------------------------------------------
# timing and processes


def interleaved_seconds(timers: Dict[str, Callable[[], float]], repeats: int, warmup: int = 0,
                        alternate: bool = True) -> Dict[str, List[float]]:
    """Seconds of ``repeats`` calls of each timer (one forward each), interleaved so machine noise hits all alike.

    With ``alternate`` the order flips every round (A, B, B, A, ...); the first ``warmup`` rounds are not kept."""
    names = list(timers)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for i in range(warmup + repeats):
        for name in (names if i % 2 == 0 or not alternate else names[::-1]):
            seconds = timers[name]()
            if i >= warmup:
                times[name].append(seconds)
    return times


@contextlib.contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Restore torch's intra-op thread count on exit: the benchmarks change it per row and tests call them
    in-process."""
    import torch
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def subprocess_env(**extra: str) -> Dict[str, str]:
    """The environment of a measurement subprocess: this one's, with the folder holding this ``modzoo`` first on
    ``PYTHONPATH`` so the child imports the same copy of the package, plus ``extra``."""
    path = os.environ.get('PYTHONPATH')
    return dict(os.environ, PYTHONPATH=REPO_ROOT + (os.pathsep + path if path else ''), **extra)
