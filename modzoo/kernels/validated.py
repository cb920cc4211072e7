"""The validated-kernel table: where ``auto`` runs the Triton kernels.

The table ships as package data (``modzoo/data/validated_kernels.json``); the environment variable
``MODZOO_KERNELS_TABLE`` points at another file instead (e.g. one ``tools/gpu_check.py --table`` wrote for a card the
package has no entries for). Only ``tools/gpu_check.py`` writes it. An entry covers one op on one GPU family in one
layout, for one tuple of argument dtypes and a range of depthwise kernel sizes, under the Triton and torch versions
it was checked with; the GPU check writes it only when every shape it checked there matched the fp64 reference, was
deterministic, and was not slower than eager PyTorch in the forward nor in forward+backward. Format::

    {"written_by": "tools/gpu_check.py", "entries": [
        {"op": "dwconv_gelu", "dtype": "bfloat16", "gpu": "sm90 H200 SXM", "layout": "channels_last",
         "dtypes": ["bfloat16", "float32", "float32"], "k_min": 7, "k_max": 7, "triton": "3.6.0",
         "torch": "2.11.0+cu130", "shapes": ["EfficientMod-s s1 32x56² k7", ...], ...measurements...}]}

``k_min``/``k_max`` are null for an op without a depthwise kernel. A call matches an entry when its op, GPU family,
layout and argument dtypes are the entry's, every kernel size it passes lies in the range (and it passes some
exactly when the range is set), and the running Triton and torch have the entry's major.minor versions.
"""
import functools
import json
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..utils.files import atomic_write

__all__ = ['TABLE_ENV_VAR', 'DEFAULT_TABLE', 'OPS', 'DTYPES', 'LAYOUTS', 'WRITTEN_BY', 'TableError', 'table_path',
           'load_table', 'entries_for', 'matching_entry', 'major_minor', 'write_table']

TABLE_ENV_VAR = 'MODZOO_KERNELS_TABLE'
DEFAULT_TABLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'data',
                             'validated_kernels.json')
OPS = ('focal_context', 'dwconv_gelu', 'gelu_tile_mul', 'mixed_dwconv_interleave')
DTYPES = ('float32', 'float16', 'bfloat16')
# the contiguous dimension of the op's first tensor (modzoo.kernels.dispatch.tensor_layout)
LAYOUTS = ('last_dim_contiguous', 'channels_last')
WRITTEN_BY = 'tools/gpu_check.py'


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
    if entry.get('layout') not in LAYOUTS:
        return f'has layout {entry.get("layout")!r} (expected one of {LAYOUTS})'
    dtypes = entry.get('dtypes')
    if not isinstance(dtypes, list) or not dtypes or any(d not in DTYPES for d in dtypes):
        return f'has dtypes {dtypes!r} (expected its tensor arguments\' dtypes, e.g. ["bfloat16", "float32"])'
    k_min, k_max = entry.get('k_min'), entry.get('k_max')
    if (k_min is None) != (k_max is None) or (k_min is not None and not (
            isinstance(k_min, int) and isinstance(k_max, int) and 1 <= k_min <= k_max)):
        return f'has k_min {k_min!r}, k_max {k_max!r} (expected both null, or integers with 1 <= k_min <= k_max)'
    for key in ('triton', 'torch'):
        if not isinstance(entry.get(key), str) or major_minor(entry[key]) is None:
            return f'has {key} {entry.get(key)!r} (expected the version it was checked with, e.g. "3.6.0")'
    if not isinstance(entry.get('shapes'), list) or not entry['shapes']:
        return 'has no "shapes" (the list of shapes it was checked and timed at)'
    return None


def major_minor(version: str) -> Optional[Tuple[int, int]]:
    parts = version.split('+')[0].split('.')
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


@functools.lru_cache(maxsize=None)
def _by_op_and_gpu(path: str) -> Dict[Tuple[str, str], Tuple[dict, ...]]:
    grouped: Dict[Tuple[str, str], List[dict]] = {}
    for e in load_table(path):
        grouped.setdefault((e['op'], e['gpu']), []).append(e)
    return {k: tuple(v) for k, v in grouped.items()}


def entries_for(op: str, gpu: str) -> Tuple[dict, ...]:
    """The current table's entries for ``op`` on the GPU family ``gpu`` (the file is read once per path)."""
    return _by_op_and_gpu(table_path()).get((op, gpu), ())


def matching_entry(op: str, gpu: str, layout: str, dtypes: Sequence[str], kernel_sizes: Sequence[int],
                   triton_version: str, torch_version: str) -> Optional[dict]:
    """The entry that validates this call, or None (then ``auto`` runs the reference)."""
    for e in entries_for(op, gpu):
        if e['layout'] != layout or tuple(e['dtypes']) != tuple(dtypes):
            continue
        if e['k_min'] is None:
            if kernel_sizes:
                continue
        elif not kernel_sizes or not all(e['k_min'] <= k <= e['k_max'] for k in kernel_sizes):
            continue
        if major_minor(e['triton']) != major_minor(triton_version) or \
                major_minor(e['torch']) != major_minor(torch_version):
            continue
        return e
    return None


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
    merged = sorted(kept + list(entries), key=lambda e: (e['gpu'], e['op'], e['dtype'], e['layout'],
                                                         e['k_min'] or 0))
    data: Dict = {'written_by': WRITTEN_BY, 'entries': merged}
    with atomic_write(path, 'w') as f:
        json.dump(data, f, indent=1)
        f.write('\n')
    _by_op_and_gpu.cache_clear()
