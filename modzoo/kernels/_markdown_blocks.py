"""Marked blocks of BENCHMARKS.md, which the GPU check and the static report rewrite in place."""
import os
import re

# the source checkout's BENCHMARKS.md (the package sits at <checkout>/modzoo/kernels)
BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          'BENCHMARKS.md')


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
