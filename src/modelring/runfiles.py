"""Files of a training run: the resumable checkpoint (``last.pt``) and the per-epoch metrics logs.

``last.pt`` is written atomically and read with ``torch.load(weights_only=True)``: it holds only tensors and
plain values, so reading it can never execute code.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import torch

from .convert import materialize
from .count import count_params
from .io import save, write_atomic


def save_checkpoint(path: Path, model, opt, sched, scaler, epoch: int, best: float, cfg: dict) -> None:
    """Everything needed to continue training, written atomically; read with weights_only=True.

    ``best`` is the task's selection metric (top-1, PCKh, ...); it is stored as ``best_top1`` for all tasks.
    """
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "scaler": scaler.state_dict(), "epoch": epoch, "best_top1": best, "config": cfg,
             "torch_rng": torch.get_rng_state()}
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict:
    """A training-state file, read without executing code (``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated, corrupt or unsafe files
        raise ValueError(f"{path} is not a readable modelring checkpoint ({type(err).__name__}: {err}); "
                         "delete it to start over, or resume from another copy") from err


def restore(out: Path, resume: bool, cfg: dict, model, opt, sched, scaler, log, best: float) -> tuple[int, float]:
    """Resume from ``out/last.pt`` when asked and present: load model, optimizer, scheduler, scaler and RNG.

    Returns (first epoch to train, best selection metric so far); (0, ``best``) when starting fresh. The
    checkpoint must come from the same config (``check_resume_config``).
    """
    path = out / "last.pt"
    if not resume:
        return 0, best
    if not path.exists():
        log(f"nothing to resume in {out}; starting fresh")
        return 0, best
    state = load_checkpoint(path)
    check_resume_config(state["config"], cfg)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    log(f"resumed from {path} after epoch {state['epoch'] + 1}")
    return state["epoch"] + 1, state["best_top1"]


def save_final_model(model, out: Path) -> tuple[int, int]:
    """Write ``out/model.safetensors``; returns (its bytes, bytes of the same model saved dense)."""
    checkpoint = save(model, out / "model.safetensors").stat().st_size
    dense_path = out / ".dense_size_check.safetensors"
    dense = save(materialize(model) if count_params(model).ring else model, dense_path).stat().st_size
    dense_path.unlink()
    return checkpoint, dense


def check_resume_config(saved: dict, cfg: dict) -> None:
    ignore = {("train", "progress"), ("out", "dir"), ("out", "tensorboard")}
    diffs = [f"{s}.{k}: {saved[s].get(k)!r} -> {v!r}" for s, section in cfg.items() for k, v in section.items()
             if (s, k) not in ignore and saved.get(s, {}).get(k) != v]
    if diffs:
        raise ValueError("cannot resume with a different config (the run would not be the same run): "
                         + "; ".join(diffs))


class MetricsLog:
    """metrics.csv + metrics.jsonl (+ TensorBoard when installed), one row per epoch."""

    FIELDS = ("epoch", "lr", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5", "images_per_s",
              "epoch_s")

    def __init__(self, folder: Path, tensorboard: bool):
        self.csv, self.jsonl = folder / "metrics.csv", folder / "metrics.jsonl"
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(folder / "tensorboard"))
            except ImportError:  # TensorBoard is optional
                self.writer = None

    def keep_until(self, epoch: int) -> None:
        """Drop rows after ``epoch`` (written by a run killed before its checkpoint); files replaced atomically."""
        if not self.jsonl.exists():
            return
        rows = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["epoch"] <= epoch]
        lines = [",".join(self.FIELDS)] + [",".join(str(r[k]) for k in self.FIELDS) for r in rows]
        write_atomic(self.csv, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
        write_atomic(self.jsonl, lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in rows)))

    def write(self, row: dict) -> None:
        new = not self.csv.exists()
        with open(self.csv, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: row[k] for k in self.FIELDS})
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, row["epoch"])
