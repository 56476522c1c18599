"""PCKh@0.5 / PCK@0.5 on hand-computed predictions, and the per-joint table."""
import numpy as np
import pytest
import torch

from modelring.data.mpii import crop_matrix, from_heatmap_coords, to_heatmap_coords, transform_points
from modelring.tasks.pose.metrics import PoseMeter, correct_within, image_coordinates, joint_table


def _people():
    gt = np.zeros((2, 16, 2))
    gt[:, :, 0] = np.arange(16) * 10.0
    gt[0, 13], gt[0, 2] = [0.0, 0.0], [30.0, 40.0]  # torso 50 px
    gt[1, 13], gt[1, 2] = [0.0, 0.0], [0.0, 20.0]   # torso 20 px
    return gt


def test_pckh_and_pck_on_hand_computed_errors():
    gt = _people()
    pred = gt.copy()
    pred[0, 0] += [3.0, 4.0]    # error 5.0 = 0.5 * head 10: counts (<=)
    pred[0, 1] += [0.0, 5.1]    # error 5.1 > 5: miss for PCKh; PCK: 5.1 <= 25 hit
    pred[1, 0] += [9.9, 0.0]    # person 2: head 20 -> threshold 10: hit; torso 20 -> threshold 10: hit
    pred[1, 1] += [10.1, 0.0]   # miss for both
    pred[1, 4] += [100.0, 0.0]  # not annotated: ignored
    pred[0, 6] += [50.0, 0.0]   # pelvis miss: excluded from the mean
    vis = np.ones((2, 16))
    vis[1, 4] = 0
    meter = PoseMeter()
    meter.update(pred, gt, vis, head_size=np.array([10.0, 20.0]))
    pckh, pck = meter.per_joint("pckh"), meter.per_joint("pck")
    assert pckh[0] == 1.0 and pckh[1] == 0.0 and pckh[4] == 1.0 and meter.pckh_count[4] == 1
    assert pckh[6] == 0.5 and pck[1] == 0.5 and pck[0] == 1.0
    # mean over the 14 joints but pelvis/thorax, weighted by annotated count: 27 annotated, 2 misses
    assert meter.mean("pckh") == pytest.approx(25 / 27)
    assert meter.mean("pck") == pytest.approx(26 / 27)  # only r_knee of person 2 misses


def test_pck_skips_people_without_torso_and_counts_sum_over_updates():
    gt, vis = _people(), np.ones((2, 16))
    vis[0, 13] = 0  # person 1: no left shoulder -> no torso size -> no PCK for person 1
    meter = PoseMeter()
    for _ in range(2):
        meter.update(gt, gt, vis, head_size=np.array([10.0, 10.0]))
    assert meter.pck_count[0] == 2 and meter.pckh_count[0] == 4
    state = meter.state()
    other = PoseMeter()
    other.load(state)
    assert other.mean() == meter.mean() == 1.0


def test_correct_within_is_inclusive():
    pred, gt = np.array([[[3.0, 4.0], [3.0, 4.01]]]), np.zeros((1, 2, 2))
    assert correct_within(pred, gt, np.array([10.0])).tolist() == [[True, False]]


def test_heatmap_to_image_coordinates_inverts_the_crop():
    matrix = crop_matrix([50.0, 60.0], 0.4, output_size=64, rotation=20.0, flip=True)
    points = np.array([[40.0, 70.0], [55.5, 52.25]])
    hm = to_heatmap_coords(transform_points(points, matrix), stride=4)
    back = image_coordinates(torch.from_numpy(hm)[None], torch.from_numpy(matrix)[None], stride=4)
    np.testing.assert_allclose(back[0], points, atol=1e-4)
    assert from_heatmap_coords(to_heatmap_coords(np.array([7.0]), 4), 4)[0] == pytest.approx(7.0)


def test_table_lists_every_joint_and_the_mean():
    meter = PoseMeter()
    gt = _people()
    meter.update(gt, gt, np.ones((2, 16)), head_size=np.array([10.0, 10.0]))
    table = joint_table(meter)
    assert "head_top" in table and "l_wrist" in table and len(table.splitlines()) == 19
    assert "mean" in table and "100.00" in table
