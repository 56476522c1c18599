"""Multi-task training on tiny generated data: losses fall, kill + resume equals an uninterrupted run,
``modelring eval`` prints the metrics table, config mistakes are clear errors."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import modelring as mr
from modelring import cli
from modelring import loop as T
from modelring.config import load_config
from modelring.tasks.multitask.synth import write_dataset

RECIPE = Path(__file__).parents[3] / "configs" / "multitask_rpg.yaml"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2d3ds") / "synth"
    write_dataset(root, train=64, test=16, seed=0, image_size=16)
    return root


def _config(root, out, **changes):
    items = {"data.root": str(root), "data.image_size": 16, "model.kwargs": {"width": 8, "reuse": True},
             "ring.size": 800, "train.epochs": 3, "train.batch_size": 16, "train.eval_batch_size": 16,
             "train.warmup_epochs": 0, "train.progress": False, "out.tensorboard": False, "out.dir": str(out),
             **changes}
    return load_config(RECIPE, [f"{k}={json.dumps(v)}" for k, v in items.items()])


@pytest.fixture(scope="module")
def finished(scenes, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "full"
    report = T.fit(_config(scenes, out), log=lambda *a: None)
    return out, report


def test_losses_fall_and_run_files(finished):
    out, report = finished
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]
    assert rows[-1]["train_depth"] < rows[0]["train_depth"] and rows[-1]["train_normal"] < rows[0]["train_normal"]
    for name in ("config.yaml", "metrics.csv", "last.pt", "best.safetensors", "model.safetensors", "report.json"):
        assert (out / name).is_file(), name
    assert report["ring"] == 800 and report["dof"] == report["ring"] + report["free"]
    assert report["test_count"] == 16 and 0 < report["test_depth_rmse"] < 10
    assert report["checkpoint_bytes"] < report["dense_checkpoint_bytes"]


def test_kill_and_resume_equals_uninterrupted_run(scenes, finished, tmp_path):
    out = tmp_path / "killed"

    def die_after_first_epoch(*args):
        if str(args[0]).startswith("epoch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.fit(_config(scenes, out), log=die_after_first_epoch)
    assert not (out / "report.json").exists()
    T.fit(_config(scenes, out), resume=True, log=lambda *a: None)
    expected, resumed = load_file(finished[0] / "model.safetensors"), load_file(out / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_eval_command_prints_the_metrics_table(finished, capsys):
    assert cli.main(["eval", str(finished[0])]) == 0
    text = capsys.readouterr().out
    assert "multitask test metrics (16 images" in text
    for row in ("depth RMSE (m)", "normal mean angle (deg)", "segmentation mIoU"):
        assert row in text
    rmse = float(next(line for line in text.splitlines() if "depth RMSE" in line).split()[-1])
    assert 0 < rmse < 10


def test_config_mistakes_are_clear_errors(scenes, tmp_path):
    with pytest.raises(ValueError, match=r"unknown multitask data set .cifar10. \(it is a classification data set\); set data.name to one of s2d3ds"):
        T.fit(_config(scenes, tmp_path / "a", **{"data.name": "cifar10"}))
    with pytest.raises(ValueError, match="multitask.depth_loss=.huber.: expected one of l1 | l2"):
        T.fit(_config(scenes, tmp_path / "b", **{"multitask.depth_loss": "huber"}))
    with pytest.raises(ValueError, match="unknown key 'multitask.depth_wieght'"):
        _config(scenes, tmp_path / "c", **{"multitask.depth_wieght": 2.0})


def test_losses_use_only_valid_pixels():
    from modelring.tasks.multitask.task import depth_loss, normal_loss

    pred, target = torch.tensor([1.0, 5.0, 2.0]).view(1, 1, 1, 3), torch.tensor([0.0, 0.0, 0.0]).view(1, 1, 1, 3)
    valid = torch.tensor([[[True, False, True]]])
    assert depth_loss(pred, target, valid, "l1").item() == 1.5 and depth_loss(pred, target, valid, "l2").item() == 2.5
    p = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).T.reshape(1, 3, 1, 2)
    t = torch.tensor([[0, 1.0, 0], [0, 1.0, 0]]).T.reshape(1, 3, 1, 2)
    assert normal_loss(p, t, torch.tensor([[[True, False]]]), "cosine").item() == 1.0
    assert normal_loss(p, t, torch.tensor([[[True, True]]]), "l2").item() == 1.0
    assert depth_loss(pred, target, torch.zeros(1, 1, 3, dtype=torch.bool), "l1").item() == 0.0


def test_pruning_trains_the_multitask_model_too(scenes, tmp_path):
    """Methods are peers: the layer-wise pruning baseline on the dense-regression task."""
    report = T.fit(_config(scenes, tmp_path / "p", **{"method": "prune-layerwise", "prune.keep": 0.2,
                                                       "prune.at": 0.5, "train.epochs": 2}), log=lambda *a: None)
    model = mr.load(tmp_path / "p" / "model.safetensors")
    prunable = [p for n, p in model.named_parameters() if p.dim() == 4 and not n.startswith(("encoder.stem", "heads"))]
    kept = sum(int((p != 0).sum()) for p in prunable)
    assert kept == report["pruned_keep"] == round(0.2 * sum(p.numel() for p in prunable))
    assert report["method"] == "prune-layerwise" and report["dof"] < report["dense_params"]


def test_a_validation_area_is_held_out_of_training_and_the_test_areas_are_scored_apart(scenes, tmp_path):
    from modelring.loop import evaluate_on_split
    from modelring.tasks import get_task

    task = get_task("multitask")
    full, test = task.build_data(_config(scenes, tmp_path))
    train, val = task.build_data(_config(scenes, tmp_path, **{"multitask.val_areas": ["area_6"]}))
    assert val.areas == ["area_6"] and "area_6" not in train.areas and len(train) + len(val) == len(full)
    assert not val.augment and set(test.areas) == {"area_5a", "area_5b"}
    assert task.eval_split(_config(scenes, tmp_path, **{"multitask.val_areas": ["area_6"]})) == "val"
    with pytest.raises(ValueError, match="holds validation out by area"):
        T.fit(_config(scenes, tmp_path / "a", **{"data.val_size": 8}))
    with pytest.raises(ValueError, match="both validation and test areas"):
        T.fit(_config(scenes, tmp_path / "b", **{"multitask.val_areas": ["area_5a"]}))
    with pytest.raises(ValueError, match="validation areas .'area_9'. are not in"):
        task.build_data(_config(scenes, tmp_path, **{"multitask.val_areas": ["area_9"]}))

    report = T.fit(_config(scenes, tmp_path / "run", **{"multitask.val_areas": ["area_6"], "train.epochs": 1}),
                   log=lambda *a: None)
    assert report["val_count"] == len(val) and "val_depth_rmse" in report and "test_depth_rmse" not in report
    scored = evaluate_on_split(load_config(tmp_path / "run" / "config.yaml", task.test_overrides()),
                               mr.load(tmp_path / "run" / "model.safetensors"))
    assert scored["count"] == len(test)
