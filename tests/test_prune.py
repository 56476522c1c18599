"""Global magnitude pruning baseline: exact keep counts, global ranking, masks kept through training/resume."""
import pytest
import torch
from torch import nn

import modelring.train as T
from modelring.config import load_config
from modelring.prune import MagnitudePruner, apply_masks, global_magnitude_masks, masks_from_zeros


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
        "train.progress=false", "out.tensorboard=false", "prune.enabled=true", "prune.keep=0.02", "prune.at=0.5",
        "ring.exclude=[conv1.weight,fc.*]"])
    report = T.run(cfg, log=lambda *a: None)
    from modelring.io import load
    model = load(tmp_path / "model.safetensors")
    convs = [p for n, p in model.named_parameters() if p.dim() == 4 and n != "conv1.weight"]
    kept = sum(int((p != 0).sum()) for p in convs)
    assert kept == round(0.02 * sum(p.numel() for p in convs))
    free = sum(p.numel() for n, p in model.named_parameters() if not (p.dim() == 4 and n != "conv1.weight"))
    assert report["dof"] == kept + free and report["pruned_keep"] == kept


def test_pruning_a_converted_model_is_refused(fmnist_root, tmp_path):
    cfg = load_config("configs/fmnist_resnet20_rpg.yaml", [f"data.root={fmnist_root}", f"out.dir={tmp_path}",
                                                           "prune.enabled=true"])
    with pytest.raises(ValueError, match="set ring.enabled=false"):
        T.run(cfg, log=lambda *a: None)
