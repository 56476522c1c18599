"""Pose training loop on a tiny generated data set: loss falls, files, eval table, kill + resume, bad config."""
import json

import pytest
import torch

import modelring as mr
import modelring.loop as P
from modelring.cli import main
from modelring.config import load_config
from modelring.tasks.pose.synth import write_dataset
from modelring.loop import fit as run


@pytest.fixture(scope="module")
def pose_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("pose") / "data"
    write_dataset(root, train=32, test=8, seed=0, image_size=48)
    return root


def _config(root, out, **overrides):
    items = ["task.name=pose", "model.name=pose_cpm", "data.name=mpii", f"data.root={root}", f"out.dir={out}",
             "model.kwargs={width: 8, stage_depth: 1}", "pose.stages=2", "pose.input_size=32", "pose.heatmap_size=8",
             "pose.reuse=true", "method=rpg", "ring.size=600", "ring.exclude=[backbone.stem.weight]", "train.epochs=3",
             "train.batch_size=8", "train.eval_batch_size=8", "train.lr=0.01", "train.threads=1",
             "train.progress=false", "out.tensorboard=false", "train.warmup_epochs=0"]
    return load_config(None, items + [f"{k}={v}" for k, v in overrides.items()])


def test_training_loss_falls_and_writes_everything(pose_root, tmp_path):
    report = run(_config(pose_root, tmp_path / "run", **{"train.epochs": 4}), log=lambda *a: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    for name in ["metrics.csv", "config.yaml", "last.pt", "best.safetensors", "model.safetensors", "report.json"]:
        assert (tmp_path / "run" / name).is_file(), name
    assert report["method"] == "rpg" and report["task"] == "pose" and report["ring"] == 600
    assert 0.0 <= report["test_pckh"] <= 1.0 and set(report["test_pckh_per_joint"]) >= {"head_top", "l_wrist"}
    assert report["checkpoint_bytes"] < report["dense_checkpoint_bytes"]
    assert mr.count_params(mr.load(tmp_path / "run" / "model.safetensors")).ring == 600


def test_eval_prints_the_per_joint_table(pose_root, tmp_path, capsys):
    run(_config(pose_root, tmp_path / "run", **{"train.epochs": 1, "pose.flip_test": True}), log=lambda *a: None)
    assert main(["eval", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "8 persons" in out and "(flip test)" in out
    for name in ("r_ankle", "head_top", "l_wrist", "mean"):
        assert name in out


def test_kill_and_resume_equals_uninterrupted_run(pose_root, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    run(_config(pose_root, straight), log=lambda *a: None)
    interrupted = tmp_path / "interrupted"
    real, calls = P.train_one_epoch, []

    def dies_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(P, "train_one_epoch", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(_config(pose_root, interrupted), log=lambda *a: None)
    monkeypatch.setattr(P, "train_one_epoch", real)
    run(_config(pose_root, interrupted), resume=True, log=lambda *a: None)
    a = torch.load(straight / "last.pt", weights_only=True)["model"]
    b = torch.load(interrupted / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len((interrupted / "metrics.jsonl").read_text().splitlines()) == 3


def test_bad_config_is_refused_clearly(pose_root, tmp_path):
    with pytest.raises(ValueError, match=r"unknown pose data set .cifar10. \(it is a classification data set\); set data.name to one of mpii"):
        run(_config(pose_root, tmp_path / "a", **{"data.name": "cifar10"}), log=lambda *a: None)
    with pytest.raises(ValueError, match="method=.cpm.: expected one of dense | rpg"):
        run(_config(pose_root, tmp_path / "b", **{"method": "cpm"}), log=lambda *a: None)
    with pytest.raises(FileNotFoundError, match="no MPII annotation file"):
        run(_config(tmp_path / "nowhere", tmp_path / "c"), log=lambda *a: None)
    with pytest.raises(ValueError, match="unknown key 'pose.sigmaa'"):
        _config(pose_root, tmp_path / "d", **{"pose.sigmaa": 2})


def test_validation_persons_are_held_out_of_training_and_the_test_split_is_scored_apart(pose_root, tmp_path):
    from modelring.loop import evaluate_on_split
    from modelring.tasks import get_task
    from modelring.tasks.pose.task import build_pose_data

    def people(ds):
        return [(r["image"], tuple(map(float, r["center"]))) for r in ds.records]

    full, test = build_pose_data(_config(pose_root, tmp_path))
    train, val = build_pose_data(_config(pose_root, tmp_path, **{"data.val_size": 8}))
    assert len(val) == 8 and not val.augment and train.augment
    assert not set(people(train)) & set(people(val)) and sorted(people(train) + people(val)) == sorted(people(full))
    assert people(build_pose_data(_config(pose_root, tmp_path, **{"data.val_size": 8, "train.seed": 5}))[1]) == \
        people(val)  # the same persons for every seed
    assert not set(people(val)) & set(people(test))  # the test split (annot/valid.json) stays apart
    with pytest.raises(ValueError, match="data.val_size must be a number of training persons"):
        build_pose_data(_config(pose_root, tmp_path, **{"data.val_size": 32}))

    cfg = _config(pose_root, tmp_path / "run", **{"data.val_size": 8, "train.epochs": 1})
    report = run(cfg, log=lambda *a: None)
    assert report["val_count"] == 8 and 0.0 <= report["val_pckh"] <= 1.0 and "test_pckh" not in report
    scored = evaluate_on_split(load_config(tmp_path / "run" / "config.yaml", get_task("pose").test_overrides()),
                               mr.load(tmp_path / "run" / "model.safetensors"))
    assert scored["count"] == len(test)


def test_heatmaps_at_half_the_input_resolution_and_a_size_the_model_cannot_make(pose_root, tmp_path):
    from modelring.tasks import get_task

    task = get_task("pose")
    cfg = _config(pose_root, tmp_path, **{"pose.heatmap_size": 16})  # input 32: stride 2, chosen from the sizes
    model = task.build_model(cfg, None)
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape[-2:] == (16, 16)
    report = run(_config(pose_root, tmp_path / "run", **{"pose.heatmap_size": 16, "train.epochs": 1}),
                 log=lambda *a: None)
    assert 0.0 <= report["test_pckh"] <= 1.0
    assert mr.load(tmp_path / "run" / "model.safetensors")(torch.zeros(1, 3, 32, 32)).shape[-1] == 16
    with pytest.raises(ValueError, match="makes 8x8 heatmaps from a 32px input, but pose.heatmap_size=16"):
        task.build_model(_config(pose_root, tmp_path, **{"pose.heatmap_size": 16, "model.kwargs.stride": 4}), None)
    with pytest.raises(ValueError, match="stride must be 2 or 4"):
        task.build_model(_config(pose_root, tmp_path, **{"pose.heatmap_size": 4}), None)
