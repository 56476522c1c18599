"""A ring is a module: ``model.modelring.ring<i>`` holds the trainable vector, its spec (extra state) and its
generator; container roots keep their container behaviour; functional_call and torch.compile work."""
import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.func import functional_call

import modelring as mr
from modelring.bank import Ring, RingBank, get_state
from modelring.spec import decode_spec


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 5))


def test_each_ring_is_a_module_with_its_spec_as_extra_state():
    model = mr.convert(_net(), 0.2, rings=lambda name, module: name.split(".")[0])  # one ring per layer
    bank = model.modelring
    assert isinstance(bank, RingBank) and get_state(model) is bank
    assert [type(r) for r in bank.children()] == [Ring, Ring]
    ring = bank.ring0
    assert decode_spec(ring.get_extra_state()) == ring.spec.to_dict() and ring.weight.requires_grad
    assert "entries ->" in repr(ring)
    model(torch.randn(2, 3, 8, 8))
    generated = ring()  # the ring module alone generates its tensors, equal to what the forward wrote
    assert torch.equal(generated[0], model[0].weight)
    counts = mr.count_params(model)
    assert len(counts.rings) == 2 and counts.ring == bank.ring0.weight.numel() + bank.ring1.weight.numel()


def test_container_root_keeps_len_iteration_indexing_and_forward():
    plain = _net()
    model = mr.convert(_net(), 0.2)
    assert len(model) == len(plain) == 4 and [type(m) for m in model] == [type(m) for m in plain]
    assert isinstance(model[-1], nn.Linear) and isinstance(model[0], nn.Conv2d)
    assert list(model.modelring.children())  # reachable by name, counted by parameters and state_dict
    assert "modelring.ring0.weight" in dict(model.named_parameters())
    x = torch.randn(2, 3, 8, 8)
    out = model(x)
    assert out.shape == (2, 5)
    model.append(nn.Softmax(dim=1))  # a later child gets the next index, as in a plain Sequential
    assert len(model) == 5 and isinstance(model[4], nn.Softmax)
    torch.testing.assert_close(model(x), out.softmax(1))
    dense = mr.materialize(model)
    assert type(dense._modules) is dict and len(dense) == 5 and not hasattr(dense, "modelring")
    torch.testing.assert_close(dense(x), model(x), rtol=0, atol=0)


def test_deleting_a_layer_of_a_converted_container_is_refused_at_the_next_forward():
    import pytest

    model = mr.convert(_net(), 0.2)
    rings = sum(p.numel() for p in model.parameters())
    del model[3]  # Sequential.__delitem__ rebuilds its children from the container's view, which hides the bank
    assert sum(p.numel() for p in model.parameters()) < rings  # the rings fell out of the parameters
    with pytest.raises(RuntimeError, match="no longer a child of this Sequential.*materialize"):
        model(torch.randn(2, 3, 8, 8))
    kept = mr.convert(_net(), 0.2)
    copy.deepcopy(kept)(torch.randn(2, 3, 8, 8))  # a copy's root hook checks the copy's own bank


def test_converted_container_deepcopies_and_pickles():
    model = mr.convert(_net(), 0.2).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
    for other in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert len(other) == 4 and other.modelring.ring0.weight is not model.modelring.ring0.weight
        with torch.no_grad():
            torch.testing.assert_close(other(x), expected, rtol=0, atol=0)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    with torch.no_grad():
        torch.testing.assert_close(torch.load(buffer, weights_only=False)(x), expected, rtol=0, atol=0)


def test_functional_call_generates_from_the_given_ring_with_gradients():
    model = mr.convert(mr.create_model("resnet8", width=4), 0.1, exclude=["conv1.weight", "fc.*"]).eval()
    x = torch.randn(2, 3, 32, 32)
    ring = (model.modelring.ring0.weight.detach() * -0.5).requires_grad_()
    out = functional_call(model, {"modelring.ring0.weight": ring}, (x,))
    other = mr.convert(mr.create_model("resnet8", width=4), 0.1, exclude=["conv1.weight", "fc.*"]).eval()
    other.load_state_dict({**model.state_dict(), "modelring.ring0.weight": ring.detach()})
    torch.testing.assert_close(out, other(x), rtol=0, atol=0)
    out.square().sum().backward()
    other.zero_grad()
    other(x).square().sum().backward()
    torch.testing.assert_close(ring.grad, other.modelring.ring0.weight.grad)
    assert model.modelring.ring0.weight.grad is None  # the module's own ring took no part
    with torch.no_grad():  # and the module itself is back to its own ring afterwards
        torch.testing.assert_close(model(x), mr.materialize(model)(x), rtol=0, atol=0)


def test_torch_compile_forward_and_backward_equal_eager():
    eager = mr.convert(_net(), 0.2)
    compiled_model = copy.deepcopy(eager)
    x = torch.randn(4, 3, 8, 8)
    out = eager(x)
    out.square().sum().backward()
    compiled = torch.compile(compiled_model, backend="aot_eager")
    out_c = compiled(x)
    out_c.square().sum().backward()
    torch.testing.assert_close(out_c, out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled_model.modelring.ring0.weight.grad, eager.modelring.ring0.weight.grad,
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="already converted"):
        mr.convert(compiled_model, 0.2)


def test_gradient_energy_per_generated_tensor_equals_the_dense_gradient_energy():
    """sum (c_i * dL/dW)^2 per generated weight, checked against the materialized model's own weight gradients."""
    model = mr.convert(mr.create_model("resnet8", width=4), 0.1, exclude=["conv1.weight", "fc.*"], scale="fan_in")
    bank = model.modelring
    bank.track_gradient_energy()
    x = torch.randn(4, 3, 32, 32)
    dense = mr.materialize(model).train()
    model.train()
    model(x).square().mean().backward()
    dense(x).square().mean().backward()
    scales = {seg.name: seg.scale for seg in bank.ring0.spec.segments}
    assert set(bank.energy) == set(scales)
    for name, scale in scales.items():
        grad = dict(dense.named_parameters())[name].grad
        assert bank.energy[name] == pytest.approx(scale ** 2 * float(grad.square().sum()), rel=1e-4), name
    bank.track_gradient_energy(False)
    model(x).sum().backward()
    assert bank.energy is None
