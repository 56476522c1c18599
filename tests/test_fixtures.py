"""Checkpoints written by earlier releases load and give identical outputs.

``fixtures/v1_*`` were written by the release before the element-wise wiring became the default (wiring version
1; ``block=16`` was the default then, ``block=1`` the paper's element-wise option): an RPG ResNet-8 (width 4,
ring = 5% of the generated weights, seed 7, stem and classifier free) with perturbed parameters, in eval mode,
and its outputs on a fixed input.

Outputs and trained weights are compared up to float rounding (relative 1e-5 of the tensor's largest value), not
bitwise: the fixtures were written on one CPU, and another CPU's conv kernels round differently (an AMD EPYC here
differed by up to 1.2e-7 in outputs of magnitude 1, and by up to 6.4e-7 relative after the resumed epoch). A wrong
wiring, entry or sign moves outputs by O(0.1); a resume that lost optimizer state, schedule or data order moves the
weights by far more than 1e-5.
"""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import modelring as mr
from modelring.bank import get_state

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"
OUTPUTS = load_file(FIXTURES / "v1_outputs.safetensors")
# the run folders of earlier releases carry legacy config keys on purpose
pytestmark = pytest.mark.filterwarnings("ignore:config key .* is from an earlier release:FutureWarning")


def same_up_to_rounding(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-5) -> bool:
    """Equal for integer tensors; for floats, every difference within ``rel`` of ``want``'s largest magnitude."""
    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    if not want.is_floating_point():
        return torch.equal(got, want)
    return bool((got.double() - want.double()).abs().max() <= rel * want.double().abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("name", ["v1_resnet8_block16", "v1_resnet8_block1"])
def test_version_1_model_file_loads_with_identical_outputs(name):
    model = mr.load(FIXTURES / f"{name}.safetensors").eval()
    spec = get_state(model).generators[0].spec
    assert spec.wiring_version == 1 and spec.block == (16 if "16" in name else 1)
    with torch.no_grad():
        assert same_up_to_rounding(model(OUTPUTS["input"]), OUTPUTS[name])


def test_version_1_model_file_saved_again_keeps_its_version(tmp_path):
    model = mr.load(FIXTURES / "v1_resnet8_block1.safetensors").eval()
    again = mr.load(mr.save(model, tmp_path / "again.safetensors")).eval()
    with safe_open(str(tmp_path / "again.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["spec"])["rings"][0]["wiring_version"] == 1
    with torch.no_grad():
        assert same_up_to_rounding(again(OUTPUTS["input"]), OUTPUTS["v1_resnet8_block1"])


def test_version_1_block_16_state_dict_loads_into_a_model_converted_today():
    state = torch.load(FIXTURES / "v1_resnet8_block16_state_dict.pt", weights_only=True)
    model = mr.convert(mr.create_model("resnet8", num_classes=10, width=4), 0.05, seed=7,
                       exclude=["conv1.weight", "fc.*"], block=16)
    model.load_state_dict(state)
    with torch.no_grad():
        assert same_up_to_rounding(model.eval()(OUTPUTS["input"]), OUTPUTS["v1_resnet8_block16"])


def test_version_1_element_wise_state_dict_is_refused_by_a_version_2_element_wise_model():
    model = mr.load(FIXTURES / "v1_resnet8_block1.safetensors")
    state = model.state_dict()
    today = mr.convert(mr.create_model("resnet8", num_classes=10, width=4), 0.05, seed=7,
                       exclude=["conv1.weight", "fc.*"])
    with pytest.raises(RuntimeError, match="wiring version 1"):
        today.load_state_dict(state)


RUN_KINDS = ["classification", "prune", "pose", "multitask"]


@pytest.fixture(scope="module")
def old_data(tmp_path_factory):
    from fixtures.make_run_fixtures import write_data

    root = tmp_path_factory.mktemp("old_runs")
    write_data(root)
    return root


@pytest.mark.parametrize("kind", RUN_KINDS)
def test_run_folder_of_the_previous_release_resumes_to_the_same_final_model(kind, old_data, monkeypatch):
    """A run stopped after epoch 1 by the release before the single run loop, resumed today: the final model equals
    the old release's uninterrupted run up to float rounding (config keys of that release are still read)."""
    import shutil

    from modelring.config import load_config
    from modelring.loop import fit

    monkeypatch.chdir(old_data)
    folder = old_data / "runs" / kind
    shutil.copytree(FIXTURES / "runs" / kind, folder)
    fit(load_config(folder / "config.yaml"), resume=True, log=lambda *a: None)
    final, expected = load_file(folder / "model.safetensors"), load_file(folder / "expected.safetensors")
    assert final.keys() == expected.keys()
    assert all(same_up_to_rounding(final[k], expected[k]) for k in final), kind
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 2
    assert mr.count_params(mr.load(folder / "best.safetensors")).virtual > 0


@pytest.mark.parametrize("kind", RUN_KINDS)
def test_run_folder_of_the_previous_release_evaluates(kind, old_data, monkeypatch, capsys):
    """``modelring eval`` reads the earlier release's config.yaml (ring.enabled, prune.enabled, pose.variant)."""
    import shutil

    from modelring.cli import main

    monkeypatch.chdir(old_data)
    folder = old_data / "runs" / f"{kind}_eval"
    shutil.copytree(FIXTURES / "runs" / kind, folder)
    assert "enabled" in (folder / "config.yaml").read_text()
    assert main(["eval", str(folder)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert any(word in out for word in ("top-1", "PCKh", "depth RMSE")), out
