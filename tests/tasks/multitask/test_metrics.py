"""Dense metrics on hand-computed cases, accumulated as sums over pixels (not means of batch means)."""
import math

import torch

from modelring.tasks.multitask.metrics import DenseMetrics, segmentation_scores


def test_depth_rmse_masked_and_accumulated_over_pixels():
    m = DenseMetrics(2)
    pred = torch.tensor([1.0, 2.0, 3.0, 9.0]).view(1, 1, 1, 4)
    target = torch.ones(1, 1, 1, 4)
    m.update_depth(pred, target, torch.tensor([[[True, True, True, False]]]))  # errors 0, 1, 2; 8 is masked
    assert math.isclose(m.summary()["depth_rmse"], math.sqrt(5 / 3))
    assert math.isclose(m.summary()["depth_mae"], 1.0)
    # one pixel with error 3, then three with error 1: sqrt(12 / 4), not the mean of the batch RMSEs (3 + 1) / 2
    m = DenseMetrics(2)
    m.update_depth(torch.full((1, 1, 1, 1), 4.0), torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, dtype=torch.bool))
    m.update_depth(torch.full((1, 1, 1, 3), 2.0), torch.ones(1, 1, 1, 3), torch.ones(1, 1, 3, dtype=torch.bool))
    assert math.isclose(m.summary()["depth_rmse"], math.sqrt(3.0))


def test_normal_angle_and_rmse_of_known_vectors():
    m = DenseMetrics(2)
    pred = torch.tensor([[1.0, 0, 0], [1.0, 1.0, 0], [0, 0, 5.0], [0, 1.0, 0]]).T.reshape(1, 3, 1, 4)
    target = torch.tensor([[0, 1.0, 0], [1.0, 0, 0], [0, 0, 1.0], [1.0, 0, 0]]).T.reshape(1, 3, 1, 4)
    valid = torch.tensor([[[True, True, True, False]]])
    m.update_normal(pred, target, valid)  # 90, 45 and 0 degrees (pred renormalised); the last pixel masked
    s = m.summary()
    assert math.isclose(s["normal_angle"], 45.0, rel_tol=1e-5)
    squared = 2.0 + (2 - math.sqrt(2)) + 0.0  # |p - t|^2 = 2 - 2 cos
    assert math.isclose(s["normal_rmse"], math.sqrt(squared / 3), rel_tol=1e-5)
    assert math.isclose(s["normal_within_11.25"], 1 / 3) and math.isclose(s["normal_within_30"], 1 / 3)


def test_miou_on_a_tiny_confusion_excludes_absent_classes_and_ignored_pixels():
    m = DenseMetrics(4)
    target = torch.tensor([[0, 0, 1, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 3]])
    m.update_semantic(pred, target)
    s = m.summary()
    # class 0: TP 1, FN 1 -> 1/2; class 1: TP 2, FP 1 -> 2/3; classes 2 and 3 absent from both (ignored pixel)
    assert math.isclose(s["miou"], (1 / 2 + 2 / 3) / 2)
    assert math.isclose(s["pixel_acc"], 3 / 4)
    assert m.confusion.sum() == 4


def test_class_only_predicted_counts_with_iou_zero():
    confusion = torch.tensor([[2, 1], [0, 0]])  # class 1 never in the target but predicted once
    assert math.isclose(segmentation_scores(confusion)["miou"], (2 / 3 + 0) / 2)


def test_sums_round_trip_and_add_like_pixels():
    a, b = DenseMetrics(3), DenseMetrics(3)
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(2):
        normal = torch.nn.functional.normalize(torch.randn(2, 3, 4, 4, generator=g), dim=1)
        batches.append(({"depth": torch.rand(2, 1, 4, 4, generator=g), "normal": normal,
                         "semantic": torch.randn(2, 3, 4, 4, generator=g)},
                        {"depth": torch.rand(2, 1, 4, 4, generator=g), "normal": normal.flip(1),
                         "semantic": torch.randint(0, 3, (2, 4, 4), generator=g),
                         "depth_valid": torch.rand(2, 4, 4, generator=g) > 0.3,
                         "normal_valid": torch.rand(2, 4, 4, generator=g) > 0.3}))
    for pred, batch in batches:
        a.update(pred, batch)
    b.update({k: torch.cat([p[0][k] for p in batches]) for k in batches[0][0]},
             {k: torch.cat([p[1][k] for p in batches]) for k in batches[0][1]})
    for key, value in a.summary().items():
        assert math.isclose(value, b.summary()[key], rel_tol=1e-6), key
    assert DenseMetrics(3).load_sums(a.sums()).summary() == a.summary()
