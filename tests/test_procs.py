"""The time limits of tests/procs.py hold: a hung command or rank fails its test quickly, leaving nothing behind."""
import multiprocessing
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procs import kill_marked, kill_tagged, run_bounded, spawn_ranks


def test_run_bounded_returns_output_and_exit_code():
    result = run_bounded([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"], timeout=60)
    assert (result.returncode, result.stdout.strip()) == (3, "out")


def test_run_bounded_kills_orphans_that_hold_the_pipes():
    # The child starts a grandchild in a session of its own (as torchrun does with its workers) and exits;
    # the grandchild keeps stdout open, so a plain subprocess.run(timeout=...) would wait for it forever.
    script = ("import subprocess, sys, time; "
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True); "
              "print('started', flush=True); time.sleep(300)")
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"still running after 3 s; killed 2 processes"):
        run_bounded([sys.executable, "-c", script], timeout=3)
    assert time.monotonic() - started < 60


def test_kill_tagged_finds_nothing_for_an_unknown_tag():
    assert kill_tagged("no-process-has-this-tag") == 0


def test_kill_marked_matches_whole_command_line_arguments_only():
    # The crash script finds orphaned torchrun workers by their out.dir=... argument: a longer argument that
    # merely starts with it (another run folder) must survive.
    script = "import time; time.sleep(300)"
    target = subprocess.Popen([sys.executable, "-c", script, "out.dir=/tmp/run-a"])
    bystander = subprocess.Popen([sys.executable, "-c", script, "out.dir=/tmp/run-ab"])
    try:
        for proc, marker in ((target, b"out.dir=/tmp/run-a"), (bystander, b"out.dir=/tmp/run-ab")):
            _wait_for_exec(proc.pid, marker)  # until exec, /proc shows the parent's command line (a loaded machine)
        assert kill_marked("out.dir=/tmp/run-a") == 1
        assert target.wait(timeout=30) == -signal.SIGKILL
        assert bystander.poll() is None
    finally:
        bystander.kill()
        target.kill()
        bystander.wait()
        target.wait()


def _wait_for_exec(pid: int, marker: bytes, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while marker not in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
        assert time.monotonic() < deadline, f"process {pid} did not exec within {timeout} s"
        time.sleep(0.01)


def _sleeper(rank, port, folder):
    time.sleep(600)


@pytest.mark.slow
def test_spawn_ranks_fails_a_hung_rank_and_kills_it():
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="_sleeper: 2 ranks still running after 5 s; killed"):
        spawn_ranks(_sleeper, "unused", timeout=5)
    assert time.monotonic() - started < 60
    assert not multiprocessing.active_children()
