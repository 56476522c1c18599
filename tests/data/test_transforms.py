"""Torch-only augmentation: determinism through an explicit generator, shapes, and geometric correctness."""
import pytest
import torch

from modelring.data import (center_crop, normalize, random_crop, random_hflip, random_resized_box,
                            random_resized_crop, resize_center_crop)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _image(c=3, h=32, w=32, seed=0):
    return torch.randint(0, 256, (c, h, w), dtype=torch.uint8, generator=_gen(seed))


def _draws(fn, seed, n=6):
    generator = _gen(seed)
    return [fn(generator) for _ in range(n)]


RANDOM_TRANSFORMS = {
    "crop": lambda img, g: random_crop(img, size=32, padding=4, generator=g),
    "hflip": lambda img, g: random_hflip(img, generator=g),
    "resized_crop": lambda img, g: random_resized_crop(img, size=24, generator=g),
}


@pytest.mark.parametrize("name", RANDOM_TRANSFORMS)
def test_same_seed_same_output_other_seed_differs(name):
    img, fn = _image(), RANDOM_TRANSFORMS[name]
    first, again, other = (_draws(lambda g: fn(img, g), seed) for seed in (0, 0, 1))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_shapes_and_dtypes(dtype):
    img, g = _image(h=40, w=50).to(dtype), _gen(0)
    assert random_crop(img, size=(28, 30), padding=2, generator=g).shape == (3, 28, 30)
    assert random_crop(img, size=32, generator=g).dtype == dtype
    out = random_resized_crop(img, size=(16, 20), generator=g)
    assert out.shape == (3, 16, 20) and out.dtype == dtype
    out = resize_center_crop(img, resize=36, crop=32)
    assert out.shape == (3, 32, 32) and out.dtype == dtype
    batch = torch.stack([img, img])
    assert random_crop(batch, size=8, generator=g).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="larger than the padded image"):
        random_crop(img, size=48, padding=2, generator=g)


def test_flip_really_flips():
    img = torch.arange(12, dtype=torch.uint8).view(1, 3, 4)
    flipped = random_hflip(img, generator=_gen(0), p=1.0)
    assert flipped[0, 0].tolist() == [3, 2, 1, 0] and torch.equal(flipped.flip(-1), img)
    assert random_hflip(img, generator=_gen(0), p=0.0) is img
    generator = _gen(0)
    flips = [not torch.equal(random_hflip(img, generator=generator), img) for _ in range(400)]
    assert 150 < sum(flips) < 250


def test_crop_is_a_window_of_the_padded_image():
    img = torch.arange(1, 8 * 8 + 1, dtype=torch.float32).view(1, 8, 8)  # unique non-zero values
    padded = torch.nn.functional.pad(img, (3, 3, 3, 3))
    generator, seen = _gen(0), set()
    for _ in range(200):
        crop = random_crop(img, size=8, padding=3, generator=generator)
        # Values are unique and non-zero, so exactly one offset of the padded image can match the crop.
        matches = [(t, l) for t in range(7) for l in range(7) if torch.equal(padded[:, t:t + 8, l:l + 8], crop)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 30  # offsets spread over the 7x7 possibilities, extremes included
    assert {0, 6} <= {t for t, _ in seen} and {0, 6} <= {l for _, l in seen}


def test_random_resized_box_bounds_and_fallback():
    generator = _gen(0)
    for _ in range(200):
        top, left, h, w = random_resized_box(30, 40, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), generator=generator)
        assert 0 <= top and top + h <= 30 and 0 <= left and left + w <= 40 and h > 0 and w > 0
        assert 0.08 * 1200 * 0.8 <= h * w <= 1200
    # No 1:1 box covering the whole 10x100 image exists: fall back to the centred 10x10 box.
    assert random_resized_box(10, 100, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=generator) == (0, 45, 10, 10)


def test_random_resized_crop_values():
    constant = torch.full((3, 20, 30), 117, dtype=torch.uint8)
    assert bool((random_resized_crop(constant, size=16, generator=_gen(3)) == 117).all())
    img = _image(h=16, w=16).float()
    # Full-image box at the same size: bilinear resize at scale 1 is the identity.
    same = random_resized_crop(img, size=16, generator=_gen(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(same, img)


def test_center_crop_is_centred():
    img = torch.arange(6 * 8).view(1, 6, 8)
    assert torch.equal(center_crop(img, size=(2, 4)), img[:, 2:4, 2:6])
    assert torch.equal(center_crop(img, size=(6, 8)), img)
    with pytest.raises(ValueError, match="larger than the image"):
        center_crop(img, size=7)
    # resize == shorter side leaves the image as is, so the eval transform reduces to the centre crop.
    wide = _image(h=10, w=20).float()
    assert torch.allclose(resize_center_crop(wide, resize=10, crop=(10, 10)), wide[:, :, 5:15])
    tall = _image(h=40, w=20)
    assert resize_center_crop(tall, resize=10, crop=8).shape == (3, 8, 8)


def test_normalize_values():
    img = torch.tensor([0, 255, 51], dtype=torch.uint8).view(3, 1, 1)
    out = normalize(img, mean=(0.5, 0.5, 0.0), std=(0.5, 0.5, 0.2))
    assert out.dtype == torch.float32 and torch.allclose(out.flatten(), torch.tensor([-1.0, 1.0, 1.0]))
    floats = torch.full((1, 2, 2), 0.25)
    assert torch.allclose(normalize(floats, mean=[0.25], std=[1.0]), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="3 channels"):
        normalize(img, mean=[0.5], std=[0.5])
