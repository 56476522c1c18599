"""MPII Human Pose in the common JSON layout (HRNet / SimpleBaseline), with crops, flips and heatmap targets.

On disk::

    root/annot/train.json    root/annot/valid.json    (a list of per-person dicts, see ``read_annotations``)
    root/images/<image>       (jpg or png, any size)

Each person record holds ``image`` (file name under ``images/``), ``center`` [x, y], ``scale`` (person box
height / 200 px), ``joints`` (16 × [x, y]) and ``joints_vis`` (16 flags). Coordinates are 1-based (MATLAB),
as in the converted MPII files; the reader subtracts 1 once, and everything after it is 0-based with pixel
i's centre at coordinate i. An optional ``head_size`` (px) is the PCKh normaliser; without it the reader
derives ``0.75 * |head top - upper neck|`` (0.6 × the diagonal of a head box as tall as that segment and
0.75 of it wide, MPII's rule ``0.6 * |headbox diagonal|`` applied to an assumed box). ``modelring make-data
pose`` writes ``head_size`` from the head box it drew.

Joints (MPII order): 0 r_ankle, 1 r_knee, 2 r_hip, 3 l_hip, 4 l_knee, 5 l_ankle, 6 pelvis, 7 thorax,
8 upper_neck, 9 head_top, 10 r_wrist, 11 r_elbow, 12 r_shoulder, 13 l_shoulder, 14 l_elbow, 15 l_wrist.

A sample is the square crop of side ``scale * 200 * box_margin`` around ``center`` (HRNet's 1.25 margin),
resized to ``input_size`` by one affine warp (Pillow, bilinear), optionally rotated, rescaled and flipped;
its targets are one Gaussian heatmap per joint at ``input_size / heatmap_size`` stride plus a weight per
joint (0 for unannotated joints and joints outside the heatmap). Augmentation draws from a generator keyed by
(seed, epoch, index), so workers and resumed runs see exactly the same samples.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..keys import derive_key
from .datasets import DATASETS

JOINT_NAMES = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax", "upper_neck",
               "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist")
NUM_JOINTS = len(JOINT_NAMES)
FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
UPPER_NECK, HEAD_TOP = 8, 9
_LAYOUT = ("expected a JSON list of person dicts with image, center [x, y], scale, joints (16 x [x, y]) and "
           "joints_vis (16 flags), as in the HRNet/SimpleBaseline MPII files")


def flip_permutation() -> list[int]:
    """Index map j -> its mirror joint (left <-> right) for the 16 MPII joints."""
    perm = list(range(NUM_JOINTS))
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


def _fail(path: Path, index: int, what: str) -> ValueError:
    return ValueError(f"{path}: entry {index}: {what}; {_LAYOUT}. Fix or drop that entry")


def _numbers(value, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == shape and np.isfinite(array).all() else None


def _person(path: Path, index: int, entry) -> dict:
    """One validated record, 0-based coordinates."""
    if not isinstance(entry, dict):
        raise _fail(path, index, f"is a {type(entry).__name__}, not a dict")
    missing = [k for k in ("image", "center", "scale", "joints", "joints_vis") if k not in entry]
    if missing:
        raise _fail(path, index, f"missing {', '.join(missing)}")
    if not isinstance(entry["image"], str) or not entry["image"]:
        raise _fail(path, index, f"image must be a file name, got {entry['image']!r}")
    name = PurePosixPath(entry["image"].replace("\\", "/"))
    if name.is_absolute() or ".." in name.parts or entry["image"].startswith(("/", "\\")) or ":" in entry["image"]:
        raise _fail(path, index, f"image {entry['image']!r} must be a path inside root/images (no absolute path, "
                                 "no '..')")
    center, joints = _numbers(entry["center"], (2,)), _numbers(entry["joints"], (NUM_JOINTS, 2))
    vis, scale = _numbers(entry["joints_vis"], (NUM_JOINTS,)), _numbers(entry["scale"], ())
    for name, value in (("center", center), ("joints", joints), ("joints_vis", vis), ("scale", scale)):
        if value is None:
            shape = {"center": "[x, y]", "joints": "16 x [x, y]", "joints_vis": "16 flags", "scale": "a number"}
            raise _fail(path, index, f"{name} must be {shape[name]} of finite numbers, got {entry[name]!r}"[:300])
    if scale <= 0:
        raise _fail(path, index, f"scale must be > 0, got {float(scale)}")
    head = entry.get("head_size")
    if head is not None and (_numbers(head, ()) is None or head <= 0):
        raise _fail(path, index, f"head_size must be a positive number, got {head!r}")
    joints = joints - 1.0
    if head is None:  # 0.75 x |head top - upper neck|, only when both are annotated; else PCKh skips this person
        known = vis[HEAD_TOP] > 0 and vis[UPPER_NECK] > 0
        head = 0.75 * float(np.linalg.norm(joints[HEAD_TOP] - joints[UPPER_NECK])) if known else float("nan")
        head = head if head > 0 else float("nan")
    return {"image": entry["image"], "center": center - 1.0, "scale": float(scale), "joints": joints,
            "joints_vis": (vis > 0).astype(np.float64), "head_size": float(head)}


def read_annotations(path: str | Path) -> list[dict]:
    """Validated person records of one MPII JSON file (coordinates converted to 0-based).

    Args:
        path: e.g. ``root/annot/train.json``.

    Returns:
        One dict per person: image, center (2,), scale, joints (16, 2), joints_vis (16,) in {0, 1},
        head_size (px).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, not a list, or an entry that does not follow the layout (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no MPII annotation file at {path}; expected root/annot/train.json and "
                                "root/annot/valid.json (convert MPII's .mat as HRNet does, or run "
                                "`modelring make-data pose ROOT` for generated data)")
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); {_LAYOUT}") from err
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path} holds {type(entries).__name__ if entries else 'nothing'}; {_LAYOUT}")
    return [_person(path, i, entry) for i, entry in enumerate(entries)]


