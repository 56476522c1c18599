"""MPII JSON reader, crops, flips and heatmap targets (modelring.data.mpii), and the synthetic writer."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from modelring.data.mpii import (FLIP_PAIRS, JOINT_NAMES, MPIIDataset, crop_matrix, flip_permutation,
                                 gaussian_heatmaps, invert_affine, read_annotations, transform_points,
                                 warp_image)
from modelring.tasks.pose.metrics import decode_heatmaps, flip_back, image_coordinates
from modelring.tasks.pose.synth import write_dataset

JOINTS = np.array([[30 + 2 * j, 20 + 3 * j] for j in range(16)], dtype=float)  # 0-based


def _entry(name="a.png", **changes):
    entry = {"image": name, "center": [41.0, 46.0], "scale": 0.3, "joints": (JOINTS + 1).tolist(),
             "joints_vis": [1] * 15 + [0]}
    entry.update(changes)
    return entry


def _write_root(root, entries, image_size=(100, 90)):
    (root / "annot").mkdir(parents=True)
    (root / "images").mkdir()
    (root / "annot" / "valid.json").write_text(json.dumps(entries))
    for e in entries:
        Image.new("RGB", image_size, (90, 10, 200)).save(root / "images" / e["image"])
    return root


def test_reader_reads_the_exact_layout_and_converts_to_zero_based(tmp_path):
    root = _write_root(tmp_path, [_entry(), _entry("b.png", head_size=12.5)])
    records = read_annotations(root / "annot" / "valid.json")
    assert len(records) == 2
    np.testing.assert_allclose(records[0]["joints"], JOINTS)
    np.testing.assert_allclose(records[0]["center"], [40.0, 45.0])
    assert records[0]["joints_vis"].tolist() == [1] * 15 + [0]
    # no head_size: 0.75 * |head top - upper neck| = 0.75 * |(2, 3)|
    assert records[0]["head_size"] == pytest.approx(0.75 * np.hypot(2, 3))
    assert records[1]["head_size"] == 12.5
    assert len(JOINT_NAMES) == 16 and JOINT_NAMES[9] == "head_top"


@pytest.mark.parametrize("entry, message", [
    ({"image": "a.png"}, "entry 0: missing center, scale, joints, joints_vis"),
    (_entry(joints=[[1, 2]] * 15), "entry 0: joints must be 16 x"),
    (_entry(scale=-1), "scale must be > 0"),
    (_entry(center=["x", 1]), "center must be"),
    (_entry(head_size=0), "head_size must be a positive"),
    ([1, 2], "is a list, not a dict"),
])
def test_malformed_entries_are_named(tmp_path, entry, message):
    path = tmp_path / "valid.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(ValueError, match=message):
        read_annotations(path)


def test_missing_or_broken_files_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="make-data pose"):
        MPIIDataset(tmp_path, "train")
    (tmp_path / "annot").mkdir()
    (tmp_path / "annot" / "train.json").write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        MPIIDataset(tmp_path, "train")
    (tmp_path / "annot" / "train.json").write_text(json.dumps([_entry("nothing.png")]))
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        MPIIDataset(tmp_path, "train")[0]


@pytest.mark.parametrize("flip, rotation", [(False, 0.0), (True, 0.0), (False, 25.0), (True, -40.0)])
def test_crop_warp_puts_a_pixel_where_the_matrix_says(flip, rotation):
    image = np.zeros((100, 120, 3), np.uint8)
    image[30, 70] = 255
    matrix = crop_matrix([60, 50], 0.3, output_size=64, rotation=rotation, flip=flip, box_margin=1.0)
    crop = np.asarray(warp_image(Image.fromarray(image), matrix, 64))[..., 0].astype(float)
    ys, xs = np.mgrid[:64, :64]
    centroid = [(crop * xs).sum() / crop.sum(), (crop * ys).sum() / crop.sum()]
    np.testing.assert_allclose(centroid, transform_points([70, 30], matrix), atol=0.1)
    np.testing.assert_allclose(transform_points(transform_points([[3.0, 4.0]], matrix), invert_affine(matrix)),
                               [[3.0, 4.0]], atol=1e-9)


def test_heatmap_targets_decode_back_within_a_quarter_pixel():
    rng = np.random.default_rng(0)
    joints = rng.uniform(1, 14, (16, 2))
    heatmaps, weights = gaussian_heatmaps(joints, np.ones(16), size=16, sigma=1.0)
    assert heatmaps.shape == (16, 16, 16) and weights.tolist() == [1.0] * 16
    j, (x, y) = 3, np.round(joints[3]).astype(int)
    assert heatmaps[j, y, x] == pytest.approx(np.exp(-((x - joints[j, 0]) ** 2 + (y - joints[j, 1]) ** 2) / 2),
                                              rel=1e-6)
    coords, peaks = decode_heatmaps(torch.from_numpy(heatmaps)[None])
    assert np.abs(coords[0].numpy() - joints).max() <= 0.25 + 1e-6
    border, _ = decode_heatmaps(torch.from_numpy(gaussian_heatmaps(np.array([[0.4, 15.3]]), np.ones(1), size=16,
                                                                   sigma=1.0)[0])[None])
    assert border[0, 0].tolist() == [0.0, 15.0]  # no quarter shift toward a missing neighbour
    assert (peaks > 0.6).all()


def test_invisible_and_outside_joints_get_zero_weight():
    joints = np.array([[5.0, 5.0], [-2.0, 5.0], [5.0, 15.7], [5.0, 5.0]])
    heatmaps, weights = gaussian_heatmaps(joints, np.array([1, 1, 1, 0]), size=16, sigma=1.0)
    assert weights.tolist() == [1, 0, 0, 0]
    assert heatmaps[1:].max() == 0


def test_flip_pairs_swap_left_and_right():
    perm = flip_permutation()
    assert perm[0] == 5 and perm[12] == 13 and perm[6] == 6 and perm[9] == 9
    assert sorted(perm) == list(range(16)) and [perm[p] for p in perm] == list(range(16))
    for a, b in FLIP_PAIRS:
        assert JOINT_NAMES[a].replace("r_", "l_") == JOINT_NAMES[b]
    heatmaps = torch.zeros(1, 16, 8, 8)
    heatmaps[0, 0, 2, 1] = 1  # r_ankle at x=1 -> l_ankle at x=6 after flipping back
    assert flip_back(heatmaps)[0, 5, 2, 6] == 1 and flip_back(heatmaps)[0, 0].sum() == 0


@pytest.mark.parametrize("augment", [False, True])
def test_dataset_targets_map_back_to_the_annotated_joints(tmp_path, augment):
    root = _write_root(tmp_path, [_entry(), _entry("b.png")])
    (root / "annot" / "train.json").write_text((root / "annot" / "valid.json").read_text())
    ds = MPIIDataset(root, "train", input_size=64, heatmap_size=16, augment=augment, rotation=30, seed=3)
    flips = []
    for epoch in range(4):
        ds.epoch = epoch
        for i in range(len(ds)):
            image, target, weight, meta = ds[i]
            assert image.shape == (3, 64, 64) and target.shape == (16, 16, 16)
            coords, _ = decode_heatmaps(target[None])
            pred = image_coordinates(coords, meta["matrix"][None], stride=4)[0]
            flip = ds.sample_augmentation(i)[2]
            flips.append(flip)
            expected = JOINTS[flip_permutation()] if flip else JOINTS
            side = 0.3 * 200 * 1.25 * 1.25  # largest crop side (scale jitter up to +25%)
            ok = weight.numpy() > 0
            assert ok.sum() >= 14
            # decoding error <= 0.5 heatmap px per axis (0.25 inside, 0.5 on the border), in a rotated frame
            assert np.linalg.norm(pred[ok] - expected[ok], axis=1).max() <= 0.5 * np.sqrt(2) * 4 * side / 64
    assert any(flips) == augment and (all(flips) is False or not augment)
    ds.epoch = 1
    assert torch.equal(ds[0][0], ds[0][0])  # keyed augmentation: same epoch and index, same sample


def test_synthetic_writer_writes_the_reader_layout(tmp_path):
    out = tmp_path / "synth"
    summary = write_dataset(out, train=5, test=3, seed=1, image_size=48)
    assert "5 train + 3 valid" in summary
    train, valid = read_annotations(out / "annot" / "train.json"), read_annotations(out / "annot" / "valid.json")
    assert len(train) == 5 and len(valid) == 3
    assert all((out / "images" / r["image"]).is_file() for r in train + valid)
    raw = json.loads((out / "annot" / "train.json").read_text())[0]
    assert set(raw) == {"image", "center", "scale", "joints", "joints_vis", "head_size"}
    # the 1-based file coordinates come back 0-based, inside the 48x48 image where visible
    np.testing.assert_allclose(train[0]["joints"], np.array(raw["joints"]) - 1)
    vis = np.concatenate([r["joints_vis"] for r in train]) > 0
    joints = np.concatenate([r["joints"] for r in train])
    assert vis.mean() > 0.6 and (joints[vis] >= 0).all() and (joints[vis] <= 47).all()
    again = tmp_path / "again"
    write_dataset(again, train=5, test=3, seed=1, image_size=48)
    assert (again / "annot" / "train.json").read_text() == (out / "annot" / "train.json").read_text()
    with pytest.raises(ValueError, match="not empty"):
        write_dataset(out, train=5, test=3, seed=1, image_size=48)


@pytest.mark.parametrize("name", ["../annot/valid.json", "/etc/hostname", "sub/../../x.png", "C:\\x.png"])
def test_image_paths_must_stay_inside_the_image_folder(tmp_path, name):
    _write_root(tmp_path, [_entry()])
    (tmp_path / "annot" / "valid.json").write_text(json.dumps([_entry(name=name)]))
    with pytest.raises(ValueError, match="must be a path inside root/images"):
        MPIIDataset(tmp_path, "valid")


def test_persons_outside_their_image_are_skipped_with_a_warning(tmp_path):
    outside = _entry(name="b.png", center=[500.0, 500.0])
    far = _entry(name="c.png", joints=(JOINTS + 1000).tolist())
    _write_root(tmp_path, [_entry(), outside, far])
    with pytest.warns(RuntimeWarning, match="skipped 2 of 3 persons"):
        ds = MPIIDataset(tmp_path, "valid")
    assert len(ds) == 1 and ds.skipped == 2 and ds.records[0]["image"] == "a.png"


def test_a_person_without_head_size_is_left_out_of_pckh_not_scored_against_zero():
    from modelring.tasks.pose.metrics import PoseMeter, joint_table

    gt = np.stack([JOINTS, JOINTS])
    pred = gt + 0.5  # half a pixel off everywhere
    meter = PoseMeter()
    meter.update(pred, gt, np.ones((2, 16)), np.array([10.0, float("nan")]))
    assert meter.mean("pckh") == 1.0 and meter.no_head == 1 and meter.pckh_count.sum() == 16
    assert "1 persons without a head size" in joint_table(meter)
    totals = meter.state()
    again = PoseMeter()
    again.load(totals)
    assert again.no_head == 1 and again.mean("pckh") == 1.0


def test_missing_head_size_with_unannotated_head_joints_reads_as_unknown(tmp_path):
    from modelring.data.mpii import HEAD_TOP, read_annotations

    vis = [1] * 16
    vis[HEAD_TOP] = 0
    _write_root(tmp_path, [_entry(joints_vis=vis)])
    record = read_annotations(tmp_path / "annot" / "valid.json")[0]
    assert np.isnan(record["head_size"])
