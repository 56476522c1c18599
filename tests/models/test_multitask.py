"""multitask_net: outputs, sub-network reuse (shared convs, separate norms), RPG conversion with global and
per-stage rings, save/load."""
import pytest
import torch

import modelring as mr
from modelring.methods import convert_as as apply_ring
from modelring.config import default_config


def ring_cfg(**changes):
    """The ring config section with a 2,000-entry ring; stem and heads free."""
    return {**default_config()["ring"], "size": 2000, "exclude": ["encoder.stem.*", "heads.*"], **changes}


def test_outputs_and_unit_normals():
    torch.manual_seed(0)
    model = mr.create_model("multitask_net", num_classes=5, width=8)
    out = model(torch.randn(2, 3, 16, 24))
    assert out["depth"].shape == (2, 1, 16, 24) and out["semantic"].shape == (2, 5, 16, 24)
    torch.testing.assert_close(out["normal"].norm(dim=1), torch.ones(2, 16, 24))
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.randn(1, 3, 12, 16))


def decoder_params(model, *, dims):
    """Names of the depth decoder's parameters with ``dims`` dimensions (4: conv kernels)."""
    return [n for n, p in model.named_parameters() if n.startswith("decoders.depth") and p.dim() == dims]


def decoder_batchnorms(model):
    """Names of every BatchNorm of the depth decoder, reuse copies included."""
    return [n for n, m in model.named_modules()
            if n.startswith("decoders.depth") and isinstance(m, torch.nn.BatchNorm2d)]


def test_reuse_shares_conv_weights_and_counts():
    plain = mr.create_model("multitask_net", width=8, reuse=False)
    shared = mr.create_model("multitask_net", width=8, reuse=True, new_norm=False)
    new_bn = mr.create_model("multitask_net", width=8, reuse=True, new_norm=True)
    assert [len(decoder_params(m, dims=4)) for m in (plain, shared, new_bn)] == [6, 2, 2]
    assert [len(decoder_batchnorms(m)) for m in (plain, shared, new_bn)] == [6, 2, 6]
    per_block = 2 * 8 * 8 * 9  # two 3x3 convs of 8 channels
    plain_n, shared_n, new_bn_n = (sum(p.numel() for p in m.parameters()) for m in (plain, shared, new_bn))
    assert plain_n - new_bn_n == 3 * 2 * per_block  # 2 of 3 blocks gone, 3 decoders
    assert new_bn_n - shared_n == 3 * 2 * 2 * 2 * 8  # 2 extra BN sets of 2 BNs (weight + bias) per decoder


def test_each_reuse_step_updates_only_its_own_norm():
    torch.manual_seed(0)
    model = mr.create_model("multitask_net", width=8, reuse=True, new_norm=True)
    up = model.decoders.normal.up
    before = [up.norms_of(k)["conv1.1"].running_mean.clone() for k in range(3)]
    model.train()
    model(torch.randn(2, 3, 16, 16))
    after = [up.norms_of(k)["conv1.1"].running_mean for k in range(3)]
    assert all(not torch.equal(b, a) for b, a in zip(before, after))  # every application ran with its own BN
    assert not torch.equal(after[0], after[1]) and not torch.equal(after[1], after[2])
    assert up.module.conv1[1] is up.norms_of(0)["conv1.1"]  # the shared block got its own norms back


@pytest.mark.parametrize("rings", [None, "per_stage"])
def test_converts_with_global_or_local_rings_and_round_trips(tmp_path, rings):
    torch.manual_seed(0)
    model = apply_ring(mr.create_model("multitask_net", width=8, reuse=True), ring_cfg(rings=rings))
    counts = mr.count_params(model)
    assert counts.ring == 2000
    ring_params = [n for n, _ in model.named_parameters() if "ring" in n]
    assert len(ring_params) == (1 if rings is None else 4)  # encoder + three decoders
    x = torch.randn(2, 3, 16, 16)
    model.eval()
    expected = model(x)
    loaded = mr.load(mr.save(model, tmp_path / "m.safetensors")).eval()
    for key, value in loaded(x).items():
        torch.testing.assert_close(value, expected[key])
    loss = sum(v.mean() for v in model(x).values())
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "ring" in n)


def test_reuse_halves_the_generated_weights_at_equal_ring():
    plain = apply_ring(mr.create_model("multitask_net", width=8, reuse=False), ring_cfg())
    reused = apply_ring(mr.create_model("multitask_net", width=8, reuse=True, new_norm=True), ring_cfg())
    assert mr.count_params(plain).dof == mr.count_params(reused).dof  # new BN per reuse = as many BNs as blocks
    assert mr.count_params(plain).virtual > 1.9 * mr.count_params(reused).virtual - 2000


def test_one_decoder_shared_across_tasks_with_a_new_norm_per_task(tmp_path):
    torch.manual_seed(0)
    model = mr.create_model("multitask_net", width=8, reuse=True, new_norm=True, share_decoder=True)
    convs = [n for n, p in model.named_parameters() if n.startswith("decoder.") and p.dim() == 4]
    assert len(convs) == 2  # one block, reused over 3 levels and 3 tasks
    assert model.stage_names() == ["encoder", "decoder"]
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    before = model(x)
    assert before["semantic"].shape == (2, 13, 16, 16)
    with torch.no_grad():  # the normal task's own BN: only the normal output changes
        model.decoder.norms_of(1)["up.module.conv1.1"].weight.mul_(2.0)
    after = model(x)
    assert torch.equal(after["depth"], before["depth"]) and torch.equal(after["semantic"], before["semantic"])
    assert not torch.allclose(after["normal"], before["normal"])
    apply_ring(model, ring_cfg(rings="per_stage"))
    model.eval()
    loaded = mr.load(mr.save(model, tmp_path / "m.safetensors")).eval()
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x)["depth"], model(x)["depth"])
