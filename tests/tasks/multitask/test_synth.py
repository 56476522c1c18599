"""The scene renderer's depth, normals and labels are geometrically consistent, and written data reads back."""
import numpy as np
import pytest

from modelring.data.s2d3ds import CLASSES, S2D3DS, find_samples, read_sample
from modelring.tasks.multitask.synth import (FOV_DEGREES, camera_rotation, render, sample_scene, write_dataset)

LABEL = {name: i for i, name in enumerate(CLASSES)}


def empty_room(**changes):
    scene = sample_scene(np.random.default_rng(0))
    scene.update(room=np.array([4.0, 3.0, 6.0]), camera=np.array([2.0, 1.5, 1.0]), yaw=0.0, pitch=0.0,
                 boxes=[], spheres=[], openings=[])
    scene.update(changes)
    return scene


def back_project(depth, size, rotation, origin):
    """World points of every pixel from z-depth and the pinhole intrinsics the renderer uses."""
    focal = (size / 2) / np.tan(np.radians(FOV_DEGREES) / 2)
    v, u = np.mgrid[0:size, 0:size] + 0.5
    cam = np.stack([(u - size / 2) / focal * depth, (v - size / 2) / focal * depth, depth], -1)
    return cam @ rotation.T + origin


def test_fronto_parallel_wall_has_constant_normal_and_analytic_depth():
    out = render(empty_room(), 32, np.random.default_rng(0))
    far_wall = out["label"] == LABEL["wall"]
    centre = far_wall & (np.abs(out["normal"][..., 2] + 1) < 1e-9)
    assert centre[16, 16] and centre.sum() > 50  # the wall straight ahead
    np.testing.assert_allclose(out["depth"][centre], 6.0 - 1.0, atol=1e-9)  # plane z = 6, camera at z = 1
    np.testing.assert_allclose(out["normal"][centre], np.tile([0.0, 0.0, -1.0], (centre.sum(), 1)), atol=1e-12)
    floor, ceiling = out["label"] == LABEL["floor"], out["label"] == LABEL["ceiling"]
    assert floor[-1].all() and ceiling[0].all()  # camera frame: y points down
    np.testing.assert_allclose(out["normal"][floor], np.tile([0.0, -1.0, 0.0], (floor.sum(), 1)), atol=1e-12)
    np.testing.assert_allclose(out["normal"][ceiling], np.tile([0.0, 1.0, 0.0], (ceiling.sum(), 1)), atol=1e-12)


def test_depth_back_projects_onto_the_surfaces_it_labels():
    scene = empty_room(yaw=0.3, pitch=-0.2, spheres=[(np.array([2.5, 0.4, 3.0]), 0.4)],
                       boxes=[("table", np.array([0.5, 0.0, 2.5]), np.array([1.5, 0.7, 3.5]))])
    out = render(scene, 40, np.random.default_rng(0))
    points = back_project(out["depth"], 40, camera_rotation(0.3, -0.2), scene["camera"])
    np.testing.assert_allclose(points[out["label"] == LABEL["floor"]][:, 1], 0.0, atol=1e-9)
    np.testing.assert_allclose(points[out["label"] == LABEL["ceiling"]][:, 1], 3.0, atol=1e-9)
    sphere = out["label"] == LABEL["clutter"]
    assert sphere.sum() > 10
    np.testing.assert_allclose(np.linalg.norm(points[sphere] - [2.5, 0.4, 3.0], axis=-1), 0.4, atol=1e-9)
    table = out["label"] == LABEL["table"]
    assert table.sum() > 10
    assert np.all((points[table] >= [0.5 - 1e-9, -1e-9, 2.5 - 1e-9]) & (points[table] <= [1.5 + 1e-9, 0.7 + 1e-9,
                                                                                           3.5 + 1e-9]))
    # normals face the camera: they point against the viewing ray
    rays = back_project(np.ones((40, 40)), 40, camera_rotation(0.3, -0.2), np.zeros(3))
    world_normals = out["normal"] @ camera_rotation(0.3, -0.2).T
    assert np.all((world_normals * rays).sum(-1) < 0)
    np.testing.assert_allclose(np.linalg.norm(out["normal"], axis=-1), 1.0, atol=1e-9)


def test_windows_have_no_depth_and_no_normals():
    scene = empty_room(openings=[("window", 2, 6.0, (1.0, 3.0), (1.0, 2.0))])
    out = render(scene, 32, np.random.default_rng(0))
    window = out["label"] == LABEL["window"]
    assert window.sum() > 20
    assert not out["depth_valid"][window].any() and out["depth_valid"][~window].all()
    assert not out["normal_valid"][window].any()


def test_written_dataset_reads_back_exactly(tmp_path):
    summary = write_dataset(tmp_path / "d", train=6, test=3, seed=3, image_size=24)
    assert "6 train scenes" in summary and "3 test scenes" in summary
    ds = S2D3DS(tmp_path / "d", ["area_5a", "area_5b"], size=24)
    assert len(ds) == 3 and ds.index_to_class is not None
    files = find_samples(tmp_path / "d", ["area_1"])
    assert len(files) == 2 and files[0]["rgb"].name == "camera_000000_synthroom_0_frame_0_domain_rgb.png"
    rng = np.random.default_rng([3, 0])
    expected = render(sample_scene(rng), 24, rng)
    s = read_sample(files[0], ds.index_to_class)
    assert np.array_equal(s.semantic.numpy(), expected["label"])
    assert np.array_equal(s.depth_valid.numpy(), expected["depth_valid"])
    valid = expected["depth_valid"]
    assert np.abs(s.depth[0].numpy()[valid] - expected["depth"][valid]).max() <= 1 / 1024 + 1e-6
    cos = (s.normal.permute(1, 2, 0).numpy() * expected["normal"]).sum(-1)[expected["normal_valid"]]
    assert cos.min() > np.cos(np.radians(0.6))
    with pytest.raises(ValueError, match="not empty"):
        write_dataset(tmp_path / "d", train=1, test=1, seed=0, image_size=24)
