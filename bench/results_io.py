"""Shared by the benchmark scripts: where results go and how they are written (atomically, as JSON)."""
from __future__ import annotations

import json
from pathlib import Path

from modelring.io import write_atomic


def write_result(path: str | Path, result) -> Path:
    """Write ``result`` as indented JSON to ``path`` (folders created, file replaced atomically)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    print(f"wrote {out}")
    return out
