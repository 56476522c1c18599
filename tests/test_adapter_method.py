"""``method: adapter`` fine-tunes a pretrained checkpoint through ``fit``: a dense run pretrains a tiny classifier,
an adapter run fine-tunes it; only the ring moves, the base is bit for bit the pretrained one, the report counts the
ring as the DoF, and the run's model file is a small adapter file that reloads onto the base."""
import pytest
import torch

import modelring as mr
import modelring.loop as T
from modelring.config import load_config

TINY = ["model.name=resnet8", "model.kwargs={width: 4}", "train.epochs=1", "train.batch_size=64",
        "train.progress=false", "out.tensorboard=false", "train.threads=1"]


def test_fit_fine_tunes_a_pretrained_checkpoint_through_a_ring_adapter(fmnist_root, tmp_path):
    quiet = {"log": lambda *a: None}
    dense = load_config("configs/fmnist_resnet20_dense.yaml", [*TINY, f"data.root={fmnist_root}",
                                                                f"out.dir={tmp_path / 'dense'}"])
    T.fit(dense, **quiet)
    base_file = tmp_path / "dense" / "model.safetensors"
    cfg = load_config("configs/fmnist_resnet20_dense.yaml", [
        *TINY, f"data.root={fmnist_root}", f"out.dir={tmp_path / 'adapter'}", "method=adapter",
        f"adapter.base={base_file}", "ring.size=300", "train.lr=0.05"])
    report = T.fit(cfg, **quiet)
    assert report["method"] == "adapter" and report["dof"] == 300 and report["ring"] == 300
    assert report["adapter_base"] == str(base_file) and report["adapted"] == report["frozen_base"] > 0
    adapter_file = tmp_path / "adapter" / "model.safetensors"
    assert adapter_file.stat().st_size < base_file.stat().st_size / 4
    base = mr.load(base_file)
    model = mr.load(adapter_file, model=mr.load(base_file))
    ring = model.modelring_adapters.default.ring0.weight
    assert torch.count_nonzero(ring) > 0  # it trained
    params = dict(base.named_parameters())
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters() if n in params)  # W0 unchanged
    assert mr.count_params(model).dof == 300


def test_method_adapter_needs_its_base(fmnist_root, tmp_path):
    cfg = load_config("configs/fmnist_resnet20_dense.yaml", [*TINY, f"data.root={fmnist_root}",
                                                              f"out.dir={tmp_path}", "method=adapter"])
    with pytest.raises(ValueError, match="set adapter.base"):
        T.fit(cfg, log=lambda *a: None)
    cfg["adapter"]["base"] = str(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="no such file"):
        T.fit(cfg, log=lambda *a: None)


def test_method_finetune_trains_all_of_the_base_or_what_adapter_train_names(fmnist_root, tmp_path):
    quiet = {"log": lambda *a: None}
    common = [*TINY, f"data.root={fmnist_root}"]
    T.fit(load_config("configs/fmnist_resnet20_dense.yaml", [*common, f"out.dir={tmp_path / 'dense'}"]), **quiet)
    base_file = tmp_path / "dense" / "model.safetensors"
    base = mr.load(base_file)
    everything = sum(p.numel() for p in base.parameters())
    biases = sum(p.numel() for n, p in base.named_parameters() if n.endswith(".bias"))
    full = T.fit(load_config("configs/fmnist_resnet20_dense.yaml", [
        *common, f"out.dir={tmp_path / 'full'}", "method=finetune", f"adapter.base={base_file}"]), **quiet)
    assert full["dof"] == everything and full["adapter_base"] == str(base_file)
    bitfit = T.fit(load_config("configs/fmnist_resnet20_dense.yaml", [
        *common, f"out.dir={tmp_path / 'bias'}", "method=finetune", f"adapter.base={base_file}",
        "adapter.train=['*.bias']"]), **quiet)
    assert bitfit["dof"] == biases < everything
    tuned = dict(mr.load(tmp_path / "bias" / "model.safetensors").named_parameters())
    moved = {n for n, p in base.named_parameters() if not torch.equal(p, tuned[n])}
    assert moved and all(n.endswith(".bias") for n in moved)  # only the biases trained; from the base, not anew
    with pytest.raises(ValueError, match=r"adapter.train pattern\(s\) \['nope'\]"):
        T.fit(load_config("configs/fmnist_resnet20_dense.yaml", [
            *common, f"out.dir={tmp_path / 'x'}", "method=finetune", f"adapter.base={base_file}",
            "adapter.train=[nope]"]), **quiet)
