"""The GPU check's measuring instruments: the CUDA timer (side-stream warm-up, CUDA-graph capture and replay timed
with events, plain launches when capture fails), peak memory, the copy-bandwidth probe, what the machine runs (versions,
card, driver, clocks) and the process's start time, which the check's deadline counts from.

Every instrument takes the CUDA API as an argument: ``torch.cuda`` on a GPU, :class:`CpuStandIn` in the dry run, so
that the same logic runs on a CPU (its timings mean nothing there).
"""
import contextlib
import importlib
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, Optional, Tuple

import torch

__all__ = ['CpuStandIn', 'measure_ms', 'peak_mib', 'kernel_calls', 'copy_bandwidth_gbs', 'environment',
           'process_start_time', 'START_ENV_VAR']

# the wall-clock start of the process the user launched, handed to a re-executed child so its deadline counts from it
START_ENV_VAR = 'MODZOO_GPU_CHECK_STARTED'


def process_start_time() -> float:
    """Wall-clock time (``time.time()``) at which this process (or the one that re-executed it) started."""
    if os.environ.get(START_ENV_VAR):
        return float(os.environ[START_ENV_VAR])
    try:
        with open('/proc/self/stat') as f:
            start_ticks = float(f.read().rsplit(')', 1)[1].split()[19])
        with open('/proc/uptime') as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - start_ticks / os.sysconf('SC_CLK_TCK'))
    except (OSError, ValueError, IndexError):  # not Linux: the moment this module was imported
        return _IMPORTED


_IMPORTED = time.time()


class CpuStandIn:
    """The parts of ``torch.cuda`` the timer and the probes use, on the CPU: streams and graph capture run the work
    in place, a graph's replay does nothing, events read the host clock, memory counters read 0. It counts what was
    called so that tests can follow the timer's path. ``fail_capture`` makes capture raise, as some calls do on CUDA."""

    def __init__(self, fail_capture: bool = False):
        self.fail_capture = fail_capture
        self.counts = dict(synchronize=0, capture=0, replay=0, event=0, side_stream=0)

    class _Stream:
        def wait_stream(self, other):
            pass

    def Stream(self, device=None):  # noqa: N802 -- torch.cuda's name
        self.counts['side_stream'] += 1
        return self._Stream()

    def current_stream(self, device=None):
        return self._Stream()

    @contextlib.contextmanager
    def stream(self, s):
        yield

    def synchronize(self, device=None):
        self.counts['synchronize'] += 1

    class _Graph:
        def __init__(self, owner):
            self.owner = owner

        def replay(self):
            self.owner.counts['replay'] += 1

    def CUDAGraph(self):  # noqa: N802 -- torch.cuda's name
        return self._Graph(self)

    @contextlib.contextmanager
    def graph(self, g):
        if self.fail_capture:
            raise RuntimeError('operation not permitted when stream is capturing')
        self.counts['capture'] += 1
        yield

    class _Event:
        def __init__(self, owner, enable_timing=False):
            owner.counts['event'] += 1
            self.t = None

        def record(self, stream=None):
            self.t = time.perf_counter()

        def synchronize(self):
            pass

        def elapsed_time(self, other) -> float:
            return (other.t - self.t) * 1e3

    def Event(self, enable_timing=False):  # noqa: N802 -- torch.cuda's name
        return self._Event(self, enable_timing)

    def memory_allocated(self, device=None) -> int:
        return 0

    def max_memory_allocated(self, device=None) -> int:
        return 0

    def reset_peak_memory_stats(self, device=None):
        pass

    def empty_cache(self):
        pass


