"""Tests for the model registry and the ResNet families (He et al. 2016, arXiv 1512.03385)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from modelring.models import create_model, imagenet_resnet, list_models, model_info, register_model

# the classifier contract is read from what each model declares; pose / multi-task nets: test_pose_*, test_multitask_*
ALL_MODELS = [name for name in list_models() if model_info(name).task == "classification"]


def _input(name: str, batch: int = 2, chans: int = 3) -> torch.Tensor:
    size = min(model_info(name).input_size[1], 64)  # ImageNet models run on 64x64 here, for speed
    return torch.randn(batch, chans, size, size, generator=torch.Generator().manual_seed(0))


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_list_models():
    assert ALL_MODELS == sorted(ALL_MODELS)
    expected = {"resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
                "cifar_resnet18", "cifar_resnet34", "resnet18", "resnet34", "resnet50"}
    assert expected <= set(ALL_MODELS)
    assert list_models("cifar_*") == ["cifar_resnet18", "cifar_resnet34"]
    assert list_models("nothing*") == []


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward(name):
    model = create_model(name, num_classes=7)
    out = model(_input(name))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


def test_models_declare_task_and_input_size():
    assert {name: model_info(name).task for name in list_models() if model_info(name).task != "classification"} \
        == {"pose_cpm": "pose", "multitask_net": "multitask", "gpt_tiny": "lm", "gpt_small": "lm", "gpt_medium": "lm"}
    assert model_info("resnet18").input_size == (3, 224, 224) and model_info("resnet20").input_size == (3, 32, 32)
    for name in list_models():  # the declared input size runs (ImageNet sizes too, at batch 1)
        c, h, w = model_info(name).input_size
        model = create_model(name).eval()
        x = torch.zeros(c * h, w, dtype=torch.long) if model_info(name).task == "lm" else torch.zeros(1, c, h, w)
        with torch.no_grad():
            out = model(x)  # language models read (batch, length) token ids: input_size is (1, 1, context)
        assert all(torch.isfinite(v).all() for v in (out.values() if isinstance(out, dict) else [out])), name
        stages = model.stage_names()  # every model names its stages (one local ring per stage)
        assert stages and all(s in dict(model.named_modules()) for s in stages), name
    with pytest.raises(ValueError, match="unknown model"):
        model_info("resnet21")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_contract(name):
    model = create_model(name, num_classes=5).eval()
    x = _input(name)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.ndim == 4 and feats.shape[1] == model.num_features
        torch.testing.assert_close(model(x), model.forward_head(feats))
        pooled = model.forward_head(feats, pre_logits=True)
    assert pooled.shape == (2, model.num_features)
    assert model.num_classes == 5
    stages = model.stage_names()
    assert stages == [f"layer{i + 1}" for i in range(len(stages))]
    modules = dict(model.named_modules())
    assert all(s in modules for s in stages)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_in_chans_one(name):
    model = create_model(name, in_chans=1, num_classes=3)
    assert model.conv1.in_channels == 1
    assert model(_input(name, chans=1)).shape == (2, 3)


# Option-A (parameter-free) shortcuts for resnet20/56/110; the projection (option-B)
# variants would have 2,752 more parameters (272,474 / 855,770 / 1,730,714).
@pytest.mark.parametrize("name, count", [
    ("resnet20", 269_722),
    ("resnet56", 853_018),
    ("resnet110", 1_727_962),
    ("cifar_resnet18", 11_173_962),
    ("cifar_resnet34", 21_282_122),
])
def test_cifar_param_counts(name, count):
    assert _num_params(create_model(name, num_classes=10)) == count


@pytest.mark.parametrize("name, count, n_keys", [
    ("resnet18", 11_689_512, 122),
    ("resnet34", 21_797_672, 218),
    ("resnet50", 25_557_032, 320),
])
def test_imagenet_param_counts(name, count, n_keys):
    model = create_model(name)
    assert _num_params(model) == count
    assert len(model.state_dict()) == n_keys  # same key count as torchvision


def test_cifar_resnet20_shape_and_stages():
    model = create_model("resnet20")
    assert model.stage_names() == ["layer1", "layer2", "layer3"]
    assert model.forward_features(_input("resnet20")).shape == (2, 64, 8, 8)
    assert not any("downsample" in n for n, _ in model.named_parameters())


def test_imagenet_resnet18_names():
    model = create_model("resnet18")
    sd = model.state_dict()
    for key in ["conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
                "layer2.0.downsample.0.weight", "layer2.0.downsample.1.num_batches_tracked",
                "layer4.1.bn2.bias", "fc.weight", "fc.bias"]:
        assert key in sd, key
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert model.stage_names() == ["layer1", "layer2", "layer3", "layer4"]
    assert model.forward_features(_input("resnet18")).shape == (2, 512, 2, 2)


def test_imagenet_resnet50_names():
    sd = create_model("resnet50").state_dict()
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)
    assert create_model("resnet50").layer2[0].conv2.stride == (2, 2)  # v1.5


def test_zero_init_residual():
    model = create_model("resnet50", zero_init_residual=True)
    assert all(torch.count_nonzero(b.bn3.weight) == 0 for b in model.layer1)
    default = create_model("resnet18")
    assert torch.all(default.layer1[0].bn2.weight == 1)


def test_reset_classifier():
    model = create_model("resnet20", num_classes=10)
    model.reset_classifier(4)
    assert model.num_classes == 4
    assert model(_input("resnet20")).shape == (2, 4)
    assert model.modelring_model_spec["kwargs"]["num_classes"] == 4
    model.reset_classifier(0)
    assert isinstance(model.fc, nn.Identity)
    assert model(_input("resnet20")).shape == (2, model.num_features)


def test_model_spec_recorded_and_rebuilds():
    model = create_model("resnet32", num_classes=100, in_chans=1)
    spec = model.modelring_model_spec
    assert spec == {"name": "resnet32", "kwargs": {"num_classes": 100, "in_chans": 1}}
    rebuilt = create_model(spec["name"], **spec["kwargs"])
    rebuilt.load_state_dict(model.state_dict())
    assert create_model("resnet20").modelring_model_spec == {"name": "resnet20", "kwargs": {}}


def test_non_json_kwargs_rejected():
    with pytest.raises(TypeError, match="JSON"):
        create_model("resnet20", num_classes=torch.tensor(10))
    with pytest.raises(TypeError, match="JSON"):
        create_model("resnet20", norm=nn.BatchNorm2d)


def test_unknown_model_suggests():
    with pytest.raises(ValueError) as info:
        create_model("resnet2O")
    msg = str(info.value)
    assert "Did you mean" in msg and "resnet20" in msg
    assert "cifar_resnet34" in msg  # lists all available models


def test_duplicate_registration_rejected():
    def resnet20(*, num_classes=10, in_chans=3):  # same name as the registered builder
        return nn.Linear(in_chans, num_classes)

    with pytest.raises(ValueError, match="already registered"):
        register_model(resnet20)
    assert create_model("resnet20").num_classes == 10  # original builder untouched


def test_builders_keyword_only():
    with pytest.raises(TypeError):
        imagenet_resnet.resnet18(10)


@pytest.mark.parametrize("name", ["resnet20", "cifar_resnet18", "resnet50"])
def test_deepcopy_and_pickle(name):
    model = create_model(name, num_classes=3).eval()
    x = _input(name)
    with torch.no_grad():
        ref = model(x)
        for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            torch.testing.assert_close(clone(x), ref)
            assert clone.modelring_model_spec == model.modelring_model_spec


def _resnet20_params(w: int, in_chans: int = 3, classes: int = 10) -> int:
    """Hand count of He's ResNet-20 with stage widths w, 2w, 4w (option-A shortcuts have no parameters)."""
    convs = 9 * (in_chans * w + 6 * w * w + (w * 2 * w + 5 * (2 * w) ** 2) + (2 * w * 4 * w + 5 * (4 * w) ** 2))
    norms = 2 * (w + 6 * w + 6 * 2 * w + 6 * 4 * w)
    return convs + norms + 4 * w * classes + classes


@pytest.mark.parametrize("width", [2, 5, 16])
def test_cifar_resnet_width_matches_hand_count(width):
    assert _resnet20_params(16) == 269_722
    model = create_model("resnet20", width=width)
    assert _num_params(model) == _resnet20_params(width)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_shallow_resnets_and_bad_width():
    assert len(create_model("resnet8").layer1) == 1 and len(create_model("resnet14").layer3) == 2
    with pytest.raises(ValueError, match="width must be an int"):
        create_model("resnet20", width=0)
