"""ImageFolder layout (ImageNet style): one sub-folder per class, images anywhere below it.

On disk::

    root/<class_a>/xxx.jpg
    root/<class_a>/nested/yyy.png
    root/<class_b>/zzz.jpeg

Classes are the sub-folder names sorted alphabetically (label = index in that order); files are listed in
sorted path order. Hidden entries (names starting with ".", such as ``.ipynb_checkpoints``) are ignored; symlinked
folders are followed, and a folder reached twice (a symlink loop) is an error. Images are decoded lazily with
Pillow: 8-bit images are converted to RGB, 16-bit ones scaled from their 0..65535 range to 0..255 (rounded), and
32-bit integer or floating-point images refused (they have no defined display range).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif"})

_HOW_TO_GET = ("arrange the images as root/<class>/<image>.jpg, one folder per class (for ImageNet: extract "
               "ILSVRC2012_img_train.tar and its per-class tars into train/, and sort the flat val images into "
               "class folders, e.g. with the widely used valprep.sh)")


class ImageFolderDataset(Dataset):
    """Lazily decoded image files with integer labels.

    Attributes:
        samples: (path, label) pairs in sorted order.
        classes: class names; labels index into it.
    """

    def __init__(self, samples: list[tuple[Path, int]], *, classes: list[str]):
        self.samples = samples
        self.classes = classes

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return decode_image(path), label


def decode_image(path: str | os.PathLike) -> torch.Tensor:
    """Decode an image file to an RGB uint8 tensor (3, H, W).

    Args:
        path: image file in any format Pillow reads.

    Returns:
        uint8 tensor (3, H, W).

    Raises:
        ValueError: the file cannot be decoded (corrupt or not an image).
    """
    # Imported here so the IDX and CIFAR readers work in an environment without Pillow.
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode in ("I", "F") or image.mode.startswith("I;32"):
                raise ValueError(f"{path} is a {'floating-point' if image.mode == 'F' else '32-bit integer'} image "
                                 f"(mode {image.mode}); modelring reads 8- and 16-bit images only: convert it to 8 or "
                                 "16 bit with the scaling you want")
            if image.mode.startswith("I;16"):  # 16-bit gray: scale the full range, do not clip at 255
                wide = np.asarray(image).astype(np.uint32)
                gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
                array = np.repeat(gray[..., None], 3, axis=2)
            else:
                array = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        # Pillow raises SyntaxError on some bad headers, DecompressionBombError on images of absurd pixel counts
        raise ValueError(f"{path} cannot be decoded as an image (corrupt, not an image, or too large): {err}") \
            from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _list_images(folder: Path) -> list[Path]:
    found, seen = [], set()
    # followlinks: ImageNet trees are often assembled from symlinked folders.
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        stat = os.stat(directory)
        if (stat.st_dev, stat.st_ino) in seen:
            raise ValueError(f"{directory} is reached twice while listing {folder} (a symlink loop, or two links to "
                             "one folder): every image would be counted again; remove the link")
        seen.add((stat.st_dev, stat.st_ino))
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))  # hidden folders are not data
        found.extend(Path(directory) / f for f in files
                     if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS)
    return sorted(found)


def image_folder(root: str | os.PathLike) -> ImageFolderDataset:
    """Index an ImageFolder tree; images are decoded on access.

    Args:
        root: folder with one sub-folder per class.

    Returns:
        A dataset of (uint8 (3, H, W) RGB image, int label), with ``classes`` the sorted sub-folder names.

    Raises:
        FileNotFoundError: root is missing, has no class folders, or a class folder holds no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; {_HOW_TO_GET}")
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"no class folders in {root} (expected {root}/<class>/<image>); {_HOW_TO_GET}")
    samples: list[tuple[Path, int]] = []
    empty = []
    for label, name in enumerate(classes):
        images = _list_images(root / name)
        if not images:
            empty.append(name)
        samples.extend((path, label) for path in images)
    if empty:
        # An empty class leaves a label that no sample carries: almost always an incomplete extraction, so fail
        # loudly rather than train on it.
        raise FileNotFoundError(f"{len(empty)} class folder(s) in {root} hold no images, e.g. {empty[:5]} "
                                f"(extensions read: {' '.join(sorted(IMAGE_EXTENSIONS))}); {_HOW_TO_GET}")
    return ImageFolderDataset(samples, classes=classes)
