"""Procedural pose data: articulated figures with the 16 MPII joints, written in the MPII JSON layout.

Every image shows one figure built from joint angles (torso lean, head tilt, shoulder/elbow/hip/knee
angles drawn at random), facing the camera or turned away, drawn as capsules of varied thickness with solid,
striped or noisy textures, on a background of random shapes and distractor bars; occluders may hide parts of
it. The figure's right-side limbs are drawn darker than its left-side ones, a cue (like a face or clothing in
a photograph) that tells the two sides apart in a frontal and a rear view and survives mirroring.

Written layout (the one ``modelring.data.mpii`` reads)::

    out/annot/train.json, out/annot/valid.json   person records, 1-based coordinates as MPII's
    out/images/train_000000.png, ...              RGB PNGs, image_size × image_size

Joints hidden by an occluder or outside the image get ``joints_vis`` 0 (their coordinates are still the
true ones). ``head_size`` is 0.6 × the diagonal of the axis-aligned box around the drawn head (MPII's rule).
``scale`` is the figure's joint bounding-box side (max of width and height, head included) / 200.
The whole folder is written beside ``out`` and renamed into place at the end: a crash leaves no half data set.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ...data.mpii import NUM_JOINTS

# limb segments as (parent joint, child joint, length in body heights); the tree grows from the pelvis (6)
LIMBS = {"r_thigh": (2, 1, 0.24), "r_shin": (1, 0, 0.23), "l_thigh": (3, 4, 0.24), "l_shin": (4, 5, 0.23),
         "r_upper_arm": (12, 11, 0.17), "r_forearm": (11, 10, 0.16), "l_upper_arm": (13, 14, 0.17),
         "l_forearm": (14, 15, 0.16)}
TORSO, NECK, HEAD = 0.30, 0.06, 0.17  # pelvis-thorax, thorax-upper neck, upper neck-head top (body heights)
SHOULDER_HALF, HIP_HALF = 0.11, 0.07


def _direction(angle: float) -> np.ndarray:
    """Unit vector at ``angle`` radians from straight down (image y points down), counter-clockwise."""
    return np.array([math.sin(angle), math.cos(angle)])


def sample_pose(rng: np.random.Generator, height: float, origin) -> tuple[np.ndarray, bool]:
    """Joint positions (16, 2) of one random figure ``height`` px tall with its pelvis at ``origin``.

    Returns:
        joints and ``frontal`` (True when the figure faces the camera: its right side on the image's left).
    """
    joints = np.zeros((NUM_JOINTS, 2))
    joints[6] = origin
    lean = math.pi + rng.uniform(-0.45, 0.45)  # "up" is pi from down
    up = _direction(lean)
    side = np.array([up[1], -up[0]])  # perpendicular; +side is the image's left for an upright figure
    frontal = bool(rng.random() < 0.5)
    right = side if frontal else -side
    joints[7] = joints[6] + TORSO * height * up
    joints[8] = joints[7] + NECK * height * up
    joints[9] = joints[8] + HEAD * height * _direction(lean + rng.uniform(-0.35, 0.35))
    joints[12], joints[13] = joints[7] + SHOULDER_HALF * height * right, joints[7] - SHOULDER_HALF * height * right
    joints[2], joints[3] = joints[6] + HIP_HALF * height * right, joints[6] - HIP_HALF * height * right
    tilt = lean - math.pi  # limbs follow the torso's lean
    angles = {"r_upper_arm": rng.uniform(-2.6, 2.6), "l_upper_arm": rng.uniform(-2.6, 2.6),
              "r_thigh": rng.uniform(-0.9, 0.9), "l_thigh": rng.uniform(-0.9, 0.9)}
    for limb in ("r_upper_arm", "l_upper_arm", "r_thigh", "l_thigh"):
        parent, child, length = LIMBS[limb]
        joints[child] = joints[parent] + length * height * _direction(tilt + angles[limb])
    bends = {"r_forearm": ("r_upper_arm", rng.uniform(-2.4, 2.4)), "l_forearm": ("l_upper_arm", rng.uniform(-2.4, 2.4)),
             "r_shin": ("r_thigh", rng.uniform(-1.8, 0.2)), "l_shin": ("l_thigh", rng.uniform(-0.2, 1.8))}
    for limb, (upper, bend) in bends.items():
        parent, child, length = LIMBS[limb]
        joints[child] = joints[parent] + length * height * _direction(tilt + angles[upper] + bend)
    return joints, frontal


def _texture(rng: np.random.Generator, size: int, colour: np.ndarray) -> Image.Image:
    """A full-size RGB layer: solid, striped or noisy, around ``colour``."""
    kind = rng.integers(3)
    base = np.broadcast_to(colour, (size, size, 3)).astype(np.float64)
    if kind == 1:
        period, angle = rng.uniform(3, 9), rng.uniform(0, math.pi)
        y, x = np.mgrid[:size, :size]
        stripes = np.sin((x * math.cos(angle) + y * math.sin(angle)) * 2 * math.pi / period) > 0
        base = np.where(stripes[..., None], base, base * 0.55 + 40)
    elif kind == 2:
        base = base + rng.normal(0, 28, (size, size, 1))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _capsule(draw: ImageDraw.ImageDraw, p, q, width: float) -> None:
    """A thick segment with round ends (filled with 255 on a mask)."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    normal = np.array([q[1] - p[1], p[0] - q[0]])
    normal = normal / max(np.linalg.norm(normal), 1e-6) * width / 2
    draw.polygon([tuple(p + normal), tuple(q + normal), tuple(q - normal), tuple(p - normal)], fill=255)
    for c in (p, q):
        draw.ellipse([c[0] - width / 2, c[1] - width / 2, c[0] + width / 2, c[1] + width / 2], fill=255)


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """Random gradient with clutter: rectangles, ellipses and distractor bars."""
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    image = Image.fromarray(np.broadcast_to(top * (1 - ramp) + bottom * ramp, (size, size, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(3, 9)):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.4, 2) * size
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
        elif kind == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            draw.line([x0, y0, x0 + rng.uniform(-1, 1) * w * 2, y0 + rng.uniform(-1, 1) * h * 2], fill=colour,
                      width=int(rng.integers(2, max(3, size // 16))))
    return image


def _paint(image: Image.Image, rng: np.random.Generator, colour: np.ndarray, shape) -> None:
    """Paste a textured layer through the mask that ``shape(draw)`` fills."""
    mask = Image.new("L", image.size, 0)
    shape(ImageDraw.Draw(mask))
    image.paste(_texture(rng, image.size[0], colour), (0, 0), mask)


def render_figure(image: Image.Image, rng: np.random.Generator, joints: np.ndarray, frontal: bool,
                  height: float) -> np.ndarray:
    """Draw the figure on ``image``; returns the head's box [x0, y0, x1, y1]."""
    shirt, pants, skin = (rng.uniform(30, 255, 3) for _ in range(3))
    thick = height * rng.uniform(0.045, 0.075)

    def shade(limb: str, colour):  # right side darker: the left/right cue
        return colour * 0.6 if limb.startswith("r_") else colour

    colours = {"upper_arm": shirt, "forearm": skin, "thigh": pants, "shin": pants}
    near, far = ("r_", "l_") if frontal else ("l_", "r_")  # the arm nearer the camera is drawn last
    limbs_back = [name for name in LIMBS if name.startswith(far)]
    limbs_front = [name for name in LIMBS if name.startswith(near)]
    for name in limbs_back:
        a, b, _ = LIMBS[name]
        _paint(image, rng, shade(name, colours[name[2:]]), lambda d, a=a, b=b: _capsule(d, joints[a], joints[b], thick))
    torso = [tuple(joints[j]) for j in (12, 13, 3, 2)]
    _paint(image, rng, shirt, lambda d: d.polygon(torso, fill=255))
    _paint(image, rng, skin, lambda d: _capsule(d, joints[7], joints[8], thick * 0.8))
    centre, half = (joints[8] + joints[9]) / 2, np.linalg.norm(joints[9] - joints[8]) / 2
    radius = np.array([half * 0.78, half * 0.78])
    head_box = np.concatenate([centre - radius, centre + radius])
    _paint(image, rng, skin, lambda d: d.ellipse(list(head_box), fill=255))
    if frontal:  # a face: two eyes below the head's centre line
        draw, eye = ImageDraw.Draw(image), max(1.0, half * 0.15)
        for dx in (-0.3, 0.3):
            e = centre + np.array([dx * half, 0.1 * half])
            draw.ellipse([e[0] - eye, e[1] - eye, e[0] + eye, e[1] + eye], fill=(20, 20, 20))
    for name in limbs_front:
        a, b, _ = LIMBS[name]
        _paint(image, rng, shade(name, colours[name[2:]]), lambda d, a=a, b=b: _capsule(d, joints[a], joints[b], thick))
    return head_box


def _occlude(image: Image.Image, rng: np.random.Generator, joints: np.ndarray, height: float) -> np.ndarray:
    """Maybe draw one occluder over a random joint; returns the (16,) mask of joints it hides."""
    hidden = np.zeros(NUM_JOINTS, bool)
    if rng.random() >= 0.4:
        return hidden
    target = joints[rng.integers(NUM_JOINTS)]
    w, h = rng.uniform(0.12, 0.3, 2) * height
    box = [target[0] - w * rng.uniform(0.2, 0.8), target[1] - h * rng.uniform(0.2, 0.8)]
    box += [box[0] + w, box[1] + h]
    _paint(image, rng, rng.uniform(0, 255, 3), lambda d: d.rectangle(box, fill=255))
    return (joints[:, 0] >= box[0]) & (joints[:, 0] <= box[2]) & (joints[:, 1] >= box[1]) & (joints[:, 1] <= box[3])


def render_sample(rng: np.random.Generator, image_size: int) -> tuple[Image.Image, dict]:
    """One image and its person record (0-based coordinates)."""
    height = image_size * rng.uniform(0.5, 0.8)
    joints, frontal = sample_pose(rng, height, (0.0, 0.0))
    low, high = joints.min(0), joints.max(0)
    margin = 0.08 * image_size  # allow slight truncation: some joints may fall outside
    shift = rng.uniform(-low - margin, image_size - high + margin)
    joints = joints + shift
    image = _background(rng, image_size)
    head_box = render_figure(image, rng, joints, frontal, height)
    hidden = _occlude(image, rng, joints, height)
    inside = ((joints >= 0) & (joints <= image_size - 1)).all(1)
    low, high = np.minimum(joints.min(0), head_box[:2]), np.maximum(joints.max(0), head_box[2:])
    record = {"center": ((low + high) / 2).tolist(), "scale": float((high - low).max() / 200),
              "joints": joints.tolist(), "joints_vis": (inside & ~hidden).astype(int).tolist(),
              "head_size": float(0.6 * np.linalg.norm(head_box[2:] - head_box[:2]))}
    return image, record


def _one_based(record: dict, name: str) -> dict:
    return {"image": name, "center": [v + 1 for v in record["center"]], "scale": record["scale"],
            "joints": [[x + 1, y + 1] for x, y in record["joints"]], "joints_vis": record["joints_vis"],
            "head_size": record["head_size"]}


def write_dataset(out: Path, *, train: int, test: int, seed: int, image_size: int) -> str:
    """Render ``train`` + ``test`` images into ``out`` in the MPII JSON layout (``annot/train.json``,
    ``annot/valid.json``, ``images/``); deterministic for a seed.

    Returns:
        A printable summary.

    Raises:
        ValueError: ``out`` exists and is not empty, or a count/size is out of range.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not empty; pass a new folder (make-data never overwrites)")
    if train < 1 or test < 1 or image_size < 32:
        raise ValueError(f"need --train >= 1, --test >= 1 and --image-size >= 32, got {train}, {test}, {image_size}")
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "annot").mkdir()
        (tmp / "images").mkdir()
        visible = 0
        for split_id, (split, count) in enumerate((("train", train), ("valid", test))):
            records = []
            for i in range(count):
                image, record = render_sample(np.random.default_rng([seed, split_id, i]), image_size)
                name = f"{split}_{i:06d}.png"
                image.save(tmp / "images" / name)
                records.append(_one_based(record, name))
                visible += sum(record["joints_vis"])
            (tmp / "annot" / f"{split}.json").write_text(json.dumps(records))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    total = (train + test) * NUM_JOINTS
    return (f"wrote {train} train + {test} valid images ({image_size}x{image_size}) and MPII-layout annotations "
            f"to {out} in {time.perf_counter() - started:.1f} s; {visible / total:.1%} of joints visible")
