"""The CIFAR ResNets' options (``modelring.models.cifar_resnet`` over ``blocks.ResNet``)."""
import torch

import modelring as mr
def test_norm_affine_false_leaves_dof_equal_to_ring_entries():
    """The DoF-law option: BatchNorm without parameters, stem, classifier and its bias generated too."""
    model = mr.create_model("resnet20", num_classes=10, norm_affine=False)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.weight is None and m.bias is None and m.running_var is not None for m in norms)
    assert sum(p.numel() for p in model.parameters()) == 269_722 - 2 * sum(m.num_features for m in norms)
    mr.convert(model, 0.01, include=["*.weight", "*.bias"], exclude=[])
    counts = mr.count_params(model)
    assert counts.dof == counts.ring == round(0.01 * counts.virtual) and counts.free == 0
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert model.modelring.ring0.weight.grad.abs().sum() > 0
