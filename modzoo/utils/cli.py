"""Pieces every command-line tool shares: the one-line bad-input error, ``--model-kwargs`` parsing, output checks.

A tool answers bad input with one line on stderr (``error: <problem>; <fix>``) and exit status 2, before it writes
anything. :class:`UsageError` is the exception for such input; :class:`OneLineArgumentParser` makes argparse's own
complaints (a non-integer ``-b``, an unknown flag) follow the same rule instead of printing the usage block.
"""
import argparse
import ast
import os
import sys
import tempfile
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from .files import nearest_existing_dir, output_target, unwritable_kind, writes_through

__all__ = ['UsageError', 'OneLineArgumentParser', 'parse_model_kwargs', 'check_output_dir', 'check_output_file',
           'check_input_file', 'check_distinct_paths', 'model_kwargs_error', 'EXIT_BAD_INPUT']

EXIT_BAD_INPUT = 2


class UsageError(ValueError):
    """Bad input a user can fix; the message names the problem and the fix, on one line."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse with its errors on one line (``error: ... (see --help)``), exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f'error: {message} (see {self.prog} --help)\n')


def _normalise(value: Any) -> Any:
    # YAML gives lists where the command line gives tuples; compare and store one form
    if isinstance(value, list):
        return tuple(_normalise(v) for v in value)
    return value


def parse_model_kwargs(items: Union[None, Dict[str, Any], Sequence[str]], flag: str = '--model-kwargs') \
        -> Dict[str, Any]:
    """``['depths=(1,1,2,1)', 'embed_dim=32']`` (or a dict from a recipe) -> ``{'depths': (1, 1, 2, 1), ...}``.

    Values are Python literals when they parse as one, else strings; lists become tuples."""
    if not items:
        return {}
    if isinstance(items, dict):
        return {str(k): _normalise(v) for k, v in items.items()}
    if isinstance(items, str):
        items = items.split()
    out = {}
    for item in items:
        key, sep, value = str(item).partition('=')
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f'{flag} expects KEY=VALUE pairs such as depths=(2,2,6,2), got {item!r}')
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        out[key] = _normalise(parsed)
    return out


def model_kwargs_error(model_name: str, error: TypeError, flag: str = '--model-kwargs') -> Optional[UsageError]:
    """A :class:`UsageError` for a constructor's "unexpected keyword argument" ``TypeError``, else None."""
    text = str(error)
    if 'unexpected keyword argument' not in text and 'got multiple values' not in text:
        return None
    arg = text.split('argument', 1)[-1].strip().strip("'")
    return UsageError(f'{model_name} does not take the argument {arg!r}: remove it from {flag} or check its spelling '
                      f'(the model class lists its arguments)')


def _probe_writable(folder: str) -> bool:
    try:  # os.access is not enough: root passes it, and a read-only mount is only seen by trying
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_output_dir(path: str, flag: str = '--output') -> None:
    """Raise :class:`UsageError` unless ``path`` is (or can be created as) a writable folder; creates nothing."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f'{flag} {path} is a file, not a folder: pass a folder path')
    base = nearest_existing_dir(path)
    if not os.path.isdir(base):
        raise UsageError(f'{flag} {path} cannot be created: {base} is a file, not a folder; pass another {flag}')
    if not _probe_writable(base):
        raise UsageError(f'{flag} {path} is not writable ({base} refuses new files): pass a folder you can write to')


def check_output_file(path: str, flag: str = '--output') -> None:
    """Raise :class:`UsageError` unless the file ``path`` can be written (its folder exists or can be made). A
    character device or FIFO is written through (``modzoo.utils.files.publish``): only it must be writable."""
    kind = unwritable_kind(path)
    if kind:
        raise UsageError(f'{flag} {path} is {kind}: pass a file path')
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError(f'{flag} {path} exists and is read-only: pass another {flag} or make the file writable')
    if not writes_through(path):
        check_output_dir(os.path.dirname(output_target(path)), flag=f'{flag} folder of')


def _file_keys(path: str):
    """What makes two spellings one file: the resolved path, and (for an existing file) its device and inode, which
    also catch hard links."""
    keys = [os.path.normcase(output_target(path))]
    try:
        st = os.stat(path)
        keys.append((st.st_dev, st.st_ino))
    except OSError:
        pass
    return keys


def check_distinct_paths(outputs: Dict[str, Optional[str]], inputs: Optional[Dict[str, Optional[str]]] = None) \
        -> None:
    """Raise :class:`UsageError` when two outputs (``{flag: path}``) name one file, or an output names an input:
    one would replace the other. Files are compared by resolved path and by inode (hard links, other spellings).
    Outputs written through a device (``/dev/null`` twice) replace nothing and are not compared."""
    seen: Dict[Any, Tuple[str, str]] = {}
    for flag, path in list((inputs or {}).items()) + list(outputs.items()):
        if not path or (flag in outputs and writes_through(path)):
            continue
        keys = _file_keys(path)
        other = next((seen[key] for key in keys if key in seen), None)
        if other is not None:
            verb = 'would overwrite the input' if other[0] in (inputs or {}) else 'is the same file as'
            raise UsageError(f'{flag} {path} {verb} {other[0]} {other[1]}: pass a different {flag}')
        seen.update({key: (flag, path) for key in keys})


def check_input_file(path: Optional[str], flag: str) -> None:
    """Raise :class:`UsageError` unless ``path`` is None or an existing readable file."""
    if path is None:
        return
    if not os.path.exists(path):
        raise UsageError(f'{flag} {path}: no such file; check the path')
    if os.path.isdir(path):
        raise UsageError(f'{flag} {path} is a folder: pass the file itself')
    try:
        with open(path, 'rb'):
            pass
    except OSError as e:
        raise UsageError(f'{flag} {path} cannot be read ({e.strerror}): check its permissions') from None


def print_error(message: Any, file=None) -> int:
    """Print ``error: message`` and return the bad-input exit status."""
    print(f'error: {message}', file=file or sys.stderr)
    return EXIT_BAD_INPUT
