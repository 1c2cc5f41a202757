"""An exclusive ``flock`` on a file, holding the holder's pid: one user of a data folder at a time.

``make demo`` (``scripts/demo_state.py``) and ``devstack up`` take the lock a stack file declares
(``lock = "${data_dir}.lock"``), so a demo and a hand-run stack on one data folder exclude each
other. The lock is released when the block ends or its process dies (the kernel drops it).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockHeldError(RuntimeError):
    """Another process holds the lock: ``path`` and ``holder`` (its pid as it wrote it, or ``?``)."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is held by pid {holder}")
        self.path = path
        self.holder = holder


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking ``flock`` on ``path`` (created, with its folder) for the
    block; the file holds this process's pid while it does.

    Raises:
        LockHeldError: another process (or another open of the file) holds it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise LockHeldError(path, handle.read().strip() or "?") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