def crop_matrix(center, scale: float, *, output_size: int, rotation: float = 0.0, flip: bool = False,
                box_margin: float = 1.25) -> np.ndarray:
    """2×3 affine map from image to crop coordinates (pixel centres at integers).

    The square of side ``scale * 200 * box_margin`` centred at ``center``, rotated by ``rotation`` degrees
    (counter-clockwise on screen), lands on ``output_size`` × ``output_size``; ``flip`` mirrors the crop.
    """
    side = scale * 200.0 * box_margin
    angle = math.radians(rotation)
    cos, sin, zoom = math.cos(angle), math.sin(angle), output_size / side
    half = (output_size - 1) / 2.0
    # y points down, so a counter-clockwise turn on screen is [[cos, sin], [-sin, cos]]
    linear = zoom * np.array([[cos, sin], [-sin, cos]])
    offset = np.array([half, half]) - linear @ np.asarray(center, dtype=np.float64)
    matrix = np.concatenate([linear, offset[:, None]], axis=1)
    if flip:
        matrix = np.array([[-1.0, 0.0, output_size - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([matrix, [0, 0, 1]])
    return matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2×3 affine map."""
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine map to (..., 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def warp_image(image: Image.Image, matrix: np.ndarray, size: int) -> Image.Image:
    """The ``size`` × ``size`` crop that ``matrix`` (image -> crop) describes, bilinear, black outside."""
    inverse = invert_affine(matrix)
    # Pillow samples output pixel (x, y) at inverse @ (x + .5, y + .5) in a frame where pixel i spans [i, i+1)
    shift = inverse[:, :2] @ np.array([-0.5, -0.5]) + inverse[:, 2] + 0.5
    data = (*inverse[0, :2], shift[0], *inverse[1, :2], shift[1])
    return image.transform((size, size), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)


def to_heatmap_coords(points: np.ndarray, stride: float) -> np.ndarray:
    """Crop coordinates -> heatmap coordinates (pixel-centre convention, so flips map exactly)."""
    return (np.asarray(points, dtype=np.float64) + 0.5) / stride - 0.5


def from_heatmap_coords(points, stride: float):
    """Heatmap coordinates -> crop coordinates (inverse of ``to_heatmap_coords``)."""
    return (points + 0.5) * stride - 0.5


def gaussian_heatmaps(joints: np.ndarray, visible: np.ndarray, *, size: int, sigma: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """One unnormalised Gaussian (peak 1 at the joint) per joint on a ``size`` × ``size`` grid.

    Args:
        joints: (J, 2) heatmap coordinates (x, y), sub-pixel.
        visible: (J,) 0/1 flags.
        size: heatmap side.
        sigma: Gaussian std in heatmap pixels.

    Returns:
        heatmaps (J, size, size) float32 and weights (J,) float32: 0 for invisible joints and joints whose
        centre lies outside the heatmap (their heatmap is all zeros).
    """
    grid = np.arange(size, dtype=np.float64)
    inside = (joints >= -0.5).all(1) & (joints < size - 0.5).all(1)
    weights = ((np.asarray(visible) > 0) & inside).astype(np.float32)
    gx = np.exp(-((grid[None, :] - joints[:, :1]) ** 2) / (2 * sigma ** 2))
    gy = np.exp(-((grid[None, :] - joints[:, 1:]) ** 2) / (2 * sigma ** 2))
    heatmaps = (gy[:, :, None] * gx[:, None, :]).astype(np.float32) * weights[:, None, None]
    return heatmaps, weights


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB Pillow image -> normalised float CHW tensor (ImageNet mean/std)."""
    info = DATASETS["mpii"]
    array = (np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 - np.float32(info.mean)) / np.float32(info.std)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


class MPIIDataset(Dataset):
    """Person crops with heatmap targets from ``root/annot/<split>.json`` and ``root/images``.

    Args:
        root: data set folder.
        split: ``train`` or ``valid`` (any ``annot/<split>.json``).
        input_size: crop side in pixels.
        heatmap_size: heatmap side; ``input_size`` must be a multiple of it.
        sigma: Gaussian std in heatmap pixels.
        augment: random scale, rotation and flip (training).
        rotation: rotation std in degrees (clipped to ±2 std, applied with probability 0.6, as HRNet).
        scale_factor: relative scale std (clipped to ±1 std).
        flip: random horizontal flip (with left/right joint swap) when augmenting.
        box_margin: crop side = scale * 200 * box_margin.
        seed: augmentation seed; set ``dataset.epoch`` before each epoch.

    Item: (image (3, S, S), heatmaps (16, H, H), weights (16,), meta) with meta holding ``index``,
    ``matrix`` (2×3 image -> crop), ``joints`` (16, 2, image px), ``joints_vis`` and ``head_size``.
    """

    def __init__(self, root: str | Path, split: str, *, input_size: int = 64, heatmap_size: int = 16,
                 sigma: float = 1.0, augment: bool = False, rotation: float = 30.0, scale_factor: float = 0.25,
                 flip: bool = True, box_margin: float = 1.25, seed: int = 0):
        if input_size % heatmap_size:
            raise ValueError(f"input_size {input_size} must be a multiple of heatmap_size {heatmap_size}")
        self.root = Path(root)
        records = read_annotations(self.root / "annot" / f"{split}.json")
        self.records = [r for r in records if self._inside_image(r)]
        self.skipped = len(records) - len(self.records)
        if self.skipped:
            warnings.warn(f"{self.root / 'annot' / f'{split}.json'}: skipped {self.skipped} of {len(records)} persons "
                          "whose centre, or every annotated joint, lies outside their image", RuntimeWarning)
        self.input_size, self.heatmap_size, self.sigma = input_size, heatmap_size, sigma
        self.augment, self.rotation, self.scale_factor, self.flip = augment, rotation, scale_factor, flip
        self.box_margin, self.seed, self.epoch = box_margin, seed, 0

    def __len__(self) -> int:
        return len(self.records)

    def _inside_image(self, record: dict) -> bool:
        """Whether the person's centre and at least one annotated joint (if any) lie inside its image."""
        width, height = self.image_size(record["image"])
        inside = lambda p: (0 <= p[..., 0]) & (p[..., 0] < width) & (0 <= p[..., 1]) & (p[..., 1] < height)  # noqa
        annotated = record["joints_vis"] > 0
        return bool(inside(record["center"])) and (not annotated.any() or bool(inside(record["joints"])[annotated].any()))

    def image_size(self, name: str) -> tuple[int, int]:
        """(width, height) of ``root/images/<name>`` from its header (cached: several persons share an image)."""
        sizes = self.__dict__.setdefault("_sizes", {})
        if name not in sizes:
            path = self._image_path(name)
            try:
                with Image.open(path) as image:
                    sizes[name] = image.size
            except (OSError, SyntaxError) as err:
                raise ValueError(f"image {path} cannot be read: {err}") from None
        return sizes[name]

    def _image_path(self, name: str) -> Path:
        path = self.root / "images" / name
        if not path.is_file():
            raise FileNotFoundError(f"image {path} named in {self.root / 'annot'} does not exist; put the MPII "
                                    "images under root/images/")
        return path

    def load_image(self, name: str) -> Image.Image:
        """The RGB image ``root/images/<name>``."""
        with Image.open(self._image_path(name)) as image:
            return image.convert("RGB")

    def sample_augmentation(self, index: int) -> tuple[float, float, bool]:
        """(scale multiplier, rotation degrees, flip) for sample ``index`` of the current epoch."""
        if not self.augment:
            return 1.0, 0.0, False
        g = torch.Generator().manual_seed(derive_key(self.seed, self.epoch, index))
        normal = torch.randn(2, generator=g, dtype=torch.float64).tolist()
        coins = torch.rand(2, generator=g, dtype=torch.float64).tolist()
        zoom = float(np.clip(1 + normal[0] * self.scale_factor, 1 - self.scale_factor, 1 + self.scale_factor))
        angle = float(np.clip(normal[1] * self.rotation, -2 * self.rotation, 2 * self.rotation))
        return zoom, angle if coins[0] < 0.6 else 0.0, self.flip and coins[1] < 0.5

    def __getitem__(self, index: int):
        record = self.records[index]
        zoom, angle, flip = self.sample_augmentation(index)
        matrix = crop_matrix(record["center"], record["scale"] * zoom, output_size=self.input_size,
                             rotation=angle, flip=flip, box_margin=self.box_margin)
        image = warp_image(self.load_image(record["image"]), matrix, self.input_size)
        joints, vis = transform_points(record["joints"], matrix), record["joints_vis"]
        if flip:
            perm = flip_permutation()
            joints, vis = joints[perm], vis[perm]
        stride = self.input_size / self.heatmap_size
        heatmaps, weights = gaussian_heatmaps(to_heatmap_coords(joints, stride), vis, size=self.heatmap_size,
                                              sigma=self.sigma)
        meta = {"index": index, "matrix": torch.from_numpy(matrix), "joints": torch.from_numpy(record["joints"]),
                "joints_vis": torch.from_numpy(record["joints_vis"]), "head_size": record["head_size"]}
        return image_to_tensor(image), torch.from_numpy(heatmaps), torch.from_numpy(weights), meta
