"""Which globals a pickled checkpoint calls, and whether they are data or code: ``--trust-pickle`` is offered only
for files whose every pickled global builds data (config classes, namespaces, numpy arrays); a file calling anything
else (``exec``, ``eval``, ``os``/``subprocess``, ``getattr``, an unknown function) is called unsafe."""
import sys
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


# The pickled globals --trust-pickle may be offered for: data, never code. Classes (config objects, namespaces,
# modules) of installed packages, whose constructors are that package's code, not the file's; of the standard
# library, where the system is reached (os, subprocess, socket, files), only these plain-data constructors.
_DATA_GLOBALS = frozenset({
    'argparse.Namespace', 'collections.OrderedDict', 'collections.defaultdict', 'collections.Counter',
    'collections.deque', 'datetime.datetime', 'datetime.date', 'datetime.time', 'datetime.timedelta',
    'datetime.timezone', 'decimal.Decimal', 'fractions.Fraction', 'uuid.UUID', 'pathlib.PosixPath',
    'pathlib.PurePosixPath', 'pathlib.WindowsPath', 'pathlib.PureWindowsPath', 'builtins.set', 'builtins.frozenset',
    'builtins.slice', 'builtins.complex', 'builtins.bytearray', 'builtins.range', 'builtins.object', '_codecs.encode',
    'copyreg._reconstructor', 'numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct',
    'numpy.core.multiarray.scalar', 'numpy._core.multiarray.scalar', 'numpy.ndarray', 'numpy.dtype'})
# the standard library's top-level names, with the Python 2 spellings pickle protocol 2 writes (subprocess: commands)
_STDLIB = frozenset(sys.stdlib_module_names) | {'__builtin__', 'commands', 'copy_reg'}


def _is_data_global(name: str) -> bool:
    """A global that builds data when unpickled: a listed constructor, a numpy dtype class, or a class (a
    capitalised name) of a module outside the standard library."""
    module, _, attr = name.rpartition('.')
    if name in _DATA_GLOBALS or (module == 'numpy.dtypes' and attr.endswith('DType')):
        return True
    return module.split('.')[0] not in _STDLIB and attr.lstrip('_')[:1].isupper()


def code_running_globals(path: str, refused: str) -> Tuple[List[str], bool]:
    """(the globals among those of :func:`_pickled_globals` that are not data (:func:`_is_data_global`), whether
    the file is an mmengine Runner checkpoint (its message hub pickles ``getattr`` on mmengine's classes))."""
    pickled = _pickled_globals(path, refused)
    code = [g for g in pickled if not _is_data_global(g)]
    return code, code == ['builtins.getattr'] and any(g.startswith('mmengine.') for g in pickled)


def _pickled_globals(path: str, refused: str) -> List[str]:
    """Every global the file pickles that torch's weights-only unpickler does not allow (torch names only the
    first it meets), ``refused`` first; just ``refused`` where the file cannot be scanned. Globals another module
    allow-listed (``torch.serialization.add_safe_globals``, e.g. ``modzoo.mm``'s stand-in for ``getattr``) are
    scanned too: trusting the file unpickles them as they are, not as the allow-list binds them."""
    user_allowed = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        others = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except ValueError:  # torch's legacy (non-zip) format
        others = _legacy_unsafe_globals(path)
    except Exception:  # an older torch
        others = []
    finally:
        torch.serialization.add_safe_globals(user_allowed)
    return [refused] + sorted(set(others) - {refused})


def _legacy_unsafe_globals(path: str) -> List[str]:
    """The same scan, with torch's scanner, over a legacy file's pickles: magic number, protocol, system info, and
    the object (the storage keys and raw bytes follow)."""
    try:
        from torch import _weights_only_unpickler as unpickler
        allowed = set(unpickler._get_allowed_globals())
        found = set()
        with open(path, 'rb') as f:
            for _ in range(4):
                found |= unpickler.get_globals_in_pkl(f)
    except Exception:  # a torch without this scanner, or an opcode it does not know: the refused one is all we know
        return []
    return sorted(found - allowed)
