"""The task registry and protocol: a new task is one small class, trained by the one loop with any method."""
import json

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import modelring as mr
from modelring.config import load_config
from modelring.tasks import TASKS, Task, get_task, register_task
from modelring.tasks.base import to_device


class Points(Dataset):
    """y = x @ w_true on fixed random points; ``epoch`` exists because the loop sets it."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x @ torch.arange(1.0, 9.0)[:, None] / 8
        self.epoch = 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class Regression(Task):
    name = "toy_regression"
    test_fields = ("mse",)

    def selection(self, cfg):
        return "mse", False  # lower is better

    def build_data(self, cfg):
        return Points(64, 0), Points(32, 1)

    def build_model(self, cfg, train):
        return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))

    def to_device(self, batch, device, channels_last):
        return to_device(batch[0], device, False), batch[1].to(device)

    def batch_size(self, batch):
        return len(batch[0])

    def training_loss(self, model, batch, cfg):
        return nn.functional.mse_loss(model(batch[0]), batch[1]), {}

    def evaluate(self, model, loader, cfg, device, d):
        total, count = 0.0, 0
        for batch in loader:
            x, y = self.to_device(batch, device, False)
            total += nn.functional.mse_loss(model(x), y, reduction="sum").item()
            count += len(x)
        return {"loss": total / count, "mse": total / count, "count": count}

    def describe(self, test, cfg):
        return f"mse {test['mse']:.4f}"


@pytest.fixture
def toy_task():
    task = register_task(Regression())
    yield task
    del TASKS[task.name]


@pytest.mark.parametrize("method", ["rpg", "prune-layerwise"])
def test_a_registered_task_trains_with_the_one_loop(toy_task, method, tmp_path):
    cfg = load_config(None, ["task.name=toy_regression", f"method={method}", "ring.size=0.5", "ring.exclude=[]",
                             "prune.keep=0.5", "train.epochs=4", "train.batch_size=16", "train.lr=0.05",
                             "train.progress=false", "out.tensorboard=false", f"out.dir={tmp_path}"])
    report = mr.fit(cfg, log=lambda *a: None)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "test_loss", "test_mse", "images_per_s", "epoch_s"]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    # lower is better: the best is the minimum over epochs, stored signed in last.pt
    assert report["best_test_mse"] == min(r["test_mse"] for r in rows)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["selection"] == "-test_mse" and state["best"] == -report["best_test_mse"]
    assert report["task"] == "toy_regression" and report["method"] == method and report["test_count"] == 32


def test_unknown_and_duplicate_task_names_are_refused():
    with pytest.raises(ValueError, match="task.name must be one of classification, lm, multitask, pose"):
        get_task("detection")
    with pytest.raises(ValueError, match="already registered"):
        register_task(get_task("pose"))


def test_every_registered_task_declares_its_selection_metric_among_its_test_fields():
    cfg = load_config(None, [])
    for name, task in TASKS.items():
        select, higher = task.selection(cfg)
        assert select in task.test_fields and isinstance(higher, bool), name


def test_a_finished_run_resumed_keeps_its_model_and_report(fmnist_root, tmp_path):
    cfg = load_config(None, [f"data.root={fmnist_root}", f"out.dir={tmp_path}", "train.epochs=1", "data.pad_to=32",
                             "model.name=resnet8", "model.kwargs={width: 4}", "train.progress=false",
                             "out.tensorboard=false"])
    first = mr.fit(cfg, log=lambda *a: None)
    before = {n: (tmp_path / n).read_bytes() for n in ("model.safetensors", "report.json", "best.safetensors")}
    messages = []
    again = mr.fit(cfg, resume=True, log=messages.append)
    assert again == first and any("holds a finished run" in m for m in messages)
    assert all((tmp_path / n).read_bytes() == data for n, data in before.items())


def test_validation_split_is_held_out_of_training_and_the_same_for_every_seed(fmnist_root, tmp_path, capsys):
    from modelring.cli import main
    from modelring.tasks.classification import split_validation

    rest, val = split_validation(list(range(240)), 40)
    assert len(val) == 40 and not set(val.indices) & set(rest.indices) and len(rest) + len(val) == 240
    assert split_validation(list(range(240)), 1 / 6)[1].indices == val.indices  # a fraction, the same images
    for bad in (0, 240, 1.5, True):
        with pytest.raises(ValueError, match="data.val_size must be"):
            split_validation(list(range(240)), bad)
    task = get_task("classification")
    splits = []
    for seed in (0, 1):
        cfg = load_config(None, [f"data.root={fmnist_root}", "data.val_size=40", f"train.seed={seed}",
                                 "data.train_limit=150"])
        train, evaluation = task.build_data(cfg)
        assert len(train) == 150 and len(evaluation) == 40 and task.eval_split(cfg) == "val"
        splits.append(evaluation.dataset.indices)
    assert splits[0] == splits[1]
    cfg = load_config(None, [f"data.root={fmnist_root}", "data.val_size=40", f"out.dir={tmp_path}", "train.epochs=1",
                             "data.pad_to=32", "model.name=resnet8", "model.kwargs={width: 4}", "train.progress=false",
                             "out.tensorboard=false"])
    report = mr.fit(cfg, log=lambda *a: None)
    assert report["val_count"] == 40 and "best_val_top1" in report and "test_top1" not in report
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0]).keys() >= {"val_top1", "val_loss"}
    # the final number on the test set, for the model chosen on validation
    assert main(["eval", str(tmp_path), "data.val_size=null"]) == 0
    assert "(80 test images)" in capsys.readouterr().out


def test_model_kwargs_that_contradict_the_data_are_refused(fmnist_root, tmp_path):
    cfg = load_config(None, [f"data.root={fmnist_root}", "model.kwargs.num_classes=3", f"out.dir={tmp_path / 'r'}"])
    with pytest.raises(ValueError, match=r"model.kwargs.num_classes=3 but the data \(fashion_mnist\) has 10"):
        mr.fit(cfg, log=lambda *a: None)
    assert not (tmp_path / "r" / "last.pt").exists()
