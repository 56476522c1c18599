"""Shared by the experiment scripts: machine description, settings table (mean ± std over seeds), CSV/JSON/MD, the
options and page header of the short Fashion-MNIST scripts, and figures."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
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


def command_line(script: str, argv: list[str] | None) -> str:
    """The command a results page quotes: ``python experiments/<script>.py`` and its arguments (``sys.argv``'s when
    ``argv`` is None)."""
    return (f"python experiments/{script}.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip()


def add_fmnist_arguments(parser, stem: str, *, train: int) -> None:
    """The options of a short Fashion-MNIST script: data root, seeds, training and test subset sizes, epochs, and
    the folders of its runs (``runs/<stem>``) and results (``docs/results/<stem>``)."""
    parser.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--train", type=int, default=train)
    parser.add_argument("--test", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--runs", default=f"runs/{stem}")
    parser.add_argument("--results", default=f"docs/results/{stem}")


def fmnist_overrides(args) -> list[str]:
    """The overrides ``add_fmnist_arguments``' options give every run (no progress bar, no TensorBoard)."""
    return [f"data.root={args.root}", f"data.train_limit={args.train}", f"data.test_limit={args.test}",
            f"train.epochs={args.epochs}", "train.progress=false", "out.tensorboard=false"]


def page_header(title: str, command: str, rows: list[dict], started: float) -> list[str]:
    """A results page's first lines: title, command, machine, the runs' summed training time and this invocation's."""
    return [f"# {title}", "", f"Command: `{command}`  ",
            f"Machine: {machine()}. Wall time: {sum(r.get('wall_s', 0) for r in rows) / 60:.1f} min of training "
            f"({len(rows)} runs), this invocation {(time.time() - started) / 60:.1f} min.", ""]


NOTES = ["", "A hand-written reading of these numbers, kept across reruns: [notes.md](notes.md)."]


def pyplot():
    """matplotlib.pyplot with the Agg backend, or None when matplotlib is not installed (plots are optional)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(fig, path: Path) -> None:
    """``fig`` laid out tight, written atomically to ``path`` as a 120-dpi PNG, then closed."""
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    pyplot().close(fig)
