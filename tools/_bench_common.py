"""Helpers shared by the benchmark and report tools (``bench_*.py``, ``model_table.py``, ``zoo_report.py``).

The CPU's name for the machine line of a result, the memory figures of ``/proc/self/status``, and the marked blocks
(``<!-- x:start -->`` ... ``<!-- x:end -->``) the tools regenerate in BENCHMARKS.md and README.md.
Standard library only: the ONNX Runtime worker of ``bench_onnx.py`` imports it without torch.
"""
import os
import platform
import re

__all__ = ['cpu_name', 'proc_status_mib', 'reset_peak_rss', 'replace_marked', 'update_marked_file']


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


def proc_status_mib(field: str = 'VmRSS') -> float:
    """A memory field of ``/proc/self/status`` in MiB: ``VmRSS`` (resident now) or ``VmHWM`` (peak resident)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    return float('nan')


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (``VmHWM``) to the current resident set (Linux)."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def replace_marked(text: str, start: str, end: str, block: str) -> str:
    """``text`` with its ``start`` ... ``end`` block replaced by ``block`` (which carries the markers itself), or
    with ``block`` appended when ``text`` has no such block."""
    if start in text and end in text:
        return re.sub(re.escape(start) + '.*?' + re.escape(end), lambda _: block, text, flags=re.S)
    return text.rstrip('\n') + '\n\n' + block + '\n'


def update_marked_file(path: str, start: str, end: str, block: str, new_file: str = '# modzoo benchmarks\n') -> None:
    """:func:`replace_marked` on the file at ``path`` (``new_file`` is its content when it does not exist yet)."""
    text = new_file
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    with open(path, 'w') as f:
        f.write(replace_marked(text, start, end, block))
