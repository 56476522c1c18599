"""In-memory image datasets and the per-sample reformatting (padding, channel repeat) shared by all readers.

Every dataset here yields ``(image, label)`` with ``image`` a uint8 tensor laid out CHW and ``label`` a
Python int in ``range(len(dataset.classes))``.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


class TensorImageDataset(Dataset):
    """A whole split held as one uint8 tensor (N, C, H, W) plus int64 labels (N,).

    Attributes:
        images: uint8 tensor (N, C, H, W).
        labels: int64 tensor (N,).
        classes: class names; ``labels`` index into it.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, classes: Sequence[str]):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"{images.shape[0]} images but labels have shape {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.classes = list(classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


class TransformedDataset(Dataset):
    """Apply ``transform`` to each image of ``dataset`` on access; labels and ``classes`` pass through.

    Lazily per sample, so e.g. MNIST repeated to 3 channels and padded to 32x32 does not triple its memory.
    """

    def __init__(self, dataset: Dataset, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.dataset = dataset
        self.transform = transform
        self.classes = list(getattr(dataset, "classes", []))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        return self.transform(image), label


def pad_to_size(image: torch.Tensor, *, size: int) -> torch.Tensor:
    """Zero-pad a CHW image symmetrically to ``size`` x ``size`` (e.g. MNIST 28x28 -> 32x32).

    Odd differences put the extra row/column at the bottom/right.

    Args:
        image: (C, H, W) tensor with H, W <= size.
        size: target height and width.

    Returns:
        (C, size, size) tensor of the same dtype.
    """
    height, width = image.shape[-2:]
    if height > size or width > size:
        raise ValueError(f"cannot pad a {height}x{width} image to {size}x{size}: it is already larger")
    top, left = (size - height) // 2, (size - width) // 2
    return F.pad(image, (left, size - width - left, top, size - height - top))


def repeat_channels(image: torch.Tensor, *, channels: int) -> torch.Tensor:
    """Repeat a 1-channel CHW image to ``channels`` channels; an image that already has them is returned as is.

    Args:
        image: (C, H, W) tensor.
        channels: wanted channel count.

    Returns:
        (channels, H, W) tensor.
    """
    have = image.shape[0]
    if have == channels:
        return image
    if have != 1:
        raise ValueError(f"cannot turn a {have}-channel image into {channels} channels (only 1 -> N is supported)")
    return image.expand(channels, *image.shape[1:]).contiguous()


def reformat(dataset: Dataset, *, pad_to: int | None = None, channels: int | None = None) -> Dataset:
    """Wrap ``dataset`` so its images are padded to ``pad_to`` and/or repeated to ``channels`` channels.

    Args:
        dataset: yields (CHW image, label).
        pad_to: zero-pad images to this square size; None keeps the size.
        channels: repeat 1-channel images to this many channels; None keeps them.

    Returns:
        ``dataset`` itself when both options are None, else a :class:`TransformedDataset`.
    """
    if pad_to is None and channels is None:
        return dataset
    if pad_to is not None and pad_to <= 0:
        raise ValueError(f"pad_to must be a positive size, got {pad_to}")
    if channels is not None and channels <= 0:
        raise ValueError(f"channels must be positive, got {channels}")

    # A partial of a module-level function (not a closure) so DataLoader workers started with "spawn" can pickle it.
    return TransformedDataset(dataset, functools.partial(_pad_and_repeat, pad_to=pad_to, channels=channels))


def _pad_and_repeat(image: torch.Tensor, *, pad_to: int | None, channels: int | None) -> torch.Tensor:
    if pad_to is not None:
        image = pad_to_size(image, size=pad_to)
    if channels is not None:
        image = repeat_channels(image, channels=channels)
    return image
