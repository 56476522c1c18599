"""Planning (``modelring.plan``): options -> ring specs, reading the model only; the config's grouping words."""
import copy

import pytest
import torch

import modelring as mr
from modelring.plan import grouping, per_layer, rings_per_stage


def test_plan_rings_reads_the_model_only_and_convert_installs_exactly_its_specs():
    model = mr.create_model("resnet20", num_classes=10)
    before = copy.deepcopy(model.state_dict())
    specs = mr.plan_rings(model, 0.03, seed=3, exclude=["conv1.weight", "fc.*"], rings="per_stage")
    assert model.state_dict().keys() == before.keys() and all(torch.equal(before[k], v)
                                                              for k, v in model.state_dict().items())
    assert [s.name for s in specs] == ["ring0", "ring1", "ring2"]
    assert sum(s.total for s in specs) == sum(p.numel() for n, p in model.named_parameters()
                                              if p.dim() == 4 and n != "conv1.weight")
    mr.convert(model, 0.03, seed=3, exclude=["conv1.weight", "fc.*"], rings="per_stage")
    assert [g.spec for g in model.modelring.generators] == specs


def test_the_grouping_words_mean_what_the_callables_do():
    model = mr.create_model("resnet20", num_classes=10)
    words = mr.plan_rings(model, 2000, rings="per_layer", exclude=["conv1.weight", "fc.*"])
    called = mr.plan_rings(model, 2000, rings=per_layer, exclude=["conv1.weight", "fc.*"])
    assert words == called and len(words) == 18 and sum(s.size for s in words) == 2000
    stage_of = grouping("per_stage", model)
    assert stage_of("layer2.0.conv1.weight", None) == "layer2" and stage_of("fc.weight", None) == "rest"
    assert rings_per_stage(model, rest="other")("conv1.weight", None) == "other"
    with pytest.raises(ValueError, match="None \\(null\\), per_stage or per_layer"):
        grouping("per_block", model)


def test_a_glob_naming_the_second_name_of_a_tied_parameter_names_the_first():
    class TiedLM(torch.nn.Module):  # GPT-2's layout: the head's weight is the embedding's tensor
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)
            self.head = torch.nn.Linear(4, 10, bias=False)
            self.head.weight = self.embed.weight

    for option in ("include", "exclude"):
        with pytest.raises(ValueError, match="'head.weight', which is tied to 'embed.weight'.*write 'embed.weight'"):
            mr.plan_rings(TiedLM(), 0.5, **{option: ["head.*"]})
    with pytest.raises(ValueError, match="match no parameter"):  # a plain typo keeps its message
        mr.plan_rings(TiedLM(), 0.5, include=["haed.*"])
    spec, = mr.plan_rings(TiedLM(), 0.5, include=["embed.weight"])
    assert [s.name for s in spec.segments] == ["embed.weight"]
