"""Procedural indoor scenes with exact depth, surface normals and class labels, written in the 2D-3D-S layout.

Each scene is a room (an axis-aligned box: floor, ceiling, four walls) holding boxes (tables, bookcases) and
spheres (clutter), with windows (no depth, invalid normals, as a depth sensor sees glass) and doors on the walls.
A pinhole camera inside the room looks roughly along +z with a random yaw and pitch; every pixel's ray is
intersected with every surface in closed form (vectorised numpy), so depth, normals and labels are exact.
Surfaces get procedural textures (checkers, stripes, grain) and Lambert shading from a point light.

Frames: world x right, y up, z forward. Camera frame as OpenCV: x right, y down, z forward. Depth is z-depth
(metres along the optical axis), normals are in the camera frame and face the camera. Files are written with the
encodings of ``modelring.data.s2d3ds`` (depth uint16 1/512 m, 65535 missing; normals RGB; semantic 24-bit index
equal to the class id, with ``semantic_labels.json`` listing one instance name per class).
"""
from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from ...data.s2d3ds import CLASSES, encode_depth, encode_normals, encode_semantic

TRAIN_AREAS = ("area_1", "area_2", "area_3", "area_4", "area_6")
TEST_AREAS = ("area_5a", "area_5b")
LABEL = {name: i for i, name in enumerate(CLASSES)}
FOV_DEGREES = 70.0


