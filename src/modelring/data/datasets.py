"""build_dataset: one entry point over the readers, by name.

Expected layouts under ``root`` (details in each reader's module):

    cifar10        root/cifar-10-batches-py/...  (or root is that folder)    -> modelring.data.cifar
    cifar100       root/cifar-100-python/...     (or root is that folder)    -> modelring.data.cifar
    mnist          root/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]    -> modelring.data.mnist
    fashion_mnist  same file names as mnist                                  -> modelring.data.mnist
    imagefolder    root/train/<class>/<image>, root/val/<class>/<image>      -> modelring.data.image_folder
    mpii           root/annot/{train,valid}.json + root/images/ (pose)       -> modelring.data.mpii
    s2d3ds         root/area_*/data/{rgb,depth,normal,semantic}/ (multitask)  -> modelring.data.s2d3ds

``DATASETS`` is the registry of every reader: the task it feeds, its normalisation constants, its default root.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from .base import reformat
from .cifar import cifar
from .image_folder import image_folder
from .mnist import mnist



@dataclass(frozen=True)
class DatasetInfo:
    """What a training pipeline needs to know about a named data set besides its files.

    Attributes:
        mean, std: per-channel normalisation constants of its images (0..1 scale).
        task: the task whose samples it yields (``classification``, ``pose``, ``multitask``).
        default_root: where the data lies when ``data.root`` is not given (None: it must be given).
        mirror: whether a horizontal flip keeps an image's label (not for digits).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    task: str = "classification"
    default_root: str | None = None
    mirror: bool = True


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


DATASETS = {
    "cifar10": DatasetInfo((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": DatasetInfo((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": DatasetInfo((0.1307,), (0.3081,), mirror=False),
    "fashion_mnist": DatasetInfo((0.2860,), (0.3530,), default_root="/usr/share/datasets/fashion-mnist"),
    "imagefolder": DatasetInfo(IMAGENET_MEAN, IMAGENET_STD),
    "mpii": DatasetInfo(IMAGENET_MEAN, IMAGENET_STD, task="pose"),
    "s2d3ds": DatasetInfo(IMAGENET_MEAN, IMAGENET_STD, task="multitask"),
}
DATASET_NAMES = tuple(name for name, info in DATASETS.items() if info.task == "classification")


def dataset_info(name: str, task: str | None = None) -> DatasetInfo:
    """The registry entry of a data set; with ``task``, it must feed that task (a clear error otherwise)."""
    names = [n for n, info in DATASETS.items() if task is None or info.task == task]
    if name not in names:
        other = f" (it is a {DATASETS[name].task} data set)" if name in DATASETS else ""
        raise ValueError(f"unknown {task + ' ' if task else ''}data set {name!r}{other}; set data.name to one of "
                         f"{', '.join(names)}")
    return DATASETS[name]


def _read(name: str, root: Path, train: bool) -> Dataset:
    if name == "cifar10":
        return cifar(root, train=train, num_classes=10)
    if name == "cifar100":
        return cifar(root, train=train, num_classes=100)
    if name in ("mnist", "fashion_mnist"):
        return mnist(root, train=train, fashion=name == "fashion_mnist")
    return image_folder(root / ("train" if train else "val"))


def build_dataset(name: str, root: str | os.PathLike, *, train: bool, pad_to: int | None = None,
                  channels: int | None = None) -> Dataset:
    """Open a named data set split, optionally padded and channel-repeated to fit a model's input.

    Args:
        name: one of ``DATASET_NAMES``: cifar10, cifar100, mnist, fashion_mnist, imagefolder.
        root: where the data lies (see the module docstring); for imagefolder, the folder holding train/ and val/.
        train: training split if True, else the test (``val`` for imagefolder) split.
        pad_to: zero-pad images to ``pad_to`` x ``pad_to`` (e.g. 32 for 28x28 MNIST into a CIFAR model).
        channels: repeat 1-channel images to this many channels (e.g. 3).

    Returns:
        A dataset of (uint8 CHW image, int label) with a ``classes`` attribute.

    Raises:
        ValueError: unknown name, or the data is corrupt.
        FileNotFoundError: the data is missing (the message says what was expected where and how to get it).
    """
    dataset_info(name, "classification")
    return reformat(_read(name, Path(root), train), pad_to=pad_to, channels=channels)
