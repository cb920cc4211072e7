"""The one writer of benchmark reports: markdown tables, the JSON results, and the marked blocks of BENCHMARKS.md and
README.md that the bench tools regenerate.

Every bench module renders its tables with :func:`markdown_table` and its provenance line with
:func:`provenance_line`, and ends with :func:`write_report`: the JSON results first (the record a later
``--from-json`` renders again), then each marked block. Files are written atomically.
"""
import json
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from ..utils.files import atomic_write
from ..utils.marked_blocks import update_marked_file

__all__ = ['Block', 'markdown_table', 'provenance_line', 'write_json', 'write_text', 'write_report']


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list:
    """The lines of a markdown table: the header, the ``|---|`` rule, then one line per row of cells.

    An empty heading renders as one space (a column without a title)."""
    lines = ['|' + '|'.join(f' {h} ' if h else ' ' for h in header) + '|', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows]
    return lines


def provenance_line(machine: str, date: str, command: str) -> str:
    """``Machine: ... Date: ... Command: `...`.``: where and how a table was measured."""
    return f'Machine: {machine}. Date: {date}. Command: `{command}`.'


@dataclass(frozen=True)
class Block:
    """A marked block of a markdown file: ``start``, then ``text``, then ``end``, each on its own lines."""
    path: str
    start: str
    end: str
    text: str


def write_text(path: str, text: str) -> None:
    with atomic_write(path, 'w') as f:
        f.write(text)


def write_json(path: str, data: Any, sort_keys: bool = False) -> None:
    """``data`` as indented JSON, written atomically (a run cut short leaves the previous complete file)."""
    write_text(path, json.dumps(data, indent=1, sort_keys=sort_keys) + '\n')


def write_report(results: Any = None, json_path: Optional[str] = None, blocks: Sequence[Block] = ()) -> None:
    """The ending of every benchmark: ``results`` into ``json_path`` (when given), then each marked block."""
    if json_path:
        write_json(json_path, results)
    for block in blocks:
        update_marked_file(block.path, block.start, block.end, f'{block.start}\n{block.text}\n{block.end}')

