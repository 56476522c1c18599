"""Atomic file writes: a crash never leaves a half-written file under the final name.

Imports nothing of the package, so the data readers (``data/``) can use it without depending on the core.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then fsync and rename onto ``path``; nothing is left behind on failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
