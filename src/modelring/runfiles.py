"""Files of a training run: the run folder and its lock, the resumable checkpoint (``last.pt``) and the
per-epoch metrics logs.

``last.pt`` is written atomically and read with ``torch.load(weights_only=True)``: it holds only tensors and
plain values, so reading it can never execute code. A run folder that already holds a run is never written
into unless the caller asked to resume it or to overwrite it; one writer at a time holds its lock.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import json
import os
import shutil
import socket
import time
import warnings
from pathlib import Path

import torch

from .adapters import is_adapted, merge
from .config import upgrade
from .convert import materialize
from .count import count_params
from .io import save, saved_size, write_atomic


RUN_FILES = ("config.yaml", "last.pt", "metrics.csv", "metrics.jsonl", "best.safetensors", "model.safetensors",
             "report.json", "tensorboard")
LOCK = ".modelring.lock"


@contextlib.contextmanager
def run_folder(out: Path, *, resume: bool, overwrite: bool, log=print):
    """Own ``out`` for one training run: refuse a folder that holds a run unless resuming or overwriting it,
    take its lock (clearing a lock whose process is gone), remove temp files of killed writes, and release the
    lock at the end, whatever happens."""
    if resume and overwrite:
        raise ValueError("--resume continues the run in out.dir and --overwrite deletes it: pass one of them")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out.dir {out} is a file, not a folder; pass a folder for the run's files")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not (resume or overwrite):
        raise ValueError(f"{out} already holds a run ({', '.join(found[:4])}); pass --resume to continue it, "
                         "--overwrite to delete it and start again, or another out.dir")
    out.mkdir(parents=True, exist_ok=True)
    lock = _take_lock(out, log)
    try:
        for leftover in out.glob(".*.tmp"):  # written by a process killed before its rename
            leftover.unlink(missing_ok=True)
        if overwrite and found:
            for name in found:
                path = out / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            log(f"deleted the previous run in {out} (--overwrite)")
        yield out
    finally:
        lock.unlink(missing_ok=True)


def _take_lock(out: Path, log) -> Path:
    lock = out / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is not None:
                raise ValueError(f"{out} is in use by another training (pid {owner[1]} on {owner[0]}); wait for it "
                                 f"to finish, or delete {lock} if that process is gone") from None
            log(f"cleared a stale lock in {out} (its process is gone)")
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{socket.gethostname()} {os.getpid()}\n")
        return lock
    raise ValueError(f"could not take the lock {lock}; delete it if no training is running")


def _lock_owner(lock: Path) -> tuple[str, int] | None:
    """(host, pid) of a live lock holder; None when the lock is stale (dead process, or unreadable and older
    than a few seconds: a lock is created empty and gets its owner a moment later)."""
    try:
        host, pid = lock.read_text().split()
        pid = int(pid)
    except (OSError, ValueError):
        try:
            young = time.time() - lock.stat().st_mtime < 5
        except OSError:
            young = False
        return ("?", 0) if young else None
    if host != socket.gethostname():
        return host, pid  # cannot check another machine's processes: assume alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return host, pid


def check_finite_state(model, what: str) -> None:
    """Refuse to write ``what`` from a model with NaN/Inf parameters or buffers (the previous file is kept)."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise FloatingPointError(f"{name} holds NaN or Inf values; {what} was not written, the previous one "
                                     "is kept (lower train.lr, or enable gradient clipping)")


def save_best(model, out: Path) -> None:
    """Write ``out/best.safetensors`` (never from a model holding NaN/Inf)."""
    check_finite_state(model, "best.safetensors")
    save(model, out / "best.safetensors")


def save_checkpoint(path: Path, model, opt, sched, scaler, epoch: int, best: float, cfg: dict, *,
                    selection: str = "test_top1") -> None:
    """Everything needed to continue training, written atomically; read with weights_only=True.

    ``best`` is the best value so far of the task's selection metric, named by ``selection`` (``test_top1``,
    ``test_pckh``, ``-test_depth_rmse`` for a lower-is-better metric, ...).
    A model holding NaN/Inf is refused: the previous ``last.pt`` stays the last good one.
    """
    check_finite_state(model, path.name)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "scaler": scaler.state_dict(), "epoch": epoch, "best": best, "selection": selection, "config": cfg,
             "torch_rng": torch.get_rng_state()}
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict:
    """A training-state file, read without executing code (``weights_only=True``), its fields checked."""
    if not path.is_file():  # a FIFO or a device would block the read or never end
        raise ValueError(f"{path} is not a regular file; a training checkpoint is a file written by modelring train")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated, corrupt or unsafe files
        first = (str(err).strip().splitlines() or [""])[0][:200]  # torch's messages run over many lines
        raise ValueError(f"{path} is not a readable modelring checkpoint ({type(err).__name__}: {first}); "
                         "delete it to start over, or resume from another copy") from err
    _check_checkpoint_fields(path, state)
    return state


