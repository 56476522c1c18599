"""Image augmentation in plain torch on CHW tensors (uint8 or float), without torchvision.

Every random transform takes an explicit ``torch.Generator``: the same generator state gives the same output,
and there is no hidden global random state. random_crop and random_hflip draw a fixed number of values whatever
the outcome (a flip that does not happen still consumes its draw), so they never shift the stream of what follows.

Shapes: images are (C, H, W); leading batch dimensions (..., C, H, W) are accepted and share one draw.
Dtypes are preserved, except :func:`normalize`, which returns float32.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _randint(high: int, generator: torch.Generator) -> int:
    """Uniform int in [0, high] inclusive."""
    return int(torch.randint(high + 1, (1,), generator=generator))


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def random_crop(img: torch.Tensor, *, size: int | Sequence[int], padding: int = 0,
                generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` on every side, then crop a random ``size`` window (CIFAR-style augmentation).

    Args:
        img: (..., C, H, W) tensor.
        size: crop height and width (int for square).
        padding: zero border added on each side before cropping.
        generator: source of randomness.

    Returns:
        (..., C, size_h, size_w) tensor, same dtype.
    """
    height, width = _pair(size)
    padded = F.pad(img, (padding, padding, padding, padding)) if padding else img
    room_h, room_w = padded.shape[-2] - height, padded.shape[-1] - width
    if room_h < 0 or room_w < 0:
        raise ValueError(f"crop {height}x{width} is larger than the padded image {tuple(padded.shape[-2:])}")
    top, left = _randint(room_h, generator), _randint(room_w, generator)
    return padded[..., top:top + height, left:left + width]


def random_hflip(img: torch.Tensor, *, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror left-right with probability ``p``.

    Args:
        img: (..., C, H, W) tensor.
        generator: source of randomness.
        p: flip probability.

    Returns:
        The flipped image or ``img`` itself.
    """
    flip = float(torch.rand((), generator=generator)) < p
    return img.flip(-1) if flip else img


def _resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (antialiased when shrinking) that keeps the dtype, rounding back for integer images."""
    batched = img.reshape(-1, *img.shape[-3:])
    out = F.interpolate(batched.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    if not img.dtype.is_floating_point:
        # Rounding, not truncation, so a uniform uint8 image stays exactly the same value.
        info = torch.iinfo(img.dtype)
        out = out.round().clamp(info.min, info.max)
    return out.to(img.dtype).reshape(*img.shape[:-2], *size)


def random_resized_box(height: int, width: int, *, scale: tuple[float, float], ratio: tuple[float, float],
                       generator: torch.Generator) -> tuple[int, int, int, int]:
    """Pick the (top, left, h, w) box of an ImageNet-style random resized crop (the Inception recipe).

    Tries 10 boxes with area uniform in ``scale`` x image area and log-uniform aspect ratio in ``ratio``; if
    none fits, falls back to the largest centred box with an aspect ratio clamped into ``ratio``.

    Args:
        height: image height.
        width: image width.
        scale: range of the box area as a fraction of the image area.
        ratio: range of the box aspect ratio w/h.
        generator: source of randomness.

    Returns:
        (top, left, box_height, box_width).
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(log_ratio[0], log_ratio[1], generator))
        box_w = round(math.sqrt(target * aspect))
        box_h = round(math.sqrt(target / aspect))
        if 0 < box_w <= width and 0 < box_h <= height:
            return _randint(height - box_h, generator), _randint(width - box_w, generator), box_h, box_w
    aspect = width / height
    if aspect < min(ratio):
        box_w, box_h = width, round(width / min(ratio))
    elif aspect > max(ratio):
        box_h, box_w = height, round(height * max(ratio))
    else:
        box_h, box_w = height, width
    return (height - box_h) // 2, (width - box_w) // 2, box_h, box_w


def random_resized_crop(img: torch.Tensor, *, size: int | Sequence[int], generator: torch.Generator,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Crop a random box (see :func:`random_resized_box`) and resize it bilinearly to ``size`` (ImageNet training).

    Args:
        img: (..., C, H, W) tensor.
        size: output height and width (int for square).
        generator: source of randomness.
        scale: range of the box area as a fraction of the image area.
        ratio: range of the box aspect ratio w/h.

    Returns:
        (..., C, size_h, size_w) tensor, same dtype.
    """
    top, left, box_h, box_w = random_resized_box(img.shape[-2], img.shape[-1], scale=scale, ratio=ratio,
                                                 generator=generator)
    return _resize(img[..., top:top + box_h, left:left + box_w], _pair(size))


def center_crop(img: torch.Tensor, *, size: int | Sequence[int]) -> torch.Tensor:
    """Crop the centred ``size`` window (offsets rounded as torchvision does).

    Args:
        img: (..., C, H, W) tensor at least ``size`` large.
        size: crop height and width (int for square).

    Returns:
        (..., C, size_h, size_w) tensor.
    """
    height, width = _pair(size)
    if height > img.shape[-2] or width > img.shape[-1]:
        raise ValueError(f"center crop {height}x{width} is larger than the image {tuple(img.shape[-2:])}")
    top = int(round((img.shape[-2] - height) / 2.0))
    left = int(round((img.shape[-1] - width) / 2.0))
    return img[..., top:top + height, left:left + width]


def resize_center_crop(img: torch.Tensor, *, resize: int, crop: int | Sequence[int]) -> torch.Tensor:
    """Evaluation transform: resize the shorter side to ``resize`` (keeping aspect), then centre-crop ``crop``.

    Args:
        img: (..., C, H, W) tensor.
        resize: length of the shorter side after resizing (e.g. 256).
        crop: centre crop size (e.g. 224).

    Returns:
        (..., C, crop_h, crop_w) tensor, same dtype.
    """
    height, width = img.shape[-2:]
    if height <= width:
        new = (resize, int(resize * width / height))
    else:
        new = (int(resize * height / width), resize)
    return center_crop(_resize(img, new), size=crop)


def normalize(img: torch.Tensor, *, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Scale to [0, 1] (uint8 divided by 255; float taken as already scaled) and normalise per channel.

    Args:
        img: (..., C, H, W) uint8 or float tensor.
        mean: per-channel mean, in [0, 1] units.
        std: per-channel standard deviation, in [0, 1] units.

    Returns:
        float32 tensor ``(img / 255 - mean) / std`` of the same shape.
    """
    channels = img.shape[-3]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} entries but the image has {channels} channels")
    out = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
    mean_t = torch.tensor(mean, dtype=torch.float32, device=img.device).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=img.device).view(-1, 1, 1)
    return (out - mean_t) / std_t
