"""The multi-stage pose network and the paper's four variants: independent, reuse (+ new norms), rpg, reuse + rpg
(``pose.reuse`` x ``method``; the older ``pose.variant`` key still reads)."""
import pytest
import torch

import modelring as mr
from modelring.config import load_config
from modelring.bank import ring_names
from modelring.models import create_model
from modelring.loop import build_model
from modelring.tasks import get_task

SMALL = {"width": 8, "stages": 3, "stage_depth": 2}


def _x():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_forward_gives_every_stage_and_backward_reaches_all_parameters():
    model = create_model("pose_cpm", **SMALL)
    out = model(_x())
    assert out.shape == (2, 3, 16, 8, 8)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    torch.testing.assert_close(model(_x()), model.forward_head(model.forward_features(_x())))


def test_reuse_shares_conv_weights_and_keeps_a_norm_per_application():
    torch.manual_seed(0)
    reused = create_model("pose_cpm", reuse=True, new_norm=True, **SMALL)
    for step in range(2):  # make every application's norms different
        for norm in reused.refine.norms_of(step).values():
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.weight.data.uniform_(0.5, 1.5)
    dense = create_model("pose_cpm", reuse=False, **SMALL)
    state = {k: v for k, v in reused.state_dict().items() if not k.startswith("refine.")}
    shared = reused.refine.module.state_dict()
    for step in range(2):
        norms = {p: n.state_dict() for p, n in reused.refine.norms_of(step).items()}
        for key, value in shared.items():
            path, _, leaf = key.rpartition(".")
            state[f"refine.{step}.{key}"] = norms[path][leaf] if path in norms else value
    dense.load_state_dict(state)  # one conv set copied into both stages, each stage its own norms
    reused.eval(), dense.eval()
    torch.testing.assert_close(reused(_x()), dense(_x()))
    n_reused, n_dense = (sum(p.numel() for p in m.parameters()) for m in (reused, dense))
    convs = sum(p.numel() for n, p in dense.refine[0].named_parameters() if p.dim() == 4 or n.endswith("out.bias"))
    assert n_dense - n_reused == convs  # the second stage's convs exist once


def test_reuse_without_new_norm_shares_norms_too():
    model = create_model("pose_cpm", reuse=True, new_norm=False, **SMALL)
    assert len(model.refine.norms) == 0
    assert model.refine.norms_of(0) == model.refine.norms_of(1)


@pytest.mark.filterwarnings("ignore:config key .* is from an earlier release:FutureWarning")  # read on purpose
@pytest.mark.parametrize("variant, reuse, method", [("independent", False, "dense"), ("reuse", True, "dense"),
                                                    ("rpg", False, "rpg"), ("reuse_rpg", True, "rpg")])
def test_four_variants_and_the_older_variant_key(variant, reuse, method):
    common = ["task.name=pose", "model.name=pose_cpm", "pose.stages=3", "model.kwargs.width=8",
              "model.kwargs.stage_depth=2", "ring.size=500", "ring.exclude=[backbone.stem.weight]"]
    cfg = load_config(None, common + [f"pose.reuse={reuse}", f"method={method}"])
    # the older switch decided conversion itself, whatever ring.enabled said
    assert load_config(None, common + [f"pose.variant={variant}", "ring.enabled=false"]) == cfg
    model = build_model(get_task("pose"), cfg, None)
    rings = int(method == "rpg")
    assert model.reuse is reuse and len(ring_names(model)) == rings
    counts = mr.count_params(model)
    assert counts.ring == 500 * rings and counts.dof == counts.ring + counts.free
    assert model(_x()).shape == (2, 3, 16, 8, 8)
    with pytest.raises(ValueError, match="pose.variant .* must be one of"):
        load_config(None, common + ["pose.variant=shared"])


def test_converted_reuse_model_saves_and_loads_from_the_registry(tmp_path):
    model = mr.convert(create_model("pose_cpm", reuse=True, **SMALL), 400, exclude=["backbone.stem.weight"])
    model.eval()
    loaded = mr.load(mr.save(model, tmp_path / "m.safetensors")).eval()
    torch.testing.assert_close(loaded(_x()), model(_x()))
    assert mr.count_params(loaded).ring == 400


def test_bad_stage_count():
    with pytest.raises(ValueError, match="stages must be an int >= 1"):
        create_model("pose_cpm", stages=0)
    assert create_model("pose_cpm", stages=1, width=8)(_x()).shape[1] == 1
