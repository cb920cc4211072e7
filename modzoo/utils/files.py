"""Atomic file writes with ordinary permissions.

The data goes to a temporary file beside the target, is flushed to disk (fsync) and renamed over the target
(``os.replace`` is atomic on POSIX and Windows): a process killed at any moment leaves the old complete file or the new
complete file, never a truncated one. The file gets the permissions a plain ``open()`` would give (0666 minus the
umask), not the 0600 of ``tempfile.mkstemp``.
"""
import contextlib
import os
import tempfile
from typing import IO, Iterator, Union

__all__ = ['TMP_SUFFIX', 'atomic_write', 'temporary_beside', 'fsync_dir']

TMP_SUFFIX = '.partial'


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


def temporary_beside(path: Union[str, os.PathLike]):
    """(fd, temporary path) in the target's folder, named ``.<name>.<random>.partial``, mode 0666 minus the umask."""
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    fd, tmp = tempfile.mkstemp(prefix=f'.{base}.', suffix=TMP_SUFFIX, dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, tmp


@contextlib.contextmanager
def atomic_write(path: Union[str, os.PathLike], mode: str = 'wb', **open_kwargs) -> Iterator[IO]:
    """``with atomic_write(path) as f: ...``: ``path`` appears, complete, only when the block succeeds."""
    path = os.fspath(path)
    fd, tmp = temporary_beside(path)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))
