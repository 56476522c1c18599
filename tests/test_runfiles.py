"""Run folders never lose a finished result: refusal without --resume/--overwrite, the lock, temp files of killed
writes, torn metrics lines, non-finite state and config values."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from modelring.cli import main
from modelring.runfiles import LOCK, MetricsLog, run_folder, save_checkpoint

RECIPE = str(Path(__file__).parent.parent / "configs" / "fmnist_resnet20_rpg.yaml")


def train_args(root, run, *extra):
    return ["train", RECIPE, f"data.root={root}", f"out.dir={run}", "train.epochs=1", "train.progress=false",
            "out.tensorboard=false", *extra]


def test_a_finished_run_is_refused_kept_and_overwritten_only_when_asked(fmnist_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(fmnist_root, run)) == 0
    kept = {name: (run / name).read_bytes() for name in ("model.safetensors", "last.pt", "metrics.jsonl")}
    assert main(train_args(fmnist_root, run)) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert main(train_args(fmnist_root, run, "train.epochs=0")) == 2
    assert all((run / name).read_bytes() == data for name, data in kept.items())  # nothing was touched
    assert main([*train_args(fmnist_root, run), "--resume", "--overwrite"]) == 2
    assert main([*train_args(fmnist_root, run), "--overwrite"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1 and not (run / LOCK).exists()


def test_a_torn_metrics_line_does_not_block_a_resume(fmnist_root, tmp_path):
    run = tmp_path / "run"
    assert main(train_args(fmnist_root, run)) == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "lr": 0.0')  # a write cut by a full disk
    with pytest.warns(RuntimeWarning, match="torn write"):
        assert main([*train_args(fmnist_root, run), "--resume"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]


def test_non_finite_config_values_are_refused_before_anything_runs(fmnist_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(fmnist_root, run, "train.lr=.nan")) == 2
    assert "train.lr=nan" in capsys.readouterr().err and not run.exists()


@pytest.mark.parametrize("limit", ["-1", "0", "2.5"])
def test_limits_that_empty_or_cut_a_split_are_refused(fmnist_root, tmp_path, capsys, limit):
    assert main(train_args(fmnist_root, tmp_path / "run", f"data.test_limit={limit}")) == 2
    assert "data.test_limit=" in (err := capsys.readouterr().err) and "a positive number of samples" in err


def test_a_live_lock_refuses_a_second_writer(tmp_path):
    (tmp_path / LOCK).write_text(f"{os.uname().nodename} {os.getpid()}\n")  # this process: alive
    with pytest.raises(ValueError, match="in use by another training"):
        with run_folder(tmp_path, resume=True, overwrite=False, log=lambda *a: None):
            pass
    assert (tmp_path / LOCK).exists()  # not ours to remove


def test_a_stale_lock_and_temp_files_of_killed_writes_are_cleared(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK).write_text(f"{os.uname().nodename} {dead.pid}\n")
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    messages = []
    with run_folder(tmp_path, resume=True, overwrite=False, log=messages.append):
        assert (tmp_path / LOCK).read_text().split()[1] == str(os.getpid())
        assert not list(tmp_path.glob(".*.tmp"))
    assert not (tmp_path / LOCK).exists() and any("stale lock" in m for m in messages)


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        with run_folder(tmp_path / "file", resume=False, overwrite=False):
            pass


def test_non_finite_state_never_replaces_the_last_good_checkpoint(tmp_path):
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, opt, sched, scaler, 0, 0.5, {})
    good = path.read_bytes()
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="weight holds NaN"):
        save_checkpoint(path, model, opt, sched, scaler, 1, 0.5, {})
    assert path.read_bytes() == good


def test_metrics_log_keeps_rows_up_to_the_checkpoint(tmp_path):
    fields = ("epoch", "lr", "train_loss")
    log = MetricsLog(tmp_path, tensorboard=False, fields=fields)
    for epoch in (1, 2, 3):
        log.write({k: epoch for k in fields})
    log.keep_until(2)
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_checkpoints_name_their_selection_metric_and_older_ones_still_restore(tmp_path):
    from modelring.runfiles import load_checkpoint, restore

    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    save_checkpoint(tmp_path / "last.pt", model, opt, sched, scaler, 3, -0.25, {}, selection="-test_depth_rmse")
    state = load_checkpoint(tmp_path / "last.pt")
    assert (state["best"], state["selection"]) == (-0.25, "-test_depth_rmse")
    assert restore(tmp_path, True, {}, model, opt, sched, scaler, lambda *a: None, best=-1.0) == (4, -0.25)
    state["best_top1"] = state.pop("best")  # the layout written before the selection metric had a name
    del state["selection"]
    torch.save(state, tmp_path / "last.pt")
    assert restore(tmp_path, True, {}, model, opt, sched, scaler, lambda *a: None, best=-1.0) == (4, -0.25)


def _tiny_state():
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return model, opt, sched, torch.amp.GradScaler("cpu", enabled=False)


@pytest.mark.parametrize("damage,message", [
    (lambda s: s.update(epoch=-5), "epoch -5 is negative"),
    (lambda s: s.pop("config"), "'config' is missing"),
    (lambda s: s.update(torch_rng=torch.zeros(3, dtype=torch.uint8)), "random-generator state"),
    (lambda s: s.update(model=[1, 2]), "'model' is missing or not a dict"),
])
def test_a_damaged_checkpoint_is_one_clear_error(tmp_path, damage, message):
    from modelring.runfiles import load_checkpoint

    save_checkpoint(tmp_path / "last.pt", *_tiny_state(), 0, 0.5, {})
    state = load_checkpoint(tmp_path / "last.pt")
    damage(state)
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=message):
        load_checkpoint(tmp_path / "last.pt")


def test_non_regular_files_are_refused_instead_of_blocking(tmp_path):
    import modelring as mr
    from modelring.runfiles import load_checkpoint

    os.mkfifo(tmp_path / "last.pt")
    os.mkfifo(tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="not a regular file"):
        load_checkpoint(tmp_path / "last.pt")
    with pytest.raises(ValueError, match="not a regular file"):
        mr.load(tmp_path / "model.safetensors")
