"""The one writer of benchmark reports: markdown tables, the JSON results, and the marked blocks of BENCHMARKS.md and
README.md that the bench tools regenerate.

Every bench module renders its tables with :func:`markdown_table` and its provenance line with
:func:`provenance_line`, and ends with :func:`write_report`: the JSON results first (the record a later
``--from-json`` renders again), then each marked block. Files are written atomically. Saved results are read back
with :func:`read_results`, which names a bad file in one line.

Every cell and every value in a provenance line goes through :func:`escape`: a card name, an error message or a
command from a results file renders as text on its line, never as a heading, raw HTML or a block marker.
"""
import json
import sys
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional, Sequence

from ..utils.cli import UsageError, check_distinct_paths, check_output_file
from ..utils.files import atomic_write
from ..utils.marked_blocks import update_marked_file

__all__ = ['Block', 'escape', 'markdown_table', 'provenance_line', 'write_json', 'write_text', 'write_report',
           'read_results', 'load_run', 'check_json_output', 'failure_status']


def escape(value: Any) -> str:
    """``value`` as text that stays inside its table cell or line: on one line, ``|`` escaped, ``<`` and ``>`` as
    entities (no raw HTML, no ``<!-- ... -->`` marker), a leading ``#`` escaped (no heading). Markdown emphasis and
    code spans pass unchanged: the tables use them."""
    text = ' '.join(str(value).splitlines()).replace('|', '\\|').replace('<', '&lt;').replace('>', '&gt;')
    return re.sub(r'^(\s*)#', r'\1\\#', text)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list:
    """The lines of a markdown table: the header, the ``|---|`` rule, then one line per row; every cell escaped.

    An empty heading renders as one space (a column without a title)."""
    lines = ['|' + '|'.join(f' {escape(h)} ' if h else ' ' for h in header) + '|', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(escape(cell) for cell in row) + ' |' for row in rows]
    return lines


def provenance_line(machine: str, date: str, command: str) -> str:
    """``Machine: ... Date: ... Command: `...`.``: where and how a table was measured (every value escaped)."""
    return f'Machine: {escape(machine)}. Date: {escape(date)}. Command: `{escape(command)}`.'


@dataclass(frozen=True)
class Block:
    """A marked block of a markdown file: ``start``, then ``text``, then ``end``, each on its own lines."""
    path: str
    start: str
    end: str
    text: str


def write_text(path: str, text: str) -> None:
    """``text`` into ``path``, atomically; a missing folder is created with it (:func:`check_json_output` allowed
    it)."""
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


def read_results(path: str, flag: str = '--from-json', required: Sequence[str] = (),
                 fix: str = 'pass a file the same tool wrote with --json') -> Any:
    """The results a bench tool saved at ``path``; :class:`UsageError` (one line, ending with ``fix``) when the file
    cannot be read, is not JSON, or is not an object with the ``required`` keys."""
    if os.path.isdir(path):
        raise UsageError(f'{flag} {path} is a folder; {fix}')
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise UsageError(f'{flag} {path}: cannot read it ({e.strerror}); {fix}') from None
    except ValueError as e:  # JSONDecodeError, or bytes that are not text
        raise UsageError(f'{flag} {path} is not valid JSON ({e}); {fix}') from None
    if required:
        if not isinstance(data, dict):
            raise UsageError(f'{flag} {path} holds a JSON {type(data).__name__}, not the object of a run; {fix}')
        missing = [key for key in required if key not in data]
        if missing:
            raise UsageError(f'{flag} {path} lacks {", ".join(missing)}; {fix}')
    return data


def check_json_output(parser, path: Optional[str], flag: str = '--json', inputs: Optional[Dict[str, Any]] = None,
                      outputs: Optional[Dict[str, Any]] = None) -> None:
    """The parser's one-line error when the results file ``path`` could not be written (a folder, read-only, under
    a file) or would replace one of the files the run reads (``inputs``) or writes besides (``outputs``), each
    ``{flag: path}``: checked before a benchmark measures for minutes, not after."""
    if path:
        try:
            check_output_file(path, flag)
            check_distinct_paths({**(outputs or {}), flag: path}, inputs)
        except UsageError as e:
            parser.error(str(e))


def failure_status(run: dict) -> int:
    """The exit status of a measured run: 1 when a model failed (the run lists it under its table and keeps the
    others' rows), else 0."""
    failed = {name: why for name, why in run.get('skipped', {}).items() if why.startswith('failed')}
    for name, why in failed.items():
        print(f'FAILED {name}: {why}', file=sys.stderr)
    return 1 if failed else 0


def load_run(parser, path: str, required: Sequence[str]) -> dict:
    """:func:`read_results` for a command line: the parser's one-line error instead of :class:`UsageError`."""
    try:
        return read_results(path, required=required)
    except UsageError as e:
        parser.error(str(e))
