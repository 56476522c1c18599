"""The run loop (modelring.loop) on tiny Fashion-MNIST-format files: loss falls, kill + resume equals an uninterrupted run."""
import json

import numpy as np
import pytest
import torch

import modelring as mr
import modelring.loop as T
from modelring.optim import lr_factor, param_groups
from modelring.config import load_config
from modelring.runfiles import load_checkpoint


def _config(root, out, **overrides):
    items = [f"data.root={root}", f"out.dir={out}", "train.epochs=3", "train.batch_size=48", "train.progress=false",
             "train.lr=0.05", "train.warmup_epochs=0", "ring.size=0.2", "data.pad_to=32", "out.tensorboard=false",
             "data.augment=false"]
    return load_config(None, items + [f"{k}={v}" for k, v in overrides.items()])


@pytest.mark.slow
def test_training_learns_and_writes_everything(fmnist_root, tmp_path):
    report = T.fit(_config(fmnist_root, tmp_path / "run", **{"train.epochs": 5}), log=lambda *a: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    assert rows[-1]["train_top1"] > 0.8
    assert report["test_top1"] >= 0.2  # 10 classes: chance is 0.1 (BN statistics lag after 25 tiny steps)
    for name in ["metrics.csv", "config.yaml", "last.pt", "best.safetensors", "model.safetensors", "report.json"]:
        assert (tmp_path / "run" / name).is_file(), name
    assert report["checkpoint_bytes"] < report["dense_checkpoint_bytes"] / 3
    assert mr.is_converted(mr.load(tmp_path / "run" / "model.safetensors"))


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted_run(fmnist_root, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    T.fit(_config(fmnist_root, straight), log=lambda *a: None)
    interrupted = tmp_path / "interrupted"
    real, calls = T.train_one_epoch, []

    def dies_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if killed mid-epoch
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "train_one_epoch", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        T.fit(_config(fmnist_root, interrupted), log=lambda *a: None)
    monkeypatch.setattr(T, "train_one_epoch", real)
    T.fit(_config(fmnist_root, interrupted), resume=True, log=lambda *a: None)
    a = torch.load(straight / "last.pt", weights_only=True)["model"]
    b = torch.load(interrupted / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_refuses_a_changed_config(fmnist_root, tmp_path):
    T.fit(_config(fmnist_root, tmp_path / "r", **{"train.epochs": 1}), log=lambda *a: None)
    with pytest.raises(ValueError, match="ring.size: 0.2 -> 0.3"):
        T.fit(_config(fmnist_root, tmp_path / "r", **{"train.epochs": 1, "ring.size": 0.3}), resume=True,
              log=lambda *a: None)


def test_schedules():
    tc = load_config(None)["train"]
    tc.update(epochs=90, warmup_epochs=0, decay_epochs=45)
    assert lr_factor(45, {**tc, "schedule": "paper"}) == pytest.approx(0.1)
    assert lr_factor(31, {**tc, "schedule": "step", "step_epochs": 30}) == pytest.approx(0.1)
    assert lr_factor(45, {**tc, "schedule": "cosine"}) == pytest.approx(0.5)
    assert lr_factor(0.5, {**tc, "warmup_epochs": 1, "schedule": "constant"}) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="train.schedule"):
        lr_factor(1, {**tc, "schedule": "linear"})


def test_param_groups_put_ring_decay_apart():
    cfg = load_config(None, ["train.ring_weight_decay=0.0", "train.weight_decay=0.001"])
    model = mr.convert(mr.create_model("resnet20"), 0.1)
    groups = {g["name"]: g for g in param_groups(model, cfg)}
    assert groups["ring"]["weight_decay"] == 0.0 and groups["free"]["weight_decay"] == 0.001
    assert [p.numel() for p in groups["ring"]["params"]] == [model.modelring.ring0.weight.numel()]


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="fashion"):
        T.fit(_config(tmp_path / "nothing", tmp_path / "out"), log=lambda *a: None)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable modelring checkpoint"):
        load_checkpoint(tmp_path / "last.pt")


def test_imagefolder_pipeline_end_to_end(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ["train", "val"]:
        for cls in ["cat", "dog"]:
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            for i in range(4):
                array = rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)
                Image.fromarray(array).save(tmp_path / "data" / split / cls / f"{i}.png")
    cfg = load_config(None, [f"data.root={tmp_path / 'data'}", "data.name=imagefolder", "data.image_size=32",
                             "model.name=resnet18", f"out.dir={tmp_path / 'run'}", "train.epochs=1",
                             "train.batch_size=4", "train.progress=false", "out.tensorboard=false"])
    report = T.fit(cfg, log=lambda *a: None)
    assert report["dense_params"] == sum(p.numel() for p in mr.create_model("resnet18", num_classes=2).parameters())
    assert 0.0 <= report["test_top1"] <= 1.0


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_bitwise_equal(tmp_path):
    import sys
    from pathlib import Path

    from procs import run_bounded

    script = Path(__file__).parent.parent / "scripts" / "crash_resume.py"
    result = run_bounded([sys.executable, str(script), "--kills", "2", "--epochs", "2", "--work", str(tmp_path)],
                         timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "IDENTICAL" in result.stdout
    rows = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]  # no duplicated epochs from killed attempts


def test_grad_energy_log_gives_each_stage_its_share_per_epoch(fmnist_root, tmp_path):
    cfg = _config(fmnist_root, tmp_path / "run", **{"train.epochs": 2, "train.grad_energy": True,
                                                   "model.name": "resnet8", "model.kwargs": "{width: 4}"})
    T.fit(cfg, log=lambda *a: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "grad_energy.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        assert set(row["share"]) == {"layer1", "layer2", "layer3"}  # stem and classifier are free
        assert sum(row["share"].values()) == pytest.approx(1.0) and all(v > 0 for v in row["energy"].values())
