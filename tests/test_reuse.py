"""Sub-network reuse: weights shared, norms separate per application, works under RPG conversion."""
import copy

import pytest
import torch
from torch import nn

import modelring as mr
from modelring.reuse import Reused, norm_paths


def block():
    return nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.Sequential(nn.Conv2d(3, 3, 1), nn.GroupNorm(1, 3)))


def test_norm_paths_finds_nested_norms():
    assert norm_paths(block()) == ["1", "3.1"]


def test_weights_shared_norms_separate():
    torch.manual_seed(0)
    r = Reused(block(), times=3)
    conv_params = [n for n, _ in r.named_parameters() if n.startswith("module.0.") or n.startswith("module.3.0.")]
    assert len(conv_params) == 4  # one set of conv weights for 3 applications
    assert len(r.norms) == 2 and set(r.norms[0]) == {"1", "3-1"}
    x = torch.randn(4, 3, 8, 8)
    for k in range(3):  # every application updates only its own BN statistics
        before = [r.norms_of(j)["1"].running_mean.clone() for j in range(3)]
        r(x + k, step=k)
        after = [r.norms_of(j)["1"].running_mean for j in range(3)]
        assert [not torch.equal(b, a) for b, a in zip(before, after)] == [j == k for j in range(3)]
    assert r.module[1] is r.norms_of(0)["1"]  # the swap was undone


def test_separate_norm_changes_output_and_gradients_reach_each_norm():
    torch.manual_seed(0)
    r = Reused(block(), times=2)
    with torch.no_grad():
        r.norms[0]["1"].weight.fill_(2.0)
    x = torch.randn(2, 3, 8, 8)
    y0, y1 = r(x, step=0), r(x, step=1)
    assert not torch.allclose(y0, y1)
    (y0.sum() + 3 * y1.sum()).backward()
    assert r.module[1].weight.grad is not None and r.norms[0]["1"].weight.grad is not None
    # the shared conv gets the sum of both applications' gradients: compare with a dense reference
    ref = copy.deepcopy(r)
    ref.zero_grad()
    a = copy.deepcopy(ref.module)
    b = copy.deepcopy(ref.module)
    b[1], b[3][1] = copy.deepcopy(ref.norms[0]["1"]), copy.deepcopy(ref.norms[0]["3-1"])
    (a(x).sum() + 3 * b(x).sum()).backward()
    torch.testing.assert_close(r.module[0].weight.grad, a[0].weight.grad + b[0].weight.grad)


def test_without_new_norm_every_step_is_the_same_module():
    r = Reused(block(), times=3, new_norm=False).eval()
    x = torch.randn(1, 3, 5, 5)
    assert len(r.norms) == 0 and torch.equal(r(x, step=0), r(x, step=2))


def test_state_dict_round_trip_and_convert():
    torch.manual_seed(0)
    net = nn.Sequential(Reused(block(), times=3), nn.Conv2d(3, 2, 1))
    mr.convert(net, 0.5, seed=1)
    x = torch.randn(2, 3, 6, 6)
    out = net[0](x, step=2).sum()
    out.backward()
    assert net.modelring.ring0.weight.grad is not None
    other = nn.Sequential(Reused(block(), times=3), nn.Conv2d(3, 2, 1))
    mr.convert(other, 0.5, seed=1)
    other.load_state_dict(net.state_dict())
    net.eval(), other.eval()
    assert torch.equal(net[0](x, step=1), other[0](x, step=1))


@pytest.mark.parametrize("times, step", [(0, 0), (2, 2), (2, -1), (2, 1.0)])
def test_bad_times_or_step_is_refused(times, step):
    with pytest.raises(ValueError, match="times|step"):
        Reused(block(), times=times)(torch.randn(1, 3, 4, 4), step=step)


def test_new_norm_without_norms_is_refused():
    with pytest.raises(ValueError, match="no normalization layer"):
        Reused(nn.Conv2d(1, 1, 1), times=2)
