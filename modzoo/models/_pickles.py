"""Which globals a pickled checkpoint calls, and whether they are data or code: ``--trust-pickle`` is offered only
for files whose every pickled global builds data (config classes, namespaces, numpy arrays); a file calling anything
else (``exec``, ``eval``, ``os``/``subprocess``, ``getattr``, an unknown function) is called unsafe."""
from typing import List, Optional, Tuple

import torch

__all__ = ['refused_global', 'code_running_globals']


def refused_global(text: str) -> Optional[str]:
    """The global torch's weights-only unpickler refused, from its message (two wordings; builtins without a
    module: ``GLOBAL exec``)."""
    name = None
    if 'Unsupported global:' in text:
        name = text.split('Unsupported global:', 1)[1].split(' was not', 1)[0].strip()
        name = name[len('GLOBAL '):] if name.startswith('GLOBAL ') else name
    elif 'unsupported GLOBAL' in text:  # "Trying to load unsupported GLOBAL posix.system whose module posix is blocked"
        name = text.split('unsupported GLOBAL', 1)[1].split()[0].strip()
    return name if not name or '.' in name else f'builtins.{name}'


# The pickled globals --trust-pickle may be offered for: data, never code. Classes (config objects, namespaces)
# of any module but these, whose globals reach the system or run code, and the named constructors of plain data.
_CODE_MODULES = frozenset({
    'builtins', '__builtin__', 'os', 'posix', 'nt', 'subprocess', 'commands', 'sys', 'importlib', 'runpy', 'pty',
    'socket', 'shutil', 'ctypes', 'pickle', '_pickle', 'marshal', 'code', 'codeop', 'types', 'functools', 'operator',
    'multiprocessing', 'threading', '_thread', 'signal', 'webbrowser', 'pdb', 'bdb', 'asyncio', 'tempfile', 'io',
    '_io', 'urllib', 'http', 'zipimport', 'pkgutil', 'inspect', 'timeit', 'platform', 'glob', 'torch', 'numpy'})
_DATA_GLOBALS = frozenset({
    'builtins.set', 'builtins.frozenset', 'builtins.slice', 'builtins.complex', 'builtins.bytearray', '_codecs.encode',
    'numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct', 'numpy.core.multiarray.scalar',
    'numpy._core.multiarray.scalar', 'numpy.ndarray', 'numpy.dtype'})


def _is_data_global(name: str) -> bool:
    """A global that builds data when unpickled: a listed constructor, a numpy dtype class, or a class of a
    module outside :data:`_CODE_MODULES` (its constructor is that installed package's code, not the file's)."""
    module, _, attr = name.rpartition('.')
    if name in _DATA_GLOBALS or (module == 'numpy.dtypes' and attr.endswith('DType')):
        return True
    return module.split('.')[0] not in _CODE_MODULES and attr.lstrip('_')[:1].isupper()


def code_running_globals(path: str, refused: str) -> Tuple[List[str], bool]:
    """(the globals among those of :func:`_pickled_globals` that are not data (:func:`_is_data_global`), whether
    the file is an mmengine Runner checkpoint (its message hub pickles ``getattr`` on mmengine's classes))."""
    pickled = _pickled_globals(path, refused)
    code = [g for g in pickled if not _is_data_global(g)]
    return code, code == ['builtins.getattr'] and any(g.startswith('mmengine.') for g in pickled)


def _pickled_globals(path: str, refused: str) -> List[str]:
    """Every global the file pickles that torch's weights-only unpickler does not allow (torch names only the
    first it meets), ``refused`` first; just ``refused`` for files in torch's legacy format."""
    try:
        others = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # legacy (non-zip) format or an older torch: the refused one is all we know
        others = []
    return [refused] + sorted(set(others) - {refused})
