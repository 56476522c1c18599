"""The optimizer guard (``modelring.guard``): an optimizer made before ``convert`` fails loudly on its first step."""
import gc

import pytest
import torch

import modelring as mr
from modelring.guard import _REPLACED


def test_an_optimizer_made_before_convert_is_a_clear_error_on_its_first_step():
    model = mr.create_model("resnet8", width=4)
    early = torch.optim.SGD(model.parameters(), lr=0.1)
    mr.convert(model, 0.05)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    with pytest.raises(RuntimeError, match="created before modelring.convert"):
        early.step()
    late = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.modelring.ring0.weight.detach().clone()
    late.step()  # the right order: no complaint, the ring moves
    assert model.modelring.ring0.weight.grad.abs().sum() > 0
    assert not torch.equal(model.modelring.ring0.weight, before)


def test_the_guard_remembers_a_replaced_weight_only_while_something_holds_it():
    model = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Linear(6, 2))
    held = model[0].weight  # e.g. an optimizer made too early
    mr.convert(model, 0.5)
    assert _REPLACED[id(held)][1] == "0.weight"
    key = id(held)
    del held
    gc.collect()
    assert key not in _REPLACED  # weakly held: the guard keeps no weight alive
