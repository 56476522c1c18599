"""Reader for the Stanford 2D-3D-Semantics layout (Armeni et al. 2017): ``root/area_*/data/{rgb,depth,normal,
semantic}/<prefix>_domain_<modality>.png``.

File naming, as in the real data: ``camera_<id>_<room>_frame_<n>_domain_rgb.png``, ``..._domain_depth.png``,
``..._domain_normals.png``, ``..._domain_semantic.png``; the files of one sample share the prefix before
``_domain_``.

Encodings (what :func:`decode_depth`, :func:`decode_normals` and :func:`decode_semantic` read):

- depth: 16-bit PNG, depth in units of 1/512 m (so 65,534 is 128 m), 65,535 = missing. Read as z-depth in
  metres (distance along the optical axis) with a validity mask.
- normals: 8-bit RGB, n = rgb / 255 * 2 - 1, camera frame (x right, y down, z forward). A pixel is valid when
  the decoded vector has length in [0.9, 1.1]; that rejects both invalid codes in use, (0, 0, 0) (length 1.73)
  and (127/128, 127/128, 127/128) (length ~0). Valid vectors are renormalised to unit length.
- semantic: 8-bit RGB holding a 24-bit index i = R * 65536 + G * 256 + B. With a ``semantic_labels.json``
  (a list of instance names ``<class>_<instance>_<room>...``, as in the 2D-3D-S assets) the index selects an
  instance and its class name before the first ``_`` selects the class in ``CLASSES``; without one the index is
  the class id itself. Indices outside the list, unknown class names and 0x0D0D0D (the real data's "no label")
  become ``IGNORE_INDEX``.

Resizing keeps the encodings honest: RGB is resized bilinearly (antialiased); depth, normals, labels and masks
nearest-neighbour, so no depth is averaged with a missing pixel and no normal becomes a non-unit blend.
Horizontal flips negate the normals' x component.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ..keys import derive_key
from .datasets import DATASETS

CLASSES = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa", "bookcase",
           "board", "clutter")
MODALITIES = {"rgb": "rgb", "depth": "depth", "normal": "normals", "semantic": "semantic"}  # folder -> suffix
DEPTH_UNIT = 1.0 / 512.0
DEPTH_MISSING = 65535
NO_LABEL = 0x0D0D0D
IGNORE_INDEX = 255


def decode_depth(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint16 depth (1/512 m, 65535 missing) -> (float32 metres, bool valid); missing pixels hold 0."""
    if raw.ndim != 2 or raw.dtype not in (np.uint16, np.int32):  # Pillow reads 16-bit PNGs as I;16 or I
        raise ValueError(f"depth must be a 16-bit grayscale PNG (1/512 m), got an array of shape {raw.shape} "
                         f"and dtype {raw.dtype}; convert the file, an 8-bit depth map cannot hold the range")
    valid = raw != DEPTH_MISSING
    return np.where(valid, raw.astype(np.float32) * DEPTH_UNIT, 0.0).astype(np.float32), valid


