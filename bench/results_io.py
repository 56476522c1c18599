"""Shared by the benchmark scripts: where results go and how they are written (atomically, as JSON)."""
from __future__ import annotations

import json
from pathlib import Path

from modelring.io import write_atomic


def write_result(path: str | Path, result) -> Path:
    """Write ``result`` as indented JSON to ``path`` (folders created, file replaced atomically); a dict result gets
    a ``host`` record (CPU model, vector extensions, usable cores, torch threads and versions) unless it has one:
    figures from different machines must never be compared unknowingly."""
    if isinstance(result, dict) and "host" not in result:
        from modelring.runfiles import machine_record

        host = machine_record({"train": {}})
        host.pop("precision")  # a property of the case, not of the machine
        result["host"] = host  # in place: the caller's copy says where it was measured too
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    print(f"wrote {out}")
    return out
