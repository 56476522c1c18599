"""Crash safety: SIGKILL a training run at random moments, resume it each time, and compare with a run that
was never interrupted. Passes when every checkpoint seen between kills was readable and the final model state
(ring included) is bitwise equal to the uninterrupted run.

Usage: python scripts/crash_resume.py [--kills 5] [--seed 0] [--epochs 4] [--nproc 1] [--work DIR]
With --nproc 2 the runs go through torchrun (DDP over gloo); a kill takes down the whole process group.
Runs on tiny Fashion-MNIST-format data it writes itself (about a minute on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from modelring.data import write_idx
from modelring.runfiles import load_checkpoint

RECIPE = Path(__file__).parent.parent / "configs" / "fmnist_resnet20_rpg.yaml"


def write_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in [("train", 480), ("t10k", 80)]:
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 255
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)


def command(data: Path, out: Path, epochs: int, nproc: int = 1) -> list[str]:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    return [sys.executable, *launcher, "-m", "modelring", "train", str(RECIPE), f"data.root={data}", f"out.dir={out}",
            f"train.epochs={epochs}", "train.batch_size=32", "train.progress=false", "out.tensorboard=false",
            "train.threads=1", "--resume"]


def kill_marked(marker: str, proc_file: str = "cmdline") -> int:
    """SIGKILL every other process whose ``/proc/PID/<proc_file>`` (``cmdline`` or ``environ``: NUL-separated)
    holds ``marker`` as one whole entry; returns how many there were. Processes that are gone or not ours to read
    are skipped."""
    wanted, killed = marker.encode(), 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted in (entry / proc_file).read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except (OSError, ProcessLookupError):  # gone already, or not ours to read
            continue
    return killed


def kill_leftovers(out: Path) -> int:
    """SIGKILL every process still training into ``out``; returns how many there were.

    torchrun may start its workers in sessions of their own, so killing the launcher's process group can leave
    them orphaned (and waiting on their peers forever); they are found by the run folder on their command line.
    """
    return kill_marked(f"out.dir={out}")


def killed_run(data: Path, out: Path, epochs: int, kills: int, rng: random.Random, log, nproc: int = 1) -> int:
    """Start, SIGKILL (the whole process group) after a random delay, check the checkpoint, repeat; then let it
    finish."""
    done = 0
    while done < kills:
        proc = subprocess.Popen(command(data, out, epochs, nproc), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        delay = rng.uniform(0.5, 8.0)  # start-up takes ~2 s: kills land in start-up, training and saving
        try:
            proc.wait(timeout=delay)
            log(f"  run finished before the kill at {delay:.1f} s")
            break
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kill_leftovers(out)
        done += 1
        if (out / "last.pt").exists():
            epoch = load_checkpoint(out / "last.pt")["epoch"]  # must never be unreadable
            log(f"  kill {done} at {delay:.1f} s: last.pt readable, epoch {epoch + 1} done")
        else:
            log(f"  kill {done} at {delay:.1f} s: no checkpoint yet")
    subprocess.run(command(data, out, epochs, nproc), check=True, stdout=subprocess.DEVNULL)
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--nproc", type=int, default=1, help="processes per run (torchrun + DDP when > 1)")
    parser.add_argument("--work", type=Path, default=None, help="folder for data and runs (default: a temp dir)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="modelring-crash-"))
    (work / "data").mkdir(parents=True, exist_ok=True)
    write_data(work / "data")
    start = time.time()
    subprocess.run(command(work / "data", work / "straight", args.epochs, args.nproc), check=True,
                   stdout=subprocess.DEVNULL)
    kills = killed_run(work / "data", work / "killed", args.epochs, args.kills, random.Random(args.seed), print,
                       args.nproc)
    a = load_checkpoint(work / "straight" / "last.pt")["model"]
    b = load_checkpoint(work / "killed" / "last.pt")["model"]
    different = [k for k in a if not torch.equal(a[k], b[k])]
    print(f"{kills} kills; final state {'IDENTICAL' if not different else 'DIFFERENT: ' + str(different[:5])} "
          f"to the uninterrupted run ({time.time() - start:.0f} s)")
    return 0 if not different and a.keys() == b.keys() else 1


if __name__ == "__main__":
    sys.exit(main())
