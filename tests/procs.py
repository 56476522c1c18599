"""Child processes with a hard time limit, for the tests that start other processes (torchrun, spawned ranks).

A hung rank must fail its test, not hang the suite: CI once ran out of its 90 minutes inside one of these tests.
``subprocess.run(timeout=...)`` alone is not enough: after the time-out it kills only its direct child and then
waits for EOF on the captured pipes, which torchrun's workers (started in sessions of their own) keep open.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
from crash_resume import kill_marked  # noqa: E402  (one /proc scan for the tests and the crash script)

TAG = "MODELRING_TEST_PROCESS_TAG"


def kill_tagged(tag: str) -> int:
    """SIGKILL every process whose environment carries ``TAG=tag`` (orphans keep it); returns how many."""
    return kill_marked(f"{TAG}={tag}", "environ")


def run_bounded(cmd: list[str], *, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` that fails the test after ``timeout`` seconds,
    with the output so far, once it has killed the command and every process it started."""
    tag = uuid.uuid4().hex
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**(os.environ if env is None else env), TAG: tag})
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        killed = kill_tagged(tag)
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"{' '.join(cmd[:6])} ... still running after {timeout:.0f} s; killed {killed} processes.\n"
                    f"stdout tail:\n{out[-2000:]}\nstderr tail:\n{err[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def spawn_ranks(worker, folder: Path, *, nprocs: int = 2, timeout: float = 240) -> None:
    """Run ``worker(rank, port, folder)`` in ``nprocs`` spawned processes; fail the test after ``timeout`` s.

    The rendezvous store listens in this process on a port the OS picked before any rank starts, so there is no
    window in which a port found free can be taken (or a rank connect to itself) before rank 0 binds it. Ranks
    join with ``init_ranks``."""
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    context = mp.start_processes(worker, args=(store.port, str(folder)), nprocs=nprocs, join=False)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=2):  # raises as soon as a rank fails
        if time.monotonic() > deadline:
            for p in context.processes:
                p.kill()
                p.join(30)  # reaped: nothing left behind
            pytest.fail(f"{worker.__name__}: {nprocs} ranks still running after {timeout:.0f} s; killed")


def init_ranks(rank: int, port: int, world: int = 2) -> None:
    """Join the gloo group whose store ``spawn_ranks`` holds; collectives time out after 60 s instead of 30 min."""
    from datetime import timedelta

    limit = timedelta(seconds=60)
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=limit)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=limit)

