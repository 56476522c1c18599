"""2D-3D-S reader on small files written in the exact encodings: depth units and missing values, normal codes,
semantic indices, matching files across folders, clear errors, resizing and flips."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from modelring.data.s2d3ds import (IGNORE_INDEX, NO_LABEL, S2D3DS, decode_normals, encode_normals, find_samples,
                                   hflip_sample, read_sample, resize_sample, s2d3ds_splits)

SUFFIX = {"rgb": "rgb", "depth": "depth", "normal": "normals", "semantic": "semantic"}


def write_png(root, area, modality, prefix, array):
    folder = root / area / "data" / modality
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(folder / f"{prefix}_domain_{SUFFIX[modality]}.png")


def write_sample(root, area, prefix, *, h=4, w=6, depth=None, normals=None, semantic=None, skip=()):
    arrays = {"rgb": np.full((h, w, 3), 100, np.uint8),
              "depth": np.full((h, w), 1024, np.uint16) if depth is None else depth,
              "normal": np.tile(np.array([128, 128, 255], np.uint8), (h, w, 1)) if normals is None else normals,
              "semantic": np.zeros((h, w, 3), np.uint8) if semantic is None else semantic}
    for modality, array in arrays.items():
        if modality not in skip:
            write_png(root, area, modality, prefix, array)


def test_depth_units_and_missing_values(tmp_path):
    raw = np.array([[0, 512, 1300], [65534, 65535, 256]], np.uint16)
    write_sample(tmp_path, "area_1", "camera_a_office_1_frame_0", h=2, w=3, depth=raw)
    s = read_sample(find_samples(tmp_path, ["area_1"])[0], None)
    np.testing.assert_allclose(s.depth[0].numpy(), [[0, 1.0, 1300 / 512], [65534 / 512, 0, 0.5]])
    assert s.depth_valid.tolist() == [[True, True, True], [True, False, True]]


def test_normal_codes_round_trip_and_invalid_codes():
    rng = np.random.default_rng(0)
    n = rng.normal(size=(5, 7, 3))
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    decoded, valid = decode_normals(encode_normals(n, np.ones((5, 7), bool)))
    assert valid.all()
    cos = (decoded * n).sum(-1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 0.6  # 8-bit quantisation only
    np.testing.assert_allclose(np.linalg.norm(decoded, axis=-1), 1, atol=1e-6)
    codes = np.array([[[0, 0, 0], [128, 128, 128], [127, 127, 127], [128, 128, 255]]], np.uint8)
    decoded, valid = decode_normals(codes)
    assert valid.tolist() == [[False, False, False, True]]
    assert np.all(decoded[0, :3] == 0)


def test_samples_matched_by_prefix_across_folders(tmp_path):
    for i, prefix in enumerate(["camera_b_hall_2_frame_7", "camera_a_office_1_frame_3"]):
        write_sample(tmp_path, "area_1", prefix, depth=np.full((4, 6), 512 * (i + 1), np.uint16))
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "area_1" / "data" / "rgb" / "notes.png")
    samples = find_samples(tmp_path, ["area_1"])
    assert [s["rgb"].name for s in samples] == ["camera_a_office_1_frame_3_domain_rgb.png",
                                                "camera_b_hall_2_frame_7_domain_rgb.png"]
    assert samples[0]["normal"].name == "camera_a_office_1_frame_3_domain_normals.png"
    assert read_sample(samples[0], None).depth.max() == 2.0  # the depth file of the same prefix


def test_missing_modality_file_is_a_clear_error(tmp_path):
    write_sample(tmp_path, "area_1", "camera_a_office_1_frame_0", skip=("depth",))
    (tmp_path / "area_1" / "data" / "depth").mkdir()
    with pytest.raises(FileNotFoundError, match="has no depth file.*camera_a_office_1_frame_0_domain_depth.png"):
        find_samples(tmp_path, ["area_1"])


def test_missing_folder_and_area_are_clear_errors(tmp_path):
    write_sample(tmp_path, "area_1", "p", skip=("semantic",))
    with pytest.raises(FileNotFoundError, match="missing folder .*semantic"):
        find_samples(tmp_path, ["area_1"])
    with pytest.raises(ValueError, match=r"areas \['area_9'\] are not in"):
        S2D3DS(tmp_path, ["area_9"], size=4)
    with pytest.raises(FileNotFoundError, match="make-data multitask"):
        S2D3DS(tmp_path / "nowhere", ["area_1"], size=4)


def test_mismatched_sizes_are_a_clear_error(tmp_path):
    write_sample(tmp_path, "area_1", "p", skip=("depth",))
    write_png(tmp_path, "area_1", "depth", "p", np.zeros((5, 6), np.uint16))
    with pytest.raises(ValueError, match="differ in size"):
        read_sample(find_samples(tmp_path, ["area_1"])[0], None)


def test_semantic_index_with_and_without_label_list(tmp_path):
    index = np.array([[0, 2, 1, 3, NO_LABEL, 70000]])
    rgb = np.stack([(index >> 16) & 255, (index >> 8) & 255, index & 255], -1).astype(np.uint8)
    write_sample(tmp_path, "area_1", "p", h=1, w=6, semantic=rgb)
    files = find_samples(tmp_path, ["area_1"])[0]
    assert read_sample(files, None).semantic.tolist() == [[0, 2, 1, 3, IGNORE_INDEX, IGNORE_INDEX]]
    (tmp_path / "semantic_labels.json").write_text(json.dumps(
        ["chair_1_office_1_1_1_1", "wall_3_office_1", "board_2_hall_1", "bogus_0_room"]))
    ds = S2D3DS(tmp_path, ["area_1"], size=1)
    assert read_sample(files, ds.index_to_class).semantic.tolist() == [[8, 11, 2, IGNORE_INDEX, IGNORE_INDEX,
                                                                         IGNORE_INDEX]]


def test_resize_keeps_labels_and_unit_normals_and_flip_negates_x(tmp_path):
    rng = np.random.default_rng(1)
    n = rng.normal(size=(12, 18, 3))
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    depth = rng.integers(256, 4096, (12, 18)).astype(np.uint16)
    depth[0, :] = 65535
    labels = rng.integers(0, 13, (12, 18))
    write_sample(tmp_path, "area_1", "p", h=12, w=18, depth=depth, normals=encode_normals(n, np.ones((12, 18), bool)),
                 semantic=np.stack([labels * 0, labels * 0, labels], -1).astype(np.uint8))
    s = resize_sample(read_sample(find_samples(tmp_path, ["area_1"])[0], None), 8)
    assert s.image.shape == (3, 8, 8) and s.depth.shape == (1, 8, 8) and s.semantic.shape == (8, 8)
    assert set(s.semantic.unique().tolist()) <= set(labels.ravel().tolist())
    torch.testing.assert_close(s.normal.norm(dim=0), torch.ones(8, 8), atol=1e-5, rtol=0)
    assert not s.depth_valid[0].any() and s.depth_valid[1:].all()  # nearest: the missing row stays missing
    assert (s.depth[0][~s.depth_valid] == 0).all()
    f = hflip_sample(s)
    torch.testing.assert_close(f.normal[0], -s.normal[0].flip(-1))
    torch.testing.assert_close(f.normal[1:], s.normal[1:].flip(-1))
    assert torch.equal(f.semantic, s.semantic.flip(-1))


def test_splits_by_area_and_items(tmp_path):
    for area in ["area_1", "area_2", "area_5a"]:
        write_sample(tmp_path, area, f"camera_x_{area}_frame_0")
    train, test = s2d3ds_splits(tmp_path, test_areas=["area_5a"], size=4, augment=True)
    assert len(train) == 2 and len(test) == 1
    item = test[0]
    assert set(item) == {"image", "depth", "normal", "semantic", "depth_valid", "normal_valid"}
    assert item["image"].shape == (3, 4, 4) and item["depth"].dtype == torch.float32
    with pytest.raises(ValueError, match="every area"):
        s2d3ds_splits(tmp_path, test_areas=["area_1", "area_2", "area_5a"], size=4, augment=False)


def test_wrong_bit_depth_or_channels_are_clear_errors(tmp_path):
    write_sample(tmp_path, "area_1", "p", depth=np.full((4, 6), 4, np.uint8))
    with pytest.raises(ValueError, match="16-bit grayscale"):
        read_sample(find_samples(tmp_path, ["area_1"])[0], None)
    write_sample(tmp_path, "area_2", "p", normals=np.zeros((4, 6), np.uint8))
    with pytest.raises(ValueError, match="must be an RGB image"):
        read_sample(find_samples(tmp_path, ["area_2"])[0], None)
