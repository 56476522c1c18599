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
    """One line: CPU architecture, cores, torch build."""
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores ({torch.get_num_threads()} threads), "
            f"torch {torch.__version__}, Python {platform.python_version()}")


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