def _check_checkpoint_fields(path: Path, state) -> None:
    problems = []
    if not isinstance(state, dict):
        problems.append(f"it holds a {type(state).__name__}, not a dict")
    else:
        for key, kind in (("model", dict), ("optimizer", dict), ("scheduler", dict), ("scaler", dict),
                          ("config", dict), ("epoch", int), ("torch_rng", torch.Tensor)):
            if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
                problems.append(f"{key!r} is missing or not a {kind.__name__}")
        if isinstance(state.get("epoch"), int) and state["epoch"] < 0:
            problems.append(f"epoch {state['epoch']} is negative")
        rng = state.get("torch_rng")
        if isinstance(rng, torch.Tensor) and (rng.dtype != torch.uint8 or rng.numel() != torch.get_rng_state().numel()):
            problems.append("the saved random-generator state has the wrong size or type")
    if problems:
        raise ValueError(f"{path} is a damaged training checkpoint ({'; '.join(problems)}); delete it to start "
                         "over, or resume from another copy")


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
    return state["epoch"] + 1, state["best"] if "best" in state else state["best_top1"]  # older files: best_top1


def machine_record(cfg: dict) -> dict:
    """Where and how a run was computed: the CPU model (the same seed gives other digits on another CPU), cores the
    process may use, torch threads, torch and Python versions, and the precision (``train.amp``). Kept in
    ``report.json`` so results from different machines are never compared unknowingly."""
    import platform

    cpu, isa = platform.processor() or platform.machine(), ""
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
        cpu = names[0] if names else cpu
        # virtual machines often report a generic model name: the vector extensions tell two machines apart
        isa = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "isa": isa, "cores_usable": cores, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "precision": "bf16 autocast" if cfg["train"].get("amp") else "float32"}


def save_final_model(model, out: Path) -> tuple[int, int]:
    """Write ``out/model.safetensors``; returns (its bytes, bytes of the same model saved dense)."""
    check_finite_state(model, "model.safetensors")
    checkpoint = save(model, out / "model.safetensors").stat().st_size
    if is_adapted(model):  # an adapter file against the merged (plain) model it stands for
        return checkpoint, saved_size(merge(copy.deepcopy(model)))
    return checkpoint, saved_size(materialize(model) if count_params(model).ring else model)


def config_differences(saved: dict, cfg: dict) -> list[str]:
    """``"section.key: old -> new"`` for every value that decides a run's result and differs (progress bars,
    the run folder and TensorBoard do not). ``saved`` may come from an earlier release (``config.upgrade``)."""
    saved = upgrade(saved)
    ignore = {("train", "progress"), ("out", "dir"), ("out", "tensorboard")}
    flat = lambda c: {(s, k): v for s, sec in c.items() for k, v in (sec.items() if isinstance(sec, dict)  # noqa: E731
                                                                    else [("", sec)])}
    old, new = flat(saved), flat(cfg)
    return [f"{'.'.join(p for p in key if p)}: {old.get(key)!r} -> {value!r}" for key, value in new.items()
            if key not in ignore and old.get(key) != value]


def check_resume_config(saved: dict, cfg: dict) -> None:
    diffs = config_differences(saved, cfg)
    if diffs:
        raise ValueError("cannot resume with a different config (the run would not be the same run): "
                         + "; ".join(diffs))


def append_jsonl(path: Path, row: dict) -> None:
    """Add one row to a JSON-lines log (a line torn by a kill is skipped by ``keep_jsonl_until`` on resume)."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def keep_jsonl_until(path: Path, epoch: int) -> list[dict]:
    """The rows of a per-epoch JSON-lines log up to ``epoch`` (rows of a run killed before its checkpoint and torn
    lines dropped, with a warning for the latter); the file is rewritten atomically with only those."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a write torn by a kill or a full disk: the checkpoint decides
            warnings.warn(f"{path}: skipped unreadable line {number} (a torn write)", RuntimeWarning)
    rows = [r for r in rows if r["epoch"] <= epoch]
    write_atomic(path, lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in rows)))
    return rows


class MetricsLog:
    """metrics.csv + metrics.jsonl (+ TensorBoard when installed), one row per epoch with the columns ``fields``."""

    def __init__(self, folder: Path, tensorboard: bool, fields: tuple[str, ...]):
        self.fields = fields
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
        rows = keep_jsonl_until(self.jsonl, epoch)
        lines = [",".join(self.fields)] + [",".join(str(r[k]) for k in self.fields) for r in rows]
        write_atomic(self.csv, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))

    def write(self, row: dict) -> None:
        new = not self.csv.exists()
        with open(self.csv, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            if new:
                writer.writeheader()
            writer.writerow({k: row[k] for k in self.fields})
        append_jsonl(self.jsonl, row)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.writer.add_scalar(key, value, row["epoch"])
