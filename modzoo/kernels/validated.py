"""The validated-kernel table: the (op, dtype, GPU family) triples on which ``auto`` runs the Triton kernels.

The table ships as package data (``modzoo/data/validated_kernels.json``); the environment variable
``MODZOO_KERNELS_TABLE`` points at another file instead (e.g. one ``tools/gpu_check.py --table`` wrote for a card the
package has no entries for). Only ``tools/gpu_check.py`` writes it, with the entries whose kernels matched the fp64
reference, were deterministic and beat eager PyTorch on that card. Format::

    {"written_by": "tools/gpu_check.py", "entries": [
        {"op": "focal_context", "dtype": "bfloat16", "gpu": "sm90 H100 SXM", ...measurements...}]}
"""
import functools
import json
import os
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

__all__ = ['TABLE_ENV_VAR', 'DEFAULT_TABLE', 'OPS', 'DTYPES', 'WRITTEN_BY', 'TableError', 'table_path',
           'load_table', 'validated_keys', 'is_validated', 'write_table']

TABLE_ENV_VAR = 'MODZOO_KERNELS_TABLE'
DEFAULT_TABLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data',
                             'validated_kernels.json')
OPS = ('focal_context', 'dwconv_gelu', 'gelu_tile_mul', 'mixed_dwconv_interleave')
DTYPES = ('float32', 'float16', 'bfloat16')
WRITTEN_BY = 'tools/gpu_check.py'

Key = Tuple[str, str, str]


class TableError(ValueError):
    """The validated-kernel table file is malformed."""


def table_path() -> str:
    return os.environ.get(TABLE_ENV_VAR) or DEFAULT_TABLE


def load_table(path: Optional[str] = None) -> List[dict]:
    """The entries of the table at ``path`` (default :func:`table_path`); :class:`TableError` names what is wrong."""
    path = path or table_path()
    fix = f'regenerate it with {WRITTEN_BY} or restore the packaged file'
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise TableError(f'validated-kernel table {path}: cannot read it ({e.strerror}); {fix}') from None
    except json.JSONDecodeError as e:
        raise TableError(f'validated-kernel table {path}: not valid JSON ({e.msg}, line {e.lineno}); {fix}') from None
    if not isinstance(data, dict) or not isinstance(data.get('entries'), list):
        raise TableError(f'validated-kernel table {path}: expected an object with an "entries" list; {fix}')
    for i, entry in enumerate(data['entries']):
        problem = _entry_problem(entry)
        if problem:
            raise TableError(f'validated-kernel table {path}: entry {i} {problem}; {fix}')
    return data['entries']


def _entry_problem(entry) -> Optional[str]:
    if not isinstance(entry, dict):
        return 'is not an object'
    if entry.get('op') not in OPS:
        return f'has op {entry.get("op")!r} (expected one of {OPS})'
    if entry.get('dtype') not in DTYPES:
        return f'has dtype {entry.get("dtype")!r} (expected one of {DTYPES})'
    if not isinstance(entry.get('gpu'), str) or not entry['gpu'].startswith('sm'):
        return f'has gpu {entry.get("gpu")!r} (expected a GPU family such as "sm90 H100 SXM")'
    return None


@functools.lru_cache(maxsize=None)
def _keys(path: str) -> FrozenSet[Key]:
    return frozenset((e['op'], e['dtype'], e['gpu']) for e in load_table(path))


def validated_keys() -> FrozenSet[Key]:
    """The (op, dtype, GPU family) triples of the current table (read once per path)."""
    return _keys(table_path())


def is_validated(op: str, dtype: str, gpu: str) -> bool:
    return (op, dtype, gpu) in validated_keys()


def write_table(path: str, families: Iterable[str], entries: List[dict]) -> None:
    """Replace the entries of ``families`` in the table at ``path`` by ``entries`` (other cards' entries stay)."""
    families = set(families)
    for i, entry in enumerate(entries):
        problem = _entry_problem(entry)
        if problem:
            raise TableError(f'refusing to write {path}: new entry {i} {problem}')
    kept: List[dict] = []
    if os.path.exists(path):
        kept = [e for e in load_table(path) if e['gpu'] not in families]
    merged = sorted(kept + list(entries), key=lambda e: (e['gpu'], e['op'], e['dtype']))
    data: Dict = {'written_by': WRITTEN_BY, 'entries': merged}
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=1)
        f.write('\n')
    os.replace(tmp, path)
    _keys.cache_clear()