def encode_depth(metres: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """float metres + mask -> uint16 in 1/512 m, 65535 where invalid (values clipped to [0, 65534])."""
    raw = np.clip(np.round(metres / DEPTH_UNIT), 0, DEPTH_MISSING - 1).astype(np.uint16)
    return np.where(valid, raw, DEPTH_MISSING).astype(np.uint16)


def decode_normals(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (H, W, 3) -> (float32 (H, W, 3) unit vectors, bool valid); invalid pixels hold 0."""
    n = rgb[..., :3].astype(np.float32) / 255.0 * 2.0 - 1.0
    length = np.linalg.norm(n, axis=-1)
    valid = (length >= 0.9) & (length <= 1.1)
    return np.where(valid[..., None], n / np.maximum(length, 1e-6)[..., None], 0.0).astype(np.float32), valid


def encode_normals(normals: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Unit vectors + mask -> uint8 RGB (invalid pixels 128, 128, 128)."""
    rgb = np.clip(np.round((normals + 1.0) / 2.0 * 255.0), 0, 255).astype(np.uint8)
    return np.where(valid[..., None], rgb, np.uint8(128)).astype(np.uint8)


def decode_semantic(rgb: np.ndarray, index_to_class: np.ndarray | None) -> np.ndarray:
    """uint8 RGB 24-bit index -> int64 class ids (``IGNORE_INDEX`` where unlabelled); see the module docstring."""
    index = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    if index_to_class is None:
        return np.where((index < len(CLASSES)) & (index != NO_LABEL), index, IGNORE_INDEX)
    inside = index < len(index_to_class)
    return np.where(inside, index_to_class[np.minimum(index, len(index_to_class) - 1)], IGNORE_INDEX)


def encode_semantic(index: np.ndarray) -> np.ndarray:
    """int 24-bit indices -> uint8 RGB."""
    index = index.astype(np.int64)
    return np.stack([(index >> 16) & 255, (index >> 8) & 255, index & 255], axis=-1).astype(np.uint8)


def load_label_map(path: Path) -> np.ndarray:
    """``semantic_labels.json`` (instance names) -> int64 array index -> class id (``IGNORE_INDEX`` if unknown)."""
    names = json.loads(Path(path).read_text())
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path} must be a JSON list of instance names like 'wall_3_office_1'")
    ids = {c: i for i, c in enumerate(CLASSES)}
    return np.array([ids.get(n.split("_")[0], IGNORE_INDEX) for n in names], dtype=np.int64)


def find_samples(root: Path, areas: list[str]) -> list[dict[str, Path]]:
    """Sample files per prefix, matched across the four modality folders of each area (sorted)."""
    samples = []
    for area in areas:
        folder = root / area / "data"
        by_modality = {m: _index_folder(folder / m, suffix) for m, suffix in MODALITIES.items()}
        prefixes = set().union(*by_modality.values())
        for prefix in sorted(prefixes):
            missing = [m for m in MODALITIES if prefix not in by_modality[m]]
            if missing:
                raise FileNotFoundError(f"sample {prefix!r} in {folder} has no {', '.join(missing)} file "
                                        f"(expected {folder}/{missing[0]}/{prefix}_domain_"
                                        f"{MODALITIES[missing[0]]}.png); add it or remove the sample's other files")
            samples.append({m: by_modality[m][prefix] for m in MODALITIES})
    return samples


def _index_folder(folder: Path, suffix: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"missing folder {folder}; a 2D-3D-S area holds data/rgb, data/depth, "
                                "data/normal and data/semantic")
    tail = f"_domain_{suffix}.png"
    return {p.name[:-len(tail)]: p for p in folder.iterdir() if p.name.endswith(tail)}


def list_areas(root: Path) -> list[str]:
    """Area folder names under ``root`` (``area_1``, ``area_5a``, ...), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no data set folder at {root}; set data.root, or write a generated one with "
                                f"`modelring make-data multitask {root}`")
    areas = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("area_"))
    if not areas:
        raise FileNotFoundError(f"{root} holds no area_* folders; is it a 2D-3D-S root (root/area_1/data/rgb/...)?")
    return areas


@dataclass
class Sample:
    """One decoded sample as float tensors: image (3,H,W) normalised, depth (1,H,W) metres, normal (3,H,W),
    semantic (H,W) int64, depth_valid / normal_valid (H,W) bool."""

    image: torch.Tensor
    depth: torch.Tensor
    normal: torch.Tensor
    semantic: torch.Tensor
    depth_valid: torch.Tensor
    normal_valid: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.__dict__)


def read_sample(files: dict[str, Path], index_to_class: np.ndarray | None) -> Sample:
    """Decode one sample's four PNGs (sizes must agree)."""
    arrays = {m: np.asarray(Image.open(p)) for m, p in files.items()}
    for m in ("rgb", "normal", "semantic"):
        if arrays[m].ndim != 3 or arrays[m].shape[2] < 3:
            raise ValueError(f"{files[m]} must be an RGB image (8 bits per channel), got shape {arrays[m].shape}")
    sizes = {m: a.shape[:2] for m, a in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"the files of sample {files['rgb'].name} differ in size {sizes}; every modality of a "
                         "sample must have the same height and width")
    depth, depth_valid = decode_depth(arrays["depth"])
    normal, normal_valid = decode_normals(arrays["normal"])
    semantic = decode_semantic(arrays["semantic"], index_to_class)
    image = torch.from_numpy(np.array(arrays["rgb"][..., :3])).permute(2, 0, 1).float() / 255.0
    return Sample(image=image, depth=torch.from_numpy(depth)[None], normal=torch.from_numpy(normal).permute(2, 0, 1),
                  semantic=torch.from_numpy(semantic), depth_valid=torch.from_numpy(depth_valid),
                  normal_valid=torch.from_numpy(normal_valid))


def resize_sample(s: Sample, size: int) -> Sample:
    """Shorter side to ``size`` then a centre ``size`` x ``size`` crop; labels, depth, normals and masks nearest."""
    h, w = s.image.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    if new != (h, w):
        s = Sample(image=F.interpolate(s.image[None], size=new, mode="bilinear", antialias=True,
                                       align_corners=False)[0],
                   **{k: _nearest(v, new) for k, v in s.as_dict().items() if k != "image"})
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return Sample(**{k: v[..., top:top + size, left:left + size] for k, v in s.as_dict().items()})


def _nearest(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    lead = t.dim() == 2
    x = t[None, None] if lead else t[None]
    out = F.interpolate(x.float(), size=size, mode="nearest")[0].to(t.dtype)
    return out[0] if lead else out


def hflip_sample(s: Sample) -> Sample:
    """Mirror left-right; the normals' x component changes sign."""
    flipped = {k: v.flip(-1) for k, v in s.as_dict().items()}
    flipped["normal"] = flipped["normal"] * torch.tensor([-1.0, 1.0, 1.0])[:, None, None]
    return Sample(**flipped)


class S2D3DS(Dataset):
    """Samples of some areas of a 2D-3D-S root, resized/cropped to ``size``, image normalised.

    Args:
        root: data set folder holding ``area_*``.
        areas: area folder names to read.
        size: output side in pixels.
        augment: random horizontal flips (keyed by (seed, epoch, index), see ``modelring.loop``).
        seed: augmentation seed.
        labels: ``semantic_labels.json`` path; default ``root/semantic_labels.json`` when it exists.

    Items are dicts of tensors: image, depth, normal, semantic, depth_valid, normal_valid.
    """

    def __init__(self, root, areas: list[str], *, size: int, augment: bool = False, seed: int = 0, labels=None):
        self.root, self.size, self.augment, self.seed, self.epoch = Path(root), size, augment, seed, 0
        self.areas = list(areas)
        known = list_areas(self.root)
        unknown = [a for a in areas if a not in known]
        if unknown:
            raise ValueError(f"areas {unknown} are not in {self.root} (found {known})")
        labels = Path(labels) if labels else self.root / "semantic_labels.json"
        self.index_to_class = load_label_map(labels) if labels.is_file() else None
        self.samples = find_samples(self.root, areas)
        if not self.samples:
            raise FileNotFoundError(f"no samples in areas {areas} of {self.root}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = resize_sample(read_sample(self.samples[index], self.index_to_class), self.size)
        if self.augment:
            g = torch.Generator().manual_seed(derive_key(self.seed, self.epoch, index))
            if float(torch.rand((), generator=g)) < 0.5:
                s = hflip_sample(s)
        item = s.as_dict()
        info = DATASETS["s2d3ds"]
        item["image"] = (item["image"] - torch.tensor(info.mean)[:, None, None]) / torch.tensor(info.std)[:, None, None]
        return item


def s2d3ds_splits(root, *, test_areas: list[str], size: int, augment: bool, seed: int = 0,
                  held_areas: list[str] = ()) -> tuple[S2D3DS, S2D3DS]:
    """(train, test): the test areas, and for training every other area of ``root`` but the ``held_areas`` (held
    out for validation)."""
    areas = list_areas(Path(root))
    missing = [a for a in held_areas if a not in areas]
    if missing:
        raise ValueError(f"validation areas {missing} are not in {root} (it has {areas}): set multitask.val_areas "
                         "to areas it has")
    train_areas = [a for a in areas if a not in test_areas and a not in held_areas]
    if not train_areas:
        raise ValueError(f"every area of {root} ({areas}) is a test or validation area; set multitask.test_areas "
                         "or multitask.val_areas to fewer")
    return (S2D3DS(root, train_areas, size=size, augment=augment, seed=seed),
            S2D3DS(root, list(test_areas), size=size, augment=False, seed=seed))
