"""Ring adapters (issue 25): W = W0 + c·D·S·ring with W0 frozen. Checked against the reference wiring
(``entries_and_signs``): outputs, ring gradients, exact merge; zero start equals the base; files hold only the
adapter and refuse another base; counts; optimizers step only what is trainable; several named adapters."""
import copy

import pytest
import torch
from torch import nn

import modelring as mr
from helpers import coefficients, entry_of
from modelring.adapters import get_adapters

MODELS = {"resnet": (lambda: mr.create_model("resnet8", num_classes=10, width=4), lambda: torch.randn(2, 3, 16, 16)),
          "gpt": (lambda: mr.create_model("gpt_tiny", depth=1, width=48, heads=2, context=16),
                  lambda: torch.randint(0, 256, (2, 12)))}


def base_and_input(kind: str, dtype=torch.float64):
    build, data = MODELS[kind]
    torch.manual_seed(0)
    model, x = build().to(dtype).eval(), data()
    return model, (x.to(dtype) if x.is_floating_point() else x)


def randomize(model: nn.Module, seed: int = 1, adapter: str = "") -> None:
    """Give every ring (and gain) of the adapters named ``adapter*`` non-zero values, so that deltas are visible."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(f"modelring_adapters.{adapter}"):
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * (0.1 if name.endswith("weight") else 1)
                        + (1 if name.endswith("gain") else 0))


def by_hand(model: nn.Module, base: nn.Module) -> nn.Module:
    """The plain base with W0 + ΔW written in, ΔW from the reference wiring: g_k · c_k · sign_j · ring[entry_j]."""
    dense, params = copy.deepcopy(base), dict(base.named_parameters())
    for ring in get_adapters(model).current().rings:
        spec, values = ring.spec, ring.weight.detach()
        delta = coefficients(spec, values.dtype) * values[entry_of(spec)]
        with torch.no_grad():
            for k, seg in enumerate(spec.segments):
                piece = delta[seg.offset: seg.offset + seg.numel].view(seg.shape)
                piece = piece * ring.gain[k].detach() if ring.gain is not None else piece
                dense.get_parameter(seg.name).copy_(params[seg.name] + piece)
    return dense


@pytest.mark.parametrize("kind", list(MODELS))
def test_zero_start_is_the_base_exactly_and_the_ring_still_gets_a_gradient(kind):
    base, x = base_and_input(kind)
    model = mr.adapt(copy.deepcopy(base), 300)
    assert torch.equal(model(x), base(x))
    model(x).square().mean().backward()
    ring = get_adapters(model).current().rings[0].weight
    assert torch.count_nonzero(ring) == 0 and ring.grad is not None and ring.grad.abs().sum() > 0
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["modelring_adapters.default.ring0.weight"]


@pytest.mark.parametrize("kind, options", [("resnet", {}), ("gpt", {"scale": "fan_in", "trainable_scale": True}),
                                           ("resnet", {"rings": "per_stage", "trainable_scale": True}),
                                           ("gpt", {"include": ["tok_emb.weight", nn.Linear]}),  # a tied embedding
                                           ("resnet", {"wiring": "recompute", "sampling": "independent"})])
def test_adapted_output_is_the_base_plus_the_reference_delta_exactly(kind, options):
    base, x = base_and_input(kind)
    model = mr.adapt(copy.deepcopy(base), 0.01, **options)
    randomize(model)
    assert torch.equal(model(x), by_hand(model, base)(x))


@pytest.mark.parametrize("kind", list(MODELS))
def test_ring_gradient_is_the_weight_gradient_mapped_through_the_wiring(kind):
    base, x = base_and_input(kind)
    model = mr.adapt(copy.deepcopy(base), 0.01, trainable_scale=True, seed=3)
    randomize(model)
    dense = by_hand(model, base)
    model(x).square().mean().backward()
    dense(x).square().mean().backward()
    for ring in get_adapters(model).current().rings:
        spec = ring.spec
        grads = torch.cat([dense.get_parameter(s.name).grad.reshape(-1) * ring.gain[k].detach()
                           for k, s in enumerate(spec.segments)])
        expected = torch.zeros(spec.size, dtype=grads.dtype).index_add_(0, entry_of(spec),
                                                                        coefficients(spec) * grads)
        torch.testing.assert_close(ring.weight.grad, expected, rtol=1e-10, atol=1e-12)
        deltas = [d.detach() for d in ring.deltas()]
        gain_grad = [(dense.get_parameter(s.name).grad * d / ring.gain[k].detach()).sum()
                     for k, (s, d) in enumerate(zip(spec.segments, deltas))]
        torch.testing.assert_close(ring.gain.grad, torch.stack(gain_grad), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", list(MODELS))
def test_merge_is_bit_exact_in_float64_and_gives_the_plain_model(kind):
    base, x = base_and_input(kind)
    model = mr.adapt(copy.deepcopy(base), 0.02, trainable_scale=True, scale="fan_out")
    randomize(model)
    adapted = model(x)
    merged = mr.merge(model)
    assert merged is model and type(merged) is type(base) and not mr.is_adapted(merged)
    assert torch.equal(merged(x), adapted)
    assert set(merged.state_dict()) == set(base.state_dict())
    assert all(p.requires_grad for p in merged.parameters())  # what adapt froze is thawed
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in merged.modules())


def test_merge_in_float32_matches_the_adapted_outputs():
    base, x = base_and_input("resnet", torch.float32)
    model = mr.adapt(copy.deepcopy(base), 500)
    randomize(model)
    adapted = model(x)
    torch.testing.assert_close(mr.merge(model)(x), adapted)


def test_an_adapter_file_holds_only_the_adapter_and_reloads_onto_its_base(tmp_path):
    base, x = base_and_input("resnet")
    model = mr.adapt(copy.deepcopy(base), 200, exclude=["fc.*"], train=["fc.*"], trainable_scale=True)
    randomize(model)
    with torch.no_grad():
        model.fc.bias.add_(1.0)
        model.train()(x)  # BatchNorm statistics move: the file keeps them
        model.eval()
    path = mr.save(model, tmp_path / "adapter.safetensors")
    assert path.stat().st_size < 8_000  # the base (17k float64) is not in it
    again = mr.load(path, model=copy.deepcopy(base))
    assert torch.equal(again(x), model(x)) and mr.is_adapted(again)
    assert mr.count_params(again).dof == mr.count_params(model).dof
    with pytest.raises(ValueError, match="adapter file: it holds no base weights"):
        mr.load(path)
    other = copy.deepcopy(base)
    with torch.no_grad():
        other.layer1[0].conv1.weight[0, 0, 0, 0] += 1e-9
    with pytest.raises(ValueError, match="trained on another base model"):
        mr.load_adapter(path, other)
    assert not mr.is_adapted(other)  # refused before anything changed


def test_several_named_adapters_switch_and_travel_together(tmp_path):
    base, x = base_and_input("gpt")
    model = mr.adapt(copy.deepcopy(base), 100, name="style", seed=1)
    randomize(model, seed=1)
    style = model(x)
    mr.adapt(model, 300, name="domain", seed=2, include=["*.attn.*.weight"])
    randomize(model, seed=2, adapter="domain")
    domain = model(x)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["modelring_adapters.domain.ring0.weight"]
    mr.set_adapter(model, "style")
    assert torch.equal(model(x), style) and not torch.equal(style, domain)
    again = mr.load(mr.save(model, tmp_path / "a.safetensors"), model=copy.deepcopy(base))
    assert torch.equal(again(x), style)
    assert torch.equal(mr.set_adapter(again, "domain")(x), domain)
    with pytest.raises(ValueError, match="already has an adapter named 'style'"):
        mr.adapt(model, 10, name="style")
    with pytest.raises(ValueError, match="no adapter 'nope'"):
        mr.set_adapter(model, "nope")
    assert torch.equal(mr.merge(model)(x), style)  # the active one is merged


def test_count_params_reports_the_trainable_adapter_and_the_frozen_base_apart():
    base, _ = base_and_input("resnet")
    dense = mr.count_params(base)
    model = mr.adapt(copy.deepcopy(base), 250, exclude=["fc.*"], train=["fc.*"], trainable_scale=True)
    counts = mr.count_params(model)
    adapted = sum(s.numel for s in get_adapters(model).current().specs[0].segments)
    fc = sum(p.numel() for p in model.fc.parameters())
    layers = len(model.modelring_adapters.default.ring0.spec.segments)
    assert (counts.ring, counts.scales, counts.adapted, counts.base) == (250, layers, adapted, adapted)
    assert counts.dof == 250 + counts.scales + fc
    assert counts.virtual == dense.virtual and counts.frozen == dense.virtual - fc
    assert counts.dense_bytes == dense.bytes and "frozen base" in str(counts)


def test_an_optimizer_over_all_parameters_steps_only_the_trainable_ones():
    base, x = base_and_input("resnet", torch.float32)
    model = mr.adapt(copy.deepcopy(base), 300, exclude=["fc.*"], train=["fc.bias"]).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(x.float()).logsumexp(1).mean().backward()
        opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {"modelring_adapters.default.ring0.weight", "fc.bias"}


def test_adapting_is_deterministic():
    base, x = base_and_input("gpt", torch.float32)

    def train_twice():
        model = mr.adapt(copy.deepcopy(base), 0.02, seed=5, init="random", init_std=0.01).train()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        for _ in range(2):
            opt.zero_grad()
            model(x).float().logsumexp(-1).mean().backward()
            opt.step()
        return get_adapters(model).current().rings[0].weight.detach().clone()

    assert torch.equal(train_twice(), train_twice())


def test_clear_errors():
    base, _ = base_and_input("resnet", torch.float32)
    with pytest.raises(ValueError, match="converted.*materialize"):
        mr.adapt(mr.convert(copy.deepcopy(base), 0.1), 100)
    with pytest.raises(ValueError, match="carries ring adapters"):
        mr.convert(mr.adapt(copy.deepcopy(base), 100), 0.1)
    with pytest.raises(ValueError, match="init must be one of"):
        mr.adapt(copy.deepcopy(base), 100, init="ones")
    with pytest.raises(ValueError, match="which the adapter adapts"):
        mr.adapt(copy.deepcopy(base), 100, train=["fc.*"])
    with pytest.raises(ValueError, match="match no parameter"):
        mr.adapt(copy.deepcopy(base), 100, train=["head.*"])
    with pytest.raises(ValueError, match="lazy"):
        mr.adapt(nn.Sequential(nn.LazyLinear(3)), 2, strict=False)
    counter = nn.Linear(2, 2)
    counter.register_parameter("steps", nn.Parameter(torch.zeros(3, dtype=torch.long), requires_grad=False))
    with pytest.raises(ValueError, match="only floating-point"):
        mr.adapt(counter, 2, include=["steps"])
    with pytest.raises(ValueError, match="merge\\(\\) needs a model adapted"):
        mr.merge(base)


def test_a_container_root_keeps_its_forward_and_merges_back():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    model = mr.adapt(copy.deepcopy(base), 20, init="random", init_std=0.1)
    assert len(model) == 3 and not torch.equal(model(x), base(x))
    adapted = model(x)
    assert torch.equal(mr.merge(model)(x), adapted) and type(model._modules) is dict


@pytest.mark.parametrize("kind", list(MODELS))
def test_merge_without_unload_runs_plain_and_unmerge_restores_the_base(kind, tmp_path):
    base, x = base_and_input(kind, torch.float32)
    model = mr.adapt(copy.deepcopy(base), 0.05, trainable_scale=True)
    randomize(model)
    adapted = model(x)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert mr.merge(model, unload=False) is model and mr.is_adapted(model)
    assert torch.equal(model(x), adapted)  # the same addition, now stored in the bases
    assert not any(p.requires_grad for p in model.parameters())
    merged = {n: p.detach().clone() for n, p in model.named_parameters()}
    ring = get_adapters(model).current().rings[0]
    calls = []
    handle = ring.register_forward_hook(lambda *a: calls.append(1))
    model(x)
    assert calls == []  # merged: nothing is generated in a forward
    for verb, call in {"set_adapter": lambda: mr.set_adapter(model, "default"),
                       "adapt": lambda: mr.adapt(model, 10, name="other"),
                       "save": lambda: mr.save(model, tmp_path / "a.safetensors")}.items():
        with pytest.raises(ValueError, match="unmerge"):
            call()
    assert not (tmp_path / "a.safetensors").exists()
    assert mr.unmerge(model) is model
    handle.remove()
    for name, param in model.named_parameters():  # one rounding of the merged sum at most
        delta = (param.detach() - before[name]).abs()
        bound = torch.finfo(param.dtype).eps * torch.maximum(before[name].abs(), merged[name].abs())
        assert bool((delta <= bound).all()), name
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("modelring_adapters.default.") for n in trainable)
    again = model(x)
    torch.testing.assert_close(again, adapted)
    with pytest.raises(ValueError, match="is not merged"):
        mr.unmerge(model)
    mr.merge(model, unload=False)
    assert torch.equal(mr.merge(model)(x), again) and not mr.is_adapted(model)  # unload after a kept merge
