"""convert on torchvision and timm models (optional extra `modelring[vision]`; run by scripts/test_vision.sh)."""
import pytest
import torch

import modelring as mr

torchvision = pytest.importorskip("torchvision", reason="the vision extra is not installed")


def _roundtrip(model, x, tmp_path):
    torch.manual_seed(0)
    mr.convert(model, 0.05, exclude=None)
    model(x).sum().backward()
    ring = next(p for n, p in model.named_parameters() if n.startswith("modelring."))
    assert ring.grad is not None and ring.grad.abs().sum() > 0
    model.eval()
    dense = mr.materialize(model)
    with torch.no_grad():
        torch.testing.assert_close(dense(x), model(x), rtol=0, atol=0)
    path = mr.save(model, tmp_path / "m.safetensors")
    return dense, path


def test_torchvision_resnet18(tmp_path):
    model = torchvision.models.resnet18(num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    dense, path = _roundtrip(model, x, tmp_path)
    fresh = mr.load(path, model=torchvision.models.resnet18(num_classes=10)).eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), dense(x), rtol=0, atol=0)
    plain = torchvision.models.resnet18(num_classes=10)
    plain.load_state_dict(dense.state_dict())  # materialized weights load into a stock torchvision model


def test_torchvision_vit_attention_projections(tmp_path):
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                 hidden_dim=32, mlp_dim=64, num_classes=10)
    mr.convert(model, 0.1, include=[torch.nn.Conv2d, torch.nn.Linear, "*.in_proj_weight"])
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert model.modelring.ring0.weight.grad.abs().sum() > 0


def test_timm_model(tmp_path):
    timm = pytest.importorskip("timm", reason="timm is not installed")
    model = timm.create_model("resnet18", num_classes=10, pretrained=False)
    _roundtrip(model, torch.randn(2, 3, 64, 64), tmp_path)
