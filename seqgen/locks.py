"""Cross-process locks for state that concurrent runs share: the data folder's downloads,
extracted archives and sentencepiece models, and the MLflow store (the maintained ``filelock``
package; on Linux and macOS an ``flock`` the kernel drops when the holder dies, so a killed run
never leaves a lock that blocks the next one, whatever lock file it leaves behind).

The second process waits for the first, then finds its result and reuses it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def locked(target: str | os.PathLike, timeout: float = -1) -> Iterator[bool]:
    """Hold ``<target's folder>/.locks/<name>.lock`` for the block, ``timeout`` seconds at most (-1:
    as long as the holder works). Lock files sit in the hidden ``.locks/`` folder: empty and
    harmless once released, they stay out of the data listing. Yields False without locking when the folder cannot take a lock file (a
    read-only data folder: nothing will be written there either)."""
    from filelock import FileLock, Timeout

    path = Path(target)
    lock_path = path.parent / ".locks" / (path.name + ".lock")
    lock = FileLock(str(lock_path), timeout=timeout)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:  # an OSError too, but a held lock is not a read-only folder
        raise
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def unique_temp(path: str | os.PathLike) -> Path:
    """A temporary name beside ``path`` that no other process uses (renamed into place when done)."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")