def camera_rotation(yaw: float, pitch: float) -> np.ndarray:
    """Columns: the camera's x (right), y (down), z (forward) axes in world coordinates (y up)."""
    forward = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    right = np.cross(forward, [0.0, -1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(right, forward)
    return np.stack([right, down, forward], axis=1)


def pixel_rays(size: int, rotation: np.ndarray, fov_degrees: float = FOV_DEGREES) -> np.ndarray:
    """World directions (P, 3) of the pixel centres, scaled so that the camera-frame z component is 1
    (a hit at ray parameter t then has z-depth t)."""
    focal = (size / 2) / np.tan(np.radians(fov_degrees) / 2)
    v, u = np.mgrid[0:size, 0:size] + 0.5
    cam = np.stack([(u - size / 2) / focal, (v - size / 2) / focal, np.ones_like(u)], -1).reshape(-1, 3)
    return cam @ rotation.T


def _safe_div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(b) > 1e-12, a / np.where(b == 0, 1, b), np.inf)


def hit_room(origin, dirs, lo, hi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exit point of rays from inside a box: (t, axis, inward normal (P, 3))."""
    bound = np.where(dirs > 0, hi, lo)
    t_axes = _safe_div(bound - origin, dirs)
    axis = np.argmin(t_axes, axis=1)
    t = t_axes[np.arange(len(dirs)), axis]
    normal = np.zeros_like(dirs)
    normal[np.arange(len(dirs)), axis] = -np.sign(dirs[np.arange(len(dirs)), axis])
    return t, axis, normal


def hit_box(origin, dirs, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Entry of rays into an axis-aligned box from outside (slab method): (t, inf where missed; outward normal)."""
    t1, t2 = _safe_div(lo - origin, dirs), _safe_div(hi - origin, dirs)
    # a ray parallel to a slab it starts inside of gets (-inf, inf) on that axis
    inside = (origin >= lo) & (origin <= hi)
    t1 = np.where(np.isinf(t1) & inside, -np.inf, t1)
    near_axes, far = np.minimum(t1, t2), np.maximum(t1, t2).min(axis=1)
    axis = np.argmax(near_axes, axis=1)
    near = near_axes[np.arange(len(dirs)), axis]
    t = np.where((near < far) & (near > 1e-6), near, np.inf)
    normal = np.zeros_like(dirs)
    normal[np.arange(len(dirs)), axis] = -np.sign(dirs[np.arange(len(dirs)), axis])
    return t, normal


def hit_sphere(origin, dirs, centre, radius) -> tuple[np.ndarray, np.ndarray]:
    """First intersection with a sphere seen from outside: (t, inf where missed; outward unit normal)."""
    oc = origin - centre
    a, b, c = (dirs * dirs).sum(1), 2 * (dirs @ oc), oc @ oc - radius ** 2
    disc = b * b - 4 * a * c
    t = np.where(disc >= 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), np.inf)
    t = np.where(t > 1e-6, t, np.inf)
    points = origin + dirs * np.where(np.isfinite(t), t, 0)[:, None]
    return t, (points - centre) / radius


def sample_scene(rng: np.random.Generator) -> dict:
    """Random room, camera, objects, openings and light (plain numbers, all in metres)."""
    room = np.array([rng.uniform(3.5, 7.0), rng.uniform(2.5, 3.2), rng.uniform(4.0, 8.0)])
    camera = np.array([rng.uniform(0.35, 0.65) * room[0], rng.uniform(1.2, 1.7), rng.uniform(0.3, 1.2)])
    boxes = []
    for _ in range(rng.integers(1, 4)):
        kind = "bookcase" if rng.random() < 0.3 else "table"
        size = np.array([rng.uniform(0.4, 1.4), rng.uniform(1.4, 2.0) if kind == "bookcase" else
                         rng.uniform(0.5, 0.9), rng.uniform(0.4, 1.2)])
        corner = np.array([rng.uniform(0, room[0] - size[0]), 0.0, rng.uniform(2.0, room[2] - size[2])])
        boxes.append((kind, corner, corner + size))
    spheres = [(np.array([rng.uniform(0.5, room[0] - 0.5), r, rng.uniform(2.2, room[2] - 0.5)]), r)
               for r in rng.uniform(0.2, 0.5, rng.integers(0, 3))]
    openings = []  # (kind, wall axis, wall side value, (u0, u1), (y0, y1)); u runs along the wall
    for kind in ["window"] * rng.integers(0, 3) + ["door"] * rng.integers(0, 2):
        axis = int(rng.choice([0, 2]))
        side = float(rng.choice([0.0, room[axis]])) if axis == 0 else room[2]
        along = room[2 - axis]
        width = rng.uniform(0.8, min(1.8, along - 0.4))
        u0 = rng.uniform(0.2, along - width - 0.2)
        y = (0.0, 2.1) if kind == "door" else (0.9, rng.uniform(1.9, room[1] - 0.2))
        openings.append((kind, axis, side, (u0, u0 + width), y))
    return {"room": room, "camera": camera, "yaw": rng.uniform(-0.5, 0.5), "pitch": rng.uniform(-0.3, 0.15),
            "boxes": boxes, "spheres": spheres, "openings": openings,
            "light": np.array([rng.uniform(0.2, 0.8) * room[0], room[1] - 0.1, rng.uniform(0.3, 0.8) * room[2]]),
            "colours": rng.uniform(0.25, 0.95, (len(CLASSES), 3)), "texture_scale": rng.uniform(0.25, 0.6)}


def render(scene: dict, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Ray-cast a scene: rgb uint8 (H, W, 3), depth (H, W) metres, depth_valid, normal (H, W, 3) camera frame,
    normal_valid, label (H, W) int."""
    rotation = camera_rotation(scene["yaw"], scene["pitch"])
    origin, dirs = scene["camera"], pixel_rays(size, rotation)
    t, axis, normal = hit_room(origin, dirs, np.zeros(3), scene["room"])
    label = np.where(axis == 1, np.where(dirs[:, 1] > 0, LABEL["ceiling"], LABEL["floor"]), LABEL["wall"])
    points = origin + dirs * t[:, None]
    valid = np.ones(len(t), bool)
    for kind, wall_axis, side, (u0, u1), (y0, y1) in scene["openings"]:
        u = points[:, 2 - wall_axis]
        on = (axis == wall_axis) & np.isclose(points[:, wall_axis], side) & (u >= u0) & (u <= u1) & \
             (points[:, 1] >= y0) & (points[:, 1] <= y1)
        label = np.where(on, LABEL[kind], label)
        if kind == "window":  # glass: a depth sensor sees no surface
            valid &= ~on
    for kind, lo, hi in scene["boxes"]:
        t_box, n_box = hit_box(origin, dirs, lo, hi)
        closer = t_box < t
        t, normal, label = np.where(closer, t_box, t), np.where(closer[:, None], n_box, normal), \
            np.where(closer, LABEL[kind], label)
        valid |= closer
    for centre, radius in scene["spheres"]:
        t_s, n_s = hit_sphere(origin, dirs, centre, radius)
        closer = t_s < t
        t, normal, label = np.where(closer, t_s, t), np.where(closer[:, None], n_s, normal), \
            np.where(closer, LABEL["clutter"], label)
        valid |= closer
    points = origin + dirs * t[:, None]
    rgb = shade(points, normal, label, valid, scene, rng)
    shape = (size, size)
    return {"rgb": rgb.reshape(size, size, 3), "depth": t.reshape(shape), "depth_valid": valid.reshape(shape),
            "normal": (normal @ rotation).reshape(size, size, 3), "normal_valid": valid.reshape(shape),
            "label": label.reshape(shape)}


def shade(points, normals, labels, valid, scene, rng) -> np.ndarray:
    """Textured albedo times Lambert shading from a point light; windows are bright sky. uint8 (P, 3)."""
    albedo = scene["colours"][labels]
    s = scene["texture_scale"]
    checker = (np.floor(points[:, 0] / s) + np.floor(points[:, 2] / s)) % 2  # floor tiles
    stripes = (np.floor((points[:, 0] + points[:, 2]) / (0.5 * s)) % 2)     # wallpaper
    grain = 0.5 + 0.5 * np.sin(points[:, 1] * 25.0 + points[:, 0] * 3.0)   # wood grain on furniture
    pattern = np.select([labels == LABEL["floor"], labels == LABEL["wall"],
                         np.isin(labels, [LABEL["table"], LABEL["bookcase"]])],
                        [0.75 + 0.25 * checker, 0.85 + 0.15 * stripes, 0.8 + 0.2 * grain], 1.0)
    to_light = scene["light"] - points
    distance = np.linalg.norm(to_light, axis=1, keepdims=True)
    lambert = np.clip((normals * to_light / np.maximum(distance, 1e-6)).sum(1), 0, None)
    light = 0.3 + 0.9 * lambert / (1 + 0.05 * distance[:, 0] ** 2)
    colour = albedo * (pattern * light)[:, None]
    colour = np.where(valid[:, None], colour, np.array([0.85, 0.92, 1.0]))  # windows: sky
    colour = colour + rng.normal(0, 0.015, colour.shape)
    return np.clip(np.round(colour * 255), 0, 255).astype(np.uint8)


def write_sample(area_dir: Path, prefix: str, sample: dict[str, np.ndarray]) -> None:
    """The four PNGs of one sample in 2D-3D-S naming."""
    data = area_dir / "data"
    Image.fromarray(sample["rgb"]).save(data / "rgb" / f"{prefix}_domain_rgb.png")
    Image.fromarray(encode_depth(sample["depth"], sample["depth_valid"])).save(
        data / "depth" / f"{prefix}_domain_depth.png")
    Image.fromarray(encode_normals(sample["normal"], sample["normal_valid"])).save(
        data / "normal" / f"{prefix}_domain_normals.png")
    Image.fromarray(encode_semantic(sample["label"])).save(data / "semantic" / f"{prefix}_domain_semantic.png")


def write_dataset(out: Path, *, train: int, test: int, seed: int, image_size: int) -> str:
    """Render ``train`` + ``test`` scenes into ``out`` in the 2D-3D-S layout; returns a printable summary.

    Training scenes go to areas 1-4 and 6, test scenes to areas 5a/5b (the standard fold-1 split). Scene i is
    drawn from a generator seeded with (seed, i), so a data set is reproducible. The folder is written under a
    temporary name and renamed at the end: a crash never leaves half a data set behind.

    Raises:
        ValueError: ``out`` exists and is not empty, or sizes are not positive.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not empty; pass a new folder (data sets are never overwritten)")
    if train < 1 or test < 1 or image_size < 8:
        raise ValueError(f"need train >= 1, test >= 1 and image_size >= 8, got {train}, {test}, {image_size}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    pixels, missing = Counter(), 0
    try:
        for area in TRAIN_AREAS + TEST_AREAS:
            for folder in ("rgb", "depth", "normal", "semantic"):
                (tmp / area / "data" / folder).mkdir(parents=True)
        for i in range(train + test):
            areas = TRAIN_AREAS if i < train else TEST_AREAS
            area = areas[i % len(areas)]
            rng = np.random.default_rng([seed, i])
            sample = render(sample_scene(rng), image_size, rng)
            write_sample(tmp / area, f"camera_{i:06x}_synthroom_{i % 7}_frame_{i}", sample)
            pixels.update(sample["label"].ravel().tolist())
            missing += int((~sample["depth_valid"]).sum())
        names = [f"{name}_0_synthroom_0" for name in CLASSES]  # index i -> an instance of class i
        (tmp / "semantic_labels.json").write_text(json.dumps(names))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = sum(pixels.values())
    freq = ", ".join(f"{CLASSES[k]} {v / total:.1%}" for k, v in sorted(pixels.items()))
    return (f"wrote {train} train scenes (areas {', '.join(TRAIN_AREAS)}) and {test} test scenes (areas "
            f"{', '.join(TEST_AREAS)}) of {image_size}x{image_size} px to {out}\n"
            f"pixels per class: {freq}; missing depth (windows): {missing / total:.1%}")
