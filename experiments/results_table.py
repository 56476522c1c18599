"""Shared by the experiment scripts: machine description, settings table (mean ± std over seeds), CSV/JSON/MD."""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from modelring.io import write_atomic  # noqa: E402
from modelring.sweep import group_by_setting, mean_std, write_csv  # noqa: E402,F401 (re-exported)


def machine() -> str:
    """One line: CPU model, cores usable by this process of the machine's, torch threads, torch build."""
    from modelring.runfiles import machine_record

    m = machine_record({"train": {}})
    return (f"{m['cpu']} ({m['isa'] or 'no AVX2'}), {platform.machine()}, {m['cores_usable']} of {os.cpu_count()} CPU cores usable "
            f"({m['threads']} threads), torch {m['torch']}, Python {m['python']}")


def write_rows(rows: list[dict], out: Path, stem: str) -> None:
    """``stem.csv`` (one row per run) and ``stem.json``."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / f"{stem}.csv")
    write_atomic(out / f"{stem}.json", lambda t: Path(t).write_text(json.dumps(rows, indent=1)))


def write_markdown(path: Path, lines: list[str]) -> None:
    write_atomic(path, lambda t: Path(t).write_text("\n".join(lines) + "\n"))


def pyplot():
    """matplotlib.pyplot with the Agg backend, or None when matplotlib is not installed (plots are optional)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt
