"""Magnitude pruning baselines (global and layer-wise): exact keep counts, rankings, masks kept through
training/resume, and every method on the pose task."""
import pytest
import torch
from torch import nn

import modelring.loop as T
from modelring.config import load_config
import modelring as mr
from modelring.prune import (MagnitudePruner, apply_masks, global_magnitude_masks, layer_keep_counts,
                             layerwise_magnitude_masks, masks_from_zeros)


def test_global_masks_keep_the_largest_magnitudes_across_tensors():
    a = torch.tensor([[0.1, -5.0], [0.3, 0.0]])
    b = torch.tensor([4.0, -0.2, 0.25])
    masks = global_magnitude_masks({"a": a, "b": b}, keep=3)
    assert masks["a"].tolist() == [[False, True], [True, False]] and masks["b"].tolist() == [True, False, False]
    ties = global_magnitude_masks({"z": torch.zeros(5)}, keep=2)  # ties resolve by position, deterministically
    assert ties["z"].tolist() == [True, True, False, False, False]


@pytest.mark.parametrize("keep", [0, 8])
def test_keep_out_of_range_is_refused(keep):
    with pytest.raises(ValueError, match="prune.keep must be between 1 and the 7 prunable"):
        global_magnitude_masks({"a": torch.ones(3), "b": torch.ones(4)}, keep)


def test_pruner_prunes_at_its_step_and_stays_pruned():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    pruner = MagnitudePruner(model, 0.25, prune_step=2)  # 25% of the 80 weights -> 20 survive
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    weights = [model[0].weight, model[2].weight]
    for step in range(5):
        loss = model(torch.randn(4, 8)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        pruner.after_step()
        nonzero = sum(int((w != 0).sum()) for w in weights)
        assert nonzero == (80 if step < 1 else 20)  # pruned after the 2nd step, and after every later one
    assert pruner.nonzero(model) == 20 + 8 + 2  # kept weights + biases


def test_resumed_pruner_rebuilds_masks_from_zeros():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6))
    tensors = {"0.weight": model[0].weight}
    apply_masks(tensors, global_magnitude_masks(tensors, 9))
    pruner = MagnitudePruner(model, 9, prune_step=3)
    pruner.start_at(10)
    assert torch.equal(pruner.masks["0.weight"], masks_from_zeros(tensors)["0.weight"])
    with pytest.raises(ValueError, match="expected 5"):
        MagnitudePruner(model, 5, prune_step=3).start_at(10)


def test_pruned_training_run_reports_nonzero_dof(fmnist_root, tmp_path):
    cfg = load_config("configs/fmnist_resnet20_dense.yaml", [
        f"data.root={fmnist_root}", f"out.dir={tmp_path}", "train.epochs=2", "train.batch_size=64",
        "train.progress=false", "out.tensorboard=false", "method=prune-global", "prune.keep=0.02", "prune.at=0.5",
        "ring.exclude=[conv1.weight,fc.*]"])
    report = T.fit(cfg, log=lambda *a: None)
    from modelring.io import load
    model = load(tmp_path / "model.safetensors")
    convs = [p for n, p in model.named_parameters() if p.dim() == 4 and n != "conv1.weight"]
    kept = sum(int((p != 0).sum()) for p in convs)
    assert kept == round(0.02 * sum(p.numel() for p in convs))
    free = sum(p.numel() for n, p in model.named_parameters() if not (p.dim() == 4 and n != "conv1.weight"))
    assert report["dof"] == kept + free and report["pruned_keep"] == kept


def test_layer_keep_counts_are_proportional_and_exact():
    assert layer_keep_counts([100, 300, 600], 10) == [1, 3, 6]
    counts = layer_keep_counts([7, 13, 1000, 5], 77)
    assert sum(counts) == 77 and all(0 <= c <= n for c, n in zip(counts, [7, 13, 1000, 5]))
    assert counts == [1, 1, 75, 0]  # floors 0, 0, 75, 0; largest remainders 13*77 % 1025 = 1001 and 7*77 % 1025 = 539
    with pytest.raises(ValueError, match="between 1 and"):
        layer_keep_counts([3, 4], 8)


def test_layerwise_masks_keep_each_layers_largest_weights():
    a = torch.tensor([[5.0, -1.0, 0.5, 4.0]])
    b = torch.arange(1.0, 13.0).view(3, 4) * torch.tensor([1.0, -1.0, 1.0, -1.0])
    masks = layerwise_magnitude_masks({"a": a, "b": b}, 4)  # 4 of 16: a gets 1, b gets 3
    assert masks["a"].tolist() == [[True, False, False, False]]
    assert masks["b"].flatten().nonzero().flatten().tolist() == [9, 10, 11]
    # one global ranking lets a layer of large weights take the whole budget; layer-wise does not
    assert int(global_magnitude_masks({"a": a * 100, "b": b}, 4)["b"].sum()) == 0
    assert int(layerwise_magnitude_masks({"a": a * 100, "b": b}, 4)["b"].sum()) == 3


@pytest.mark.parametrize("method", ["prune-layerwise", "rpg", "hashednets"])
def test_every_method_trains_a_pose_model(method, tmp_path):
    """Methods are peers: pruning, RPG and HashedNets run on the pose task through the same loop."""
    from modelring.tasks.pose.synth import write_dataset

    write_dataset(tmp_path / "data", train=16, test=4, seed=0, image_size=48)
    cfg = load_config(None, ["task.name=pose", "model.name=pose_cpm", "data.name=mpii", f"data.root={tmp_path / 'data'}",
                             f"out.dir={tmp_path / 'run'}", "model.kwargs={width: 8, stage_depth: 1}", "pose.stages=2",
                             "pose.input_size=32", "pose.heatmap_size=8", f"method={method}", "prune.keep=0.1",
                             "prune.at=0.5", "ring.size=0.1", "ring.exclude=[backbone.stem.weight]", "train.epochs=2",
                             "train.batch_size=8", "train.progress=false", "out.tensorboard=false", "train.threads=1"])
    report = T.fit(cfg, log=lambda *a: None)
    assert report["method"] == method and report["dof"] < report["dense_params"]
    model = mr.load(tmp_path / "run" / "model.safetensors")
    if method == "prune-layerwise":
        weights = {n: p for n, p in model.named_parameters() if p.dim() == 4 and n != "backbone.stem.weight"}
        total = sum(p.numel() for p in weights.values())
        assert sum(int((p != 0).sum()) for p in weights.values()) == report["pruned_keep"] == round(0.1 * total)
        for name, p in weights.items():  # every layer keeps its share (up to rounding)
            assert abs(int((p != 0).sum()) - 0.1 * p.numel()) <= 1, name
    else:
        assert mr.is_converted(model) and report["ring"] > 0
        rings = [n for n, _ in model.named_parameters() if "ring" in n]
        assert (len(rings) > 1) == (method == "hashednets")  # HashedNets: one ring per layer
