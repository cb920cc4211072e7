"""Benchmarks and generated reports: the logic behind ``tools/bench_*.py``, ``tools/model_table.py``,
``tools/zoo_report.py`` and ``tools/aliasing.py``, one module per tool, each with ``main(argv=None)``.

``common`` holds what they share (machine line, load guard, interleaved timing); ``report`` is the one writer of their
tables, JSON results and marked blocks of BENCHMARKS.md and README.md. Not imported by ``import modzoo``; modules here
import the package, never the other way round.
"""
