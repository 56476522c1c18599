"""Methods are registered peers: the registry, a method registered by a user trains through ``fit``, HashedNets
refuses contradicting ring options, and pruning rides on the optimizer, inside ``fit`` or outside it."""
import pytest
import torch
from torch import nn

import modelring.loop as T
from modelring.config import load_config
from modelring.methods import Method, get_method, list_methods, register_method, unregister_method
from modelring.prune import MagnitudePruner, attach_pruner


def test_the_built_in_methods_are_registered_and_names_are_checked():
    assert list_methods()[:5] == ["dense", "rpg", "hashednets", "prune-global", "prune-layerwise"]
    with pytest.raises(ValueError, match="method must be one of dense, rpg, .*got 'pruning'"):
        get_method("pruning")
    with pytest.raises(ValueError, match="already registered"):
        register_method(get_method("rpg"))


class BiasOnly(Method):
    """A toy method: train only biases and norm parameters (a real fine-tuning floor)."""

    name = "toy-bias-only"

    def apply(self, model, cfg):
        for name, param in model.named_parameters():
            param.requires_grad_(name.endswith("bias") or param.dim() == 1)
        return model

    def report(self, model, attached):
        return {"dof": sum(p.numel() for p in model.parameters() if p.requires_grad), "toy": True}


@pytest.fixture
def toy_method():
    register_method(BiasOnly())
    yield BiasOnly.name
    unregister_method(BiasOnly.name)


def test_a_registered_method_trains_through_fit(toy_method, fmnist_root, tmp_path):
    cfg = load_config("configs/fmnist_resnet20_dense.yaml", [
        f"data.root={fmnist_root}", f"out.dir={tmp_path}", "train.epochs=1", "train.batch_size=64",
        "train.progress=false", "out.tensorboard=false", f"method={toy_method}", "train.threads=1"])
    report = T.fit(cfg, log=lambda *a: None)
    assert report["method"] == toy_method and report["toy"] is True
    assert 0 < report["dof"] < report["dense_params"] // 50  # biases and norms only


def test_an_unregistered_method_is_refused_before_training(fmnist_root, tmp_path):
    cfg = load_config("configs/fmnist_resnet20_dense.yaml", [f"data.root={fmnist_root}", f"out.dir={tmp_path}"])
    cfg["method"] = "toy-bias-only"
    with pytest.raises(ValueError, match="toy-bias-only"):
        T.fit(cfg, log=lambda *a: None)
    assert not (tmp_path / "config.yaml").exists()


@pytest.mark.parametrize("key, value", [("ring.rings", "per_stage"), ("ring.rings", {"layer1.*": 0.1})])
def test_hashednets_refuses_contradicting_ring_options(key, value, fmnist_root, tmp_path):
    cfg = load_config("configs/fmnist_resnet20_rpg.yaml", [f"data.root={fmnist_root}", f"out.dir={tmp_path}",
                                                           "method=hashednets"])
    section, _, name = key.partition(".")
    cfg[section][name] = value
    with pytest.raises(ValueError, match="method=hashednets gives every layer its own ring"):
        T.fit(cfg, log=lambda *a: None)


def _train(model, opt, steps):
    torch.manual_seed(1)
    for _ in range(steps):
        loss = model(torch.randn(4, 8)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_attach_pruner_outside_fit_matches_stepping_the_pruner_by_hand():
    def fresh():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    model, opt = fresh()
    pruner = attach_pruner(model, opt, 0.25, at_step=2)
    _train(model, opt, 5)
    by_hand, opt2 = fresh()
    manual = MagnitudePruner(by_hand, 0.25, prune_step=2)
    torch.manual_seed(1)
    for _ in range(5):
        loss = by_hand(torch.randn(4, 8)).pow(2).mean()
        opt2.zero_grad()
        loss.backward()
        opt2.step()
        manual.after_step()
    for a, b in zip(model.parameters(), by_hand.parameters()):
        assert torch.equal(a, b)
    assert pruner.nonzero(model) == 20 + 8 + 2
    pruner.detach()
    _train(model, opt, 2)  # detached: pruned weights may grow back
    assert pruner.nonzero(model) > 30


def test_attach_pruner_resumes_from_the_zeros_of_a_pruned_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    attach_pruner(model, opt, 20, at_step=0)
    _train(model, opt, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # a resumed run: new optimizer, same weights
    resumed = attach_pruner(model, opt, 20, at_step=0, start_step=1)
    assert resumed.masks is not None
    _train(model, opt, 3)
    assert resumed.nonzero(model) == 20 + 8 + 2
    with pytest.raises(RuntimeError, match="already attached"):
        resumed.attach(opt)


def test_the_default_exclude_applies_where_it_matches_and_written_patterns_are_checked():
    from modelring.config import load_config
    from modelring.methods import apply_method

    import modelring as mr

    gpt = mr.create_model("gpt_tiny", depth=1, width=16, heads=2, context=8)
    converted = apply_method(gpt, load_config(None, ["ring.size=50"]))  # conv1.weight / fc.* match nothing here
    generated = {seg.name for ring in converted.modelring.rings for seg in ring.spec.segments}
    assert generated == {f"blocks.0.{n}.weight" for n in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")}
    resnet = apply_method(mr.create_model("resnet8", num_classes=10, width=4), load_config(None, ["ring.size=50"]))
    assert {"conv1.weight", "fc.weight"} <= {n for n, p in resnet.named_parameters() if p.requires_grad}
    with pytest.raises(ValueError, match=r"\['fc.\*'\] match no parameter"):
        apply_method(mr.create_model("gpt_tiny", depth=1, width=16, heads=2, context=8),
                     load_config(None, ["ring.size=50", "ring.exclude=[fc.*]"]))


def test_the_peft_method_without_the_peft_library_is_a_clear_error(monkeypatch, tmp_path):
    import importlib.util

    from modelring.methods import apply_method

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    base = tmp_path / "base.safetensors"
    base.write_bytes(b"")
    with pytest.raises(ValueError, match=r"method=peft needs the peft library: pip install 'modelring\[hf\]'"):
        apply_method(torch.nn.Linear(2, 2), load_config(None, ["method=peft", f"adapter.base={base}"]))
