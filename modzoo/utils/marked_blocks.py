"""Marked blocks (``<!-- x:start -->`` ... ``<!-- x:end -->``) of BENCHMARKS.md and README.md, which the benchmark
and report tools regenerate in place."""
import os
import re

from .files import atomic_write

__all__ = ['REPO_ROOT', 'BENCHMARKS', 'README', 'replace_marked', 'update_marked_file']

# the source checkout this package runs from (editable install): the tools regenerate its BENCHMARKS.md and README.md
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARKS = os.path.join(REPO_ROOT, 'BENCHMARKS.md')
README = os.path.join(REPO_ROOT, 'README.md')


def replace_marked(text: str, start: str, end: str, block: str) -> str:
    """``text`` with its ``start`` ... ``end`` block replaced by ``block`` (which carries the markers itself), or
    with ``block`` appended when ``text`` has no such block.

    ValueError when ``block`` holds a marker inside it, or ``text`` holds a marker twice: the next replacement would
    stop at the inner marker and leave the rest behind."""
    if not (block.startswith(start) and block.endswith(end) and block.count(start) == block.count(end) == 1):
        raise ValueError(f'refusing to write a block that holds {start} or {end} inside it')
    if text.count(start) > 1 or text.count(end) > 1:
        raise ValueError(f'the file holds {start} or {end} more than once: remove the stray marker and what a '
                         'broken render left beside it, then write again')
    if start in text and end in text:
        return re.sub(re.escape(start) + '.*?' + re.escape(end), lambda _: block, text, flags=re.S)
    return text.rstrip('\n') + '\n\n' + block + '\n'


def update_marked_file(path: str, start: str, end: str, block: str, new_file: str = '# modzoo benchmarks\n') -> None:
    """:func:`replace_marked` on the file at ``path`` (``new_file`` is its content when it does not exist yet), written
    atomically."""
    text = new_file
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    with atomic_write(path, 'w') as f:
        f.write(replace_marked(text, start, end, block))
