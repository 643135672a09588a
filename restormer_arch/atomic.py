"""Atomic file writes: a file under its final name is always complete. Every file the project writes (images,
CSV/Markdown tables, ``meta_info.txt``, LMDB builds, checkpoints) goes through :func:`atomic_write`.
"""
import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator, Union

__all__ = ['atomic_write']

PathLike = Union[str, 'os.PathLike[str]']
# mkstemp creates files 0600; a normal open() gives 0666 minus the umask, which users expect for outputs. The umask can
# only be read by setting it, so it is read once, at import.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = 'wb', encoding: Union[str, None] = None,
                 newline: Union[str, None] = None) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path``, on an exception it is removed.

    The content goes to a hidden ``.<name>.<random>.tmp`` in the same folder, is flushed and fsynced, then renamed
    over ``path`` with ``os.replace`` (atomic on POSIX and Windows within one file system): a process killed mid-write
    leaves at most that hidden file, never a torn file under the final name.

    Example::

        with atomic_write('results/metrics.csv', 'w', encoding='utf-8', newline='') as f:
            csv.writer(f).writerows(rows)

    Args:
        path: The final file name (its folder must exist; non-ASCII and spaces are fine).
        mode: ``'wb'`` (bytes) or ``'w'`` (text); only write modes make sense.
        encoding: Text encoding for ``'w'`` (default UTF-8).
        newline: Passed to :func:`open` in text mode (``''`` for the csv module).

    Yields:
        The open temporary file.

    Raises:
        ValueError: ``mode`` is not a write mode.
        OSError: The folder does not exist or is not writable, or the disk is full (the final name is then untouched).
    """
    if not mode.startswith('w'):
        raise ValueError(f'atomic_write: mode must be "w" or "wb", got {mode!r}.')
    target = Path(path)
    folder = target.parent if str(target.parent) else Path('.')
    fd, tmp_name = tempfile.mkstemp(prefix=f'.{target.name}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, mode, encoding=None if 'b' in mode else encoding or 'utf-8', newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o666 & ~_UMASK)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    # Flush the folder's entries so that the rename survives a power loss (Windows cannot open folders; the rename is
    # atomic there all the same).
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