def measure_ms(cuda, device: torch.device, call: Callable[[int], None], n_inputs: int, graph_calls: int,
               replays: int, warmup: int = 3) -> Tuple[float, bool]:
    """Median time of one ``call(i)`` (``i`` cycles over ``n_inputs`` input copies) and whether CUDA graphs were
    used: warm-up on a side stream (compilation, autotuning, lazy init stay outside the capture), ``graph_calls``
    calls captured into one graph, its replays timed with events. Should capture fail, plain launches are timed."""
    side = cuda.Stream(device)
    side.wait_stream(cuda.current_stream(device))
    with cuda.stream(side):
        for i in range(max(warmup, n_inputs)):
            call(i % n_inputs)
    cuda.current_stream(device).wait_stream(side)
    cuda.synchronize(device)

    def launches():
        for i in range(graph_calls):
            call(i % n_inputs)

    graphed, graph = True, None
    try:
        graph = cuda.CUDAGraph()
        with cuda.graph(graph):
            launches()
        run = graph.replay
    except Exception as e:  # noqa: BLE001 -- some calls cannot be captured; time them as launches instead
        print(f'[timing] CUDA graph capture failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); timing '
              f'plain launches', flush=True)
        cuda.synchronize(device)
        graphed, run = False, launches
    run()
    cuda.synchronize(device)
    times = []
    for _ in range(replays):
        start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / graph_calls)
    del run, graph
    return statistics.median(times), graphed


def peak_mib(cuda, device: torch.device, call: Callable[[], None]) -> float:
    """Memory allocated during one call above what was allocated before it (MiB)."""
    cuda.synchronize(device)
    base = cuda.memory_allocated(device)
    cuda.reset_peak_memory_stats(device)
    call()
    cuda.synchronize(device)
    return (cuda.max_memory_allocated(device) - base) / 2 ** 20


def kernel_calls(fn: Callable[[], None]) -> Dict[str, int]:
    """modzoo custom-op calls made by ``fn`` (0 when a model does not reach ``modzoo.kernels``)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    counts: Dict[str, int] = {}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == 'modzoo':
                name = func._schema.name.split('::')[1]
                counts[name] = counts.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return counts


def copy_bandwidth_gbs(cuda, device: torch.device, numel: int, graph_calls: int, replays: int) -> Optional[float]:
    """Achieved bandwidth of a device-to-device copy of ``numel`` float32 values (bytes read + written)."""
    src = torch.empty(numel, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms, _ = measure_ms(cuda, device, lambda i, s=src, d=dst: d.copy_(s), 1, graph_calls, replays)
    return 2 * numel * 4 / ms / 1e6 if ms > 0 else None


def _version(name: str) -> Optional[str]:
    """The version of an importable package without importing it (None when absent)."""
    if name in sys.modules:
        return getattr(sys.modules[name], '__version__', None)
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except (ImportError, ValueError):
        return None
    try:
        from importlib import metadata
        return metadata.version(name)
    except Exception:  # noqa: BLE001 -- importable without metadata: ask the module
        return getattr(importlib.import_module(name), '__version__', 'unknown')


def _nvidia_smi() -> dict:
    fields = ('driver_version', 'clocks.sm', 'clocks.max.sm', 'clocks.mem', 'temperature.gpu', 'power.draw',
              'utilization.gpu')
    names = ('driver', 'sm_clock_mhz', 'max_sm_clock_mhz', 'mem_clock_mhz', 'temperature_c', 'power_w',
             'utilization_pct')
    try:
        out = subprocess.run(['nvidia-smi', f'--query-gpu={",".join(fields)}', '--format=csv,noheader,nounits'],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return {}
    if out.returncode != 0 or not out.stdout.strip():
        return {}
    # strict=False: an older nvidia-smi answers fewer fields, and those it lacks stay unknown
    return dict(zip(names, (v.strip() for v in out.stdout.splitlines()[0].split(',')), strict=False))


def environment(device: torch.device) -> dict:
    """Versions of what the check runs on, the card, its driver and clocks, and the load average."""
    import triton
    env = dict(python=platform.python_version(), torch=torch.__version__, triton=triton.__version__,
               **{name: _version(name) or 'absent' for name in ('timm', 'numpy', 'onnx', 'onnxruntime')},
               load_average=' '.join(f'{v:.2f}' for v in os.getloadavg()))
    if device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        env.update(card=props.name, capability=f'{props.major}.{props.minor}', sms=props.multi_processor_count,
                   memory_gib=round(props.total_memory / 2 ** 30, 1), cuda=torch.version.cuda, **_nvidia_smi())
    return env
