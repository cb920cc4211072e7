"""Atomic file writes with ordinary permissions, and the one way a finished output is put in place.

The data goes to a temporary file on the target's filesystem, is flushed to disk (fsync) and renamed over the target
(``os.replace`` is atomic on POSIX and Windows): a process killed at any moment leaves the old complete file or the new
complete file, never a truncated one. The file gets the permissions a plain ``open()`` would give (0666 minus the
umask), not the 0600 of ``tempfile.mkstemp``. (Also here: :func:`read_marker`, the settings a dataset writer left.)

:func:`publish` decides what "the target" is, for every writer (``atomic_write``, the ONNX/OpenVINO exports):

- a regular file, or nothing: replaced (created) atomically; missing folders on the way are created then, not
  before, so a failed write leaves nothing behind;
- a symlink: its target is replaced and the link stays (the user's link keeps pointing where they put it);
- a character device or a FIFO (``/dev/null``, ``/dev/stdout``, a pipe): the bytes are written through it; it is
  never renamed over (as root that would replace the system's ``/dev/null``);
- a block device, socket or folder: refused (:func:`unwritable_kind` names it for the tools' output checks).
"""
import contextlib
import json
import os
import shutil
import stat
import tempfile
from typing import IO, Any, Dict, Iterator, Optional, Tuple, Union

__all__ = ['TMP_SUFFIX', 'atomic_write', 'temporary_beside', 'fsync_dir', 'nearest_existing_dir', 'output_target',
           'writes_through', 'unwritable_kind', 'staging_dir', 'publish', 'read_marker']

TMP_SUFFIX = '.partial'

PathLike = Union[str, os.PathLike]


def read_marker(path: str, settings: Dict[str, Any]) -> Tuple[Optional[dict], bool]:
    """(the JSON a dataset writer left at ``path``, or None where there is none; whether it records ``settings``,
    every key equal): a writer skips a copy made with the same settings and refuses or replaces another."""
    if not os.path.isfile(path):
        return None, False
    with open(path) as f:
        existing = json.load(f)
    return existing, all(existing.get(k) == v for k, v in settings.items())


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported on every platform/filesystem
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def nearest_existing_dir(path: PathLike) -> str:
    """``path`` itself when it exists, else its closest existing ancestor (absolute)."""
    path = os.path.abspath(os.fspath(path))
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def output_target(path: PathLike) -> str:
    """The file a write to ``path`` lands on: a symlink's target (the link itself stays), else ``path`` (absolute)."""
    return os.path.realpath(os.fspath(path))


def _mode(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_mode
    except OSError:
        return None


def writes_through(path: PathLike) -> bool:
    """True when ``path`` is (or links to) a character device or FIFO: its output is written through, not renamed."""
    mode = _mode(os.fspath(path))
    return mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode))


def unwritable_kind(path: PathLike) -> Optional[str]:
    """'a folder' / 'a block device' / 'a socket' when ``path`` is one (no file can be published there), else None."""
    mode = _mode(os.fspath(path))
    if mode is None:
        return None
    for test, kind in ((stat.S_ISDIR, 'a folder'), (stat.S_ISBLK, 'a block device'), (stat.S_ISSOCK, 'a socket')):
        if test(mode):
            return kind
    return None


def _staging_parent(path: str) -> str:
    """Where the temporaries of an output at ``path`` go: its folder (the nearest existing one when it is not made
    yet), so publishing is a rename; the system's temporary folder for a device or FIFO, whose own folder (``/dev``)
    may refuse new files and which is written through anyway."""
    if writes_through(path):
        return tempfile.gettempdir()
    return nearest_existing_dir(os.path.dirname(os.path.abspath(path)))


def temporary_beside(path: PathLike):
    """(fd, temporary path) where :func:`publish` can rename it to ``path`` (:func:`_staging_parent`), named
    ``.<name>.<random>.partial``, mode 0666 minus the umask."""
    path = os.fspath(path)
    base = os.path.basename(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f'.{base}.', suffix=TMP_SUFFIX, dir=_staging_parent(path))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, tmp


@contextlib.contextmanager
def staging_dir(path: PathLike) -> Iterator[str]:
    """A temporary folder on the filesystem ``path`` will be published to (so :func:`publish` is a rename), removed
    with whatever is left in it when the block ends."""
    target = output_target(path)
    staging = tempfile.mkdtemp(prefix=f'.{os.path.basename(target)}.', suffix=TMP_SUFFIX, dir=_staging_parent(target))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staged: PathLike, path: PathLike) -> str:
    """Puts the finished file ``staged`` at ``path`` by the rules of the module docstring; returns the file written.

    ``staged`` must be on the target's filesystem (:func:`temporary_beside`, :func:`staging_dir`); it is gone
    afterwards."""
    staged, target = os.fspath(staged), output_target(path)
    kind = unwritable_kind(target)
    if kind:
        raise IsADirectoryError(f'{path} is {kind}: an output must be a file') if kind == 'a folder' \
            else OSError(f'{path} is {kind}: an output must be a file')
    if writes_through(target):
        with open(staged, 'rb') as src, open(target, 'wb') as dst:
            shutil.copyfileobj(src, dst)
        os.remove(staged)
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(staged, target)
    fsync_dir(os.path.dirname(target))
    return target


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = 'wb', **open_kwargs) -> Iterator[IO]:
    """``with atomic_write(path) as f: ...``: ``path`` appears, complete, only when the block succeeds (see
    :func:`publish` for symlinks, devices and FIFOs)."""
    fd, tmp = temporary_beside(output_target(path))
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
