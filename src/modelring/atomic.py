"""Atomic file writes: a crash never leaves a half-written file under the final name.

Imports nothing of the package, so the data readers (``data/``) can use it without depending on the core.
"""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (reading it means setting it: done under a lock and restored at once)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then fsync and rename onto ``path``; nothing is left behind on failure. The file
    gets the permissions a plain ``open(path, "w")`` would give (0666 minus the umask), not the temp file's 0600."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
