"""count_params: DoF, ring, free, virtual, generated, bytes and the per-layer table."""
import torch
from torch import nn

import modelring as mr


def test_plain_model_counts():
    model = mr.create_model("resnet20")
    counts = mr.count_params(model)
    total = sum(p.numel() for p in model.parameters())
    assert counts.dof == counts.virtual == counts.free == total
    assert counts.ring == counts.generated == 0 and counts.dense_bytes == counts.bytes == 4 * total


def test_converted_model_counts_and_table():
    dense_total = sum(p.numel() for p in mr.create_model("resnet20").parameters())
    model = mr.convert(mr.create_model("resnet20"), 0.05, exclude=["fc.*"])
    counts = mr.count_params(model)
    generated = sum(p.numel() for n, p in mr.create_model("resnet20").named_parameters()
                    if n.endswith("weight") and p.dim() == 4)
    assert counts.generated == generated
    assert counts.virtual == dense_total
    assert counts.ring == round(0.05 * generated)
    assert counts.dof == counts.ring + counts.free == sum(p.numel() for p in model.parameters())
    assert counts.dense_bytes == 4 * dense_total and counts.bytes == 4 * counts.dof
    assert len(counts.layers) == 19 and counts.layers[0].name == "conv1.weight"
    assert abs(counts.layers[0].reuse - generated / counts.ring) < 1e-9
    text = str(counts)
    assert "DoF" in text and "layer3.2.conv2.weight" in text and "reuse" in text


def test_shared_and_frozen_parameters_count_once():
    lin = nn.Linear(3, 3)
    model = nn.Sequential(lin, nn.ReLU(), lin, nn.BatchNorm1d(3))
    model[3].weight.requires_grad_(False)
    mr.convert(model, 4)
    counts = mr.count_params(model)
    assert counts.generated == 9 and counts.ring == 4
    assert counts.free == 3 + 3 + 3 and counts.frozen == 3 and counts.dof == 4 + 6
    model(torch.randn(5, 3)).sum().backward()
    assert mr.count_params(model).wiring_bytes > 0


import pytest  # noqa: E402

HELD_CASES = {"element-wise cached": ({}, 4.0 + 36 / 512), "element-wise recompute": ({"wiring": "recompute"}, 0.0),
              "block 16 cached": ({"block": 16}, None), "block 16 recompute": ({"block": 16, "wiring": "recompute"},
                                                                              0.0),
              "independent": ({"sampling": "independent"}, 8.0)}


@pytest.mark.parametrize("case", list(HELD_CASES))
def test_held_bytes_equal_what_a_training_step_leaves_behind(case):
    options, per_weight = HELD_CASES[case]
    model = mr.convert(mr.create_model("resnet20"), 0.05, **options)
    before = mr.count_params(model).held_bytes  # known from the spec before any step
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 3, 32, 32)).sum().backward()
        opt.step()
    counts = mr.count_params(model)
    assert counts.held_bytes == before == counts.wiring_bytes + counts.workspace_bytes
    if per_weight is not None:  # element-wise: 4 B of int16 tables and 36 B of chunk tables per 512 weights
        assert per_weight - 0.001 <= counts.held_bytes_per_virtual <= per_weight + 0.001
    else:  # 8/16 B of int32 block tables, 4 B coefficient, 4 B flat + >= 4 B tiled workspace
        assert counts.held_bytes_per_virtual >= 12.5
    assert f"{counts.held_bytes_per_virtual:.2f} B per generated weight" in str(counts)
