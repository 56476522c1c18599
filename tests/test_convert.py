"""convert on registry models and on models the library does not know; options, round-trips, errors."""
import copy

import pytest
import torch
from torch import nn

import modelring as mr
from modelring.bank import get_state
from modelring.sizes import resolve_ring_size


class Nested(nn.Module):
    """Nested containers, a shared submodule used twice, grouped/depthwise convs, a tied linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.blocks = nn.ModuleList([nn.Conv2d(8, 8, 3, padding=1, groups=4),
                                     nn.Conv2d(8, 8, 3, padding=1, groups=8)])
        self.shared = nn.Conv2d(8, 8, 1)
        self.inner = nn.ModuleDict({"a": nn.Sequential(self.shared, nn.BatchNorm2d(8))})
        self.head = nn.Linear(8, 5)
        self.tied = nn.Linear(5, 8, bias=False)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = torch.relu(block(x))
        x = self.inner["a"](self.shared(x))
        logits = self.head(x.mean((2, 3)))
        return logits + torch.nn.functional.linear(self.tied(logits), self.tied.weight.t())


def _outputs_equal_after_roundtrip(model, fresh, x):
    model.eval(), fresh.eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_convert_keeps_classes_paths_and_trains():
    model = Nested()
    classes = {n: type(m) for n, m in model.named_modules()}
    mr.convert(model, 0.3, seed=1)
    # every module keeps its class and path; the rings are one new child, model.modelring (one Ring per ring)
    assert {n: type(m) for n, m in model.named_modules() if not n.startswith("modelring")} == classes
    assert [n for n, _ in model.named_modules() if n.startswith("modelring")] == ["modelring", "modelring.ring0"]
    names = dict(model.named_parameters())
    assert "stem.0.weight" not in names and "stem.0.bias" in names and "modelring.ring0.weight" in names
    assert model.stem[0].weight.shape == (8, 3, 3, 3)
    x = torch.randn(2, 3, 8, 8)
    loss = model(x).square().mean()
    loss.backward()
    assert model.modelring.ring0.weight.grad.abs().sum() > 0
    assert model.stem[0].bias.grad is not None


def test_shared_module_generated_once():
    model = mr.convert(Nested(), 100)
    segments = [s.name for s in get_state(model).generators[0].spec.segments]
    assert segments.count("shared.weight") == 1 and "inner.a.0.weight" not in segments
    assert model.shared.weight is model.inner["a"][0].weight


def test_gradient_equals_dense_model_with_generated_weights():
    torch.manual_seed(0)
    model = mr.convert(Nested(), 200, seed=4)
    dense = mr.materialize(model)
    x = torch.randn(3, 3, 8, 8)
    model(x).sum().backward()
    dense(x).sum().backward()
    state = get_state(model)
    spec = state.generators[0].spec
    # dL/dW = sum_i R_i^T dL/dK_i, with R_i taken from the explicit wiring
    from helpers import dense_matrix
    R = dense_matrix(spec, torch.float32)
    dense_grads = torch.cat([dict(dense.named_parameters())[s.name].grad.reshape(-1) for s in spec.segments])
    torch.testing.assert_close(model.modelring.ring0.weight.grad, R.T @ dense_grads, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.head.bias.grad, dense.head.bias.grad)


@pytest.mark.parametrize("factory", [
    lambda: nn.Sequential(nn.ConvTranspose2d(4, 6, 3, stride=2), nn.ReLU(), nn.ConvTranspose1d(6, 2, 1)
                          if False else nn.Conv2d(6, 2, 1)),
    lambda: nn.Sequential(nn.Conv3d(2, 4, 3), nn.ReLU(), nn.ConvTranspose3d(4, 2, 2)),
    lambda: nn.Sequential(nn.Conv1d(3, 5, 3), nn.ConvTranspose1d(5, 3, 3)),
], ids=["convtranspose2d", "conv3d", "conv1d"])
def test_conv_families(factory):
    model = factory()
    dim = sum(isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)) for m in model.modules()) and 3 or (
        1 if isinstance(model[0], nn.Conv1d) else 2)
    x = torch.randn(2, model[0].in_channels, *([6] * dim))
    mr.convert(model, 0.5)
    model(x).sum().backward()
    assert model.modelring.ring0.weight.grad.abs().sum() > 0
    _outputs_equal_after_roundtrip(model, mr.convert(factory(), 0.5), x)


def test_transformer_encoder_including_attention_projections():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    reference = copy.deepcopy(model)
    mr.convert(model, 0.25, include=[nn.Linear, "*.in_proj_weight"])
    generated = [s.name for s in get_state(model).generators[0].spec.segments]
    assert "layers.0.self_attn.in_proj_weight" in generated and "layers.1.self_attn.out_proj.weight" in generated
    x = torch.randn(2, 5, 16)
    out = model(x)
    out.sum().backward()
    assert model.modelring.ring0.weight.grad.abs().sum() > 0
    dense = mr.materialize(model)
    with torch.no_grad():
        torch.testing.assert_close(dense(x), model(x))
    assert reference(x).shape == out.shape


def test_submodule_called_directly_uses_current_weights():
    model = mr.convert(mr.create_model("resnet20"), 0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    feats = model.layer1(torch.randn(2, 16, 8, 8))  # entry through a submodule regenerates after the step
    feats.sum().backward()
    dense = mr.materialize(model)
    torch.testing.assert_close(model.layer1[0].conv1.weight, dense.layer1[0].conv1.weight)


def test_weights_outside_forward_are_detached_and_model_deepcopies():
    model = mr.convert(mr.create_model("resnet20"), 0.1)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert model.conv1.weight.grad_fn is None
    clone = copy.deepcopy(model)
    clone.eval(), model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)
    with torch.no_grad():
        clone.modelring.ring0.weight.add_(1.0)
        assert not torch.equal(clone(x), model(x))  # the copy owns its ring


@pytest.mark.parametrize("cast", ["double", "bfloat16"])
def test_dtype_casts(cast):
    model = getattr(mr.convert(mr.create_model("resnet20"), 0.1), cast)()
    x = torch.randn(2, 3, 32, 32, dtype=model.modelring.ring0.weight.dtype)
    out = model(x)
    assert out.dtype == model.modelring.ring0.weight.dtype
    assert model.layer1[0].conv1.weight.dtype == model.modelring.ring0.weight.dtype
    out.float().sum().backward()
    assert model.modelring.ring0.weight.grad.dtype == model.modelring.ring0.weight.dtype


def test_autocast_cpu_bfloat16():
    model = mr.convert(mr.create_model("resnet20"), 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 32, 32))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert model.modelring.ring0.weight.grad.dtype == torch.float32


def test_train_eval_and_to():
    model = mr.convert(mr.create_model("resnet20"), 0.1).to("cpu").eval()
    assert not model.training and not model.layer1.training
    with torch.no_grad():
        a = model(torch.ones(1, 3, 32, 32))
        b = model(torch.ones(1, 3, 32, 32))
    assert torch.equal(a, b)


def test_int_float_and_byte_sizes():
    total = sum(p.numel() for n, p in mr.create_model("resnet20").named_parameters() if n.endswith("weight")
                and p.dim() > 1)
    assert mr.count_params(mr.convert(mr.create_model("resnet20"), 1234)).ring == 1234
    assert mr.count_params(mr.convert(mr.create_model("resnet20"), 0.05)).ring == round(0.05 * total)
    assert mr.count_params(mr.convert(mr.create_model("resnet20"), "40kB")).ring == 10_000
    assert mr.count_params(mr.convert(mr.create_model("resnet20"), "1KiB")).ring == 256
    assert resolve_ring_size(1.0, 77) == 77


@pytest.mark.parametrize("size,error", [(0, ValueError), (-3, ValueError), (1.5, ValueError), (0.0, ValueError),
                                        (float("nan"), ValueError), ("lots", ValueError), ("1B", ValueError),
                                        (True, TypeError), (None, ValueError), ([3], TypeError)])
def test_nonsensical_sizes_raise(size, error):
    with pytest.raises(error):
        mr.convert(mr.create_model("resnet20"), size)


def test_converting_twice_or_nothing_raises():
    model = mr.convert(mr.create_model("resnet20"), 0.1)
    with pytest.raises(ValueError, match="already converted"):
        mr.convert(model, 0.1)
    outer = nn.Sequential(mr.convert(nn.Linear(3, 3), 5), nn.Linear(3, 3))
    with pytest.raises(ValueError, match="submodule '0' is already converted"):
        mr.convert(outer, 5)
    with pytest.raises(ValueError, match="nothing to generate"):
        mr.convert(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), 0.1)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="sampling"):
        mr.convert(nn.Linear(3, 3), 5, sampling="random")
    with pytest.raises(ValueError, match="wiring"):
        mr.convert(nn.Linear(3, 3), 5, wiring="disk")
    with pytest.raises(ValueError, match="scale"):
        mr.convert(nn.Linear(3, 3), 5, scale="xavier")
    with pytest.raises(ValueError, match="match no parameter"):
        mr.convert(nn.Linear(3, 3), 5, exclude=["fcc.*"])
    with pytest.raises(TypeError, match="include/exclude"):
        mr.convert(nn.Linear(3, 3), 5, include=[3])
    with pytest.raises(ValueError, match="lazy"):
        mr.convert(nn.Sequential(nn.LazyLinear(3)), 5)


def test_include_exclude_and_frozen_counting():
    model = mr.convert(mr.create_model("resnet20"), 0.1, exclude=["conv1.weight", "fc.*"],
                       include=[nn.Conv2d, nn.Linear, "layer1.*.bn1.bias"])
    names = [s.name for s in get_state(model).generators[0].spec.segments]
    assert "conv1.weight" not in names and "fc.weight" not in names and "layer1.0.bn1.bias" in names
    assert "conv1.weight" in dict(model.named_parameters())


def test_local_rings_mapping_and_per_stage():
    model = mr.convert(mr.create_model("resnet20"), 500, rings={"layer1.*": 1000, "layer2.*": 0.1})
    rings = mr.count_params(model).rings
    assert [r.size for r in rings][:2] == [1000, round(0.1 * rings[1].total)] and rings[2].size == 500
    staged = mr.create_model("resnet20")
    mr.convert(staged, 0.05, rings=mr.rings_per_stage(staged))
    counts = mr.count_params(staged)
    assert len(counts.rings) == 4  # three stages + the rest (stem, classifier)
    assert all(abs(r.size - 0.05 * r.total) <= 1 for r in counts.rings)
    split = mr.convert(mr.create_model("resnet20"), 1000, rings=lambda name, m: name.split(".")[0])
    assert sum(r.size for r in mr.count_params(split).rings) == 1000
    with pytest.raises(ValueError, match="match no generated"):
        mr.convert(mr.create_model("resnet20"), 10, rings={"nolayer.*": 10})
    with pytest.raises(ValueError, match="match no ring pattern"):
        mr.convert(mr.create_model("resnet20"), rings={"layer1.*": 10})


def test_ablation_switches_change_the_weights():
    x = torch.randn(1, 3, 32, 32)
    outs = {}
    for name, opts in {"base": {}, "noperm": {"permute": False}, "norefl": {"reflect": False},
                       "indep": {"sampling": "independent"}, "block16": {"block": 16},
                       "recompute": {"wiring": "recompute"}, "seed": {"seed": 1}}.items():
        torch.manual_seed(0)  # same free parameters in every model
        model = mr.convert(mr.create_model("resnet20"), 0.1, **opts).eval()
        with torch.no_grad():
            outs[name] = model(x)
    assert torch.equal(outs["base"], outs["recompute"])
    for name in ["noperm", "norefl", "indep", "block16", "seed"]:
        assert not torch.equal(outs["base"], outs[name]), name


def test_scale_rules_give_kaiming_variance():
    model = mr.convert(nn.Sequential(nn.Linear(400, 300)), 100_000, scale="fan_in")
    assert abs(model[0].weight.std().item() - (2 / 400) ** 0.5) < 0.003
    model = mr.convert(nn.Sequential(nn.Linear(400, 300)), 100_000, scale="fan_out")
    assert abs(model[0].weight.std().item() - (2 / 300) ** 0.5) < 0.003
    model = mr.convert(nn.Sequential(nn.Linear(40, 30)), 1000, scale=lambda name, shape: 0.0)
    assert model[0].weight.abs().sum() == 0


def test_dead_entries_reported_when_ring_larger_than_model():
    with pytest.raises(ValueError, match="84 entries would never be read.*strict=False"):
        mr.convert(nn.Linear(4, 4), 100)
    counts = mr.count_params(mr.convert(nn.Linear(4, 4), 100, strict=False))
    assert counts.dead == 84 and counts.generated == 16


def test_an_int_that_looks_like_a_percentage_is_refused():
    with pytest.raises(ValueError, match=r"for 5% pass 0\.05"):
        mr.convert(mr.create_model("resnet20"), 5)
    with pytest.raises(ValueError, match="never be read"):  # "2MB" on a small model: more entries than weights
        mr.convert(mr.create_model("resnet8", width=4), "2MB")
    assert mr.count_params(mr.convert(mr.create_model("resnet20"), 5, strict=False)).ring == 5


def test_forward_that_raises_leaves_the_model_usable():
    class Fails(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.fail = True

        def forward(self, x):
            y = self.lin(x)
            if self.fail:
                raise RuntimeError("boom")
            return y

    model = mr.convert(Fails(), 4)
    with pytest.raises(RuntimeError, match="boom"):
        model(torch.randn(2, 3))
    assert get_state(model).depth == 0
    model.fail = False
    model(torch.randn(2, 3)).sum().backward()
    assert model.modelring.ring0.weight.grad is not None


def test_whole_model_pickles(tmp_path):
    model = mr.convert(mr.create_model("resnet20"), 0.1).eval()
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)  # our own file, written just above
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_ring_scales_keep_kaiming_std_with_ring_at_rms():
    from modelring.plan import ring_scales, target_std

    named = [("a", (64, 3, 3, 3)), ("b", (64, 64, 3, 3)), ("c", (10, 64))]
    scales, ring_std = ring_scales(named, "fan_in")
    stds = [target_std("fan_in", n, s) for n, s in named]
    assert stds[1] == pytest.approx((2 / 576) ** 0.5)
    for c, std in zip(scales, stds):
        assert c * ring_std == pytest.approx(std)
    sizes = [1728, 36864, 640]
    assert ring_std ** 2 == pytest.approx(sum(n * s * s for n, s in zip(sizes, stds)) / sum(sizes))
    assert 0.6 < scales[1] < 1.0  # the bulk of the weights reads the ring at a scale near 1
    ones, std_none = ring_scales(named, None)
    assert ones == [1.0, 1.0, 1.0] and std_none == pytest.approx(ring_std)
    model = mr.convert(nn.Sequential(nn.Linear(400, 300)), 100_000)
    assert model.modelring.ring0.weight.std().item() == pytest.approx((2 / 400) ** 0.5, rel=0.02)


def test_one_generation_per_training_forward_and_none_in_repeated_eval(monkeypatch):
    import modelring.generate as gen_module

    calls = []
    real = gen_module.generate
    monkeypatch.setattr(gen_module, "generate", lambda *a: calls.append(1) or real(*a))
    model = mr.convert(mr.create_model("resnet20"), 0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls.clear()
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(2, 3, 32, 32)).sum().backward()
        opt.step()
    assert len(calls) == 3
    model.eval()
    calls.clear()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(2, 3, 32, 32))
    assert len(calls) == 1


def test_functional_call_with_a_substituted_ring():
    model = mr.convert(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), 10)
    x = torch.randn(3, 4)
    ring = torch.randn(10, requires_grad=True)
    out = torch.func.functional_call(model, {"modelring.ring0.weight": ring}, (x,))
    out.sum().backward()
    assert ring.grad is not None and ring.grad.abs().sum() > 0
    with torch.no_grad():
        model.modelring.ring0.weight.copy_(ring)
    torch.testing.assert_close(model(x), out)


@pytest.mark.parametrize("option", ["include", "exclude"])
def test_a_single_string_or_type_where_a_list_is_expected_is_refused(option):
    with pytest.raises(TypeError, match=rf"write {option}=\['fc\.\*'\]"):
        mr.convert(mr.create_model("resnet8", width=4), 0.05, **{option: "fc.*"})
    with pytest.raises(TypeError, match=rf"write {option}=\[Linear\]"):
        mr.convert(mr.create_model("resnet8", width=4), 0.05, **{option: nn.Linear})


def test_init_std_global_starts_local_rings_like_the_global_ring():
    per_layer = lambda name, module: name  # noqa: E731
    global_ring = get_state(mr.convert(mr.create_model("resnet20"), 0.05, exclude=["conv1.weight", "fc.*"]))
    local = get_state(mr.convert(mr.create_model("resnet20"), 0.05, exclude=["conv1.weight", "fc.*"],
                                 rings=per_layer, init_std="global"))
    own = get_state(mr.convert(mr.create_model("resnet20"), 0.05, exclude=["conv1.weight", "fc.*"], rings=per_layer))
    target = global_ring.generators[0].spec.init_std
    assert all(g.spec.init_std == pytest.approx(target) for g in local.generators)
    assert len({round(g.spec.init_std, 6) for g in own.generators}) > 1  # by default each layer's own fan-in std
    assert local.ring(0).std().item() == pytest.approx(target, rel=0.2)
    fixed = get_state(mr.convert(mr.create_model("resnet8"), 0.1, init_std=0.5))
    assert fixed.generators[0].spec.init_std == 0.5
    for bad in (0, -1.0, "local", float("nan"), True):
        with pytest.raises(ValueError, match="init_std must be"):
            mr.convert(mr.create_model("resnet8"), 0.1, init_std=bad)
