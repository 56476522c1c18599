"""IDX reader on small files written in the exact format."""
import gzip
import struct

import numpy as np
import pytest
import torch

from modelring.data import read_idx


def _write_idx(path, array, type_code):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


@pytest.mark.parametrize("name", ["images.idx3-ubyte", "images.idx3-ubyte.gz"])
def test_uint8_images_raw_and_gz(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / name, images, 0x08)
    out = read_idx(tmp_path / name)
    assert out.dtype == torch.uint8 and torch.equal(out, torch.from_numpy(images))


def test_big_endian_int32_and_float(tmp_path):
    values = np.array([[1, -2, 70000]], dtype=np.int32)
    _write_idx(tmp_path / "a.idx", values, 0x0C)
    assert read_idx(tmp_path / "a.idx").tolist() == [[1, -2, 70000]]
    floats = np.array([0.5, -1.25], dtype=np.float32)
    _write_idx(tmp_path / "f.idx", floats, 0x0D)
    assert read_idx(tmp_path / "f.idx").tolist() == [0.5, -1.25]


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing.idx")
    (tmp_path / "bad.idx").write_bytes(b"\x12\x34\x08\x01")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad.idx")
    _write_idx(tmp_path / "t.idx", np.zeros((4, 3), dtype=np.uint8), 0x08)
    (tmp_path / "t.idx").write_bytes((tmp_path / "t.idx").read_bytes()[:-2])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "t.idx")
    (tmp_path / "z.idx.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="cannot be read"):
        read_idx(tmp_path / "z.idx.gz")


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float64])
def test_write_idx_roundtrip(tmp_path, name, dtype):
    from modelring.data import write_idx

    array = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
    assert torch.equal(read_idx(write_idx(tmp_path / name, array)), torch.from_numpy(array))
    with pytest.raises(ValueError, match="cannot hold"):
        write_idx(tmp_path / "b.idx", np.zeros(3, dtype=np.uint16))


def test_a_gzip_whose_header_declares_more_than_it_can_hold_is_refused_before_reading(tmp_path):
    import gzip

    from modelring.data.idx import read_idx

    header = bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in (60000, 2000, 2000))  # 240 GB
    with gzip.open(tmp_path / "bomb-idx3-ubyte.gz", "wb") as f:
        f.write(header + bytes(1000))
    with pytest.raises(ValueError, match="more than the file can hold"):
        read_idx(tmp_path / "bomb-idx3-ubyte.gz")


def test_corrupt_deflate_stream_and_trailing_data_are_clear_errors(tmp_path):
    from modelring.data.idx import read_idx, write_idx

    path = write_idx(tmp_path / "x-idx1-ubyte.gz", np.arange(5000, dtype=np.uint8) % 7)
    data = bytearray(path.read_bytes())
    data[40:60] = bytes(20)  # damage the compressed stream
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="cannot be read|truncated or corrupt"):
        read_idx(path)
    raw = write_idx(tmp_path / "y-idx1-ubyte", np.arange(10, dtype=np.uint8))
    raw.write_bytes(raw.read_bytes() + b"\x00")
    with pytest.raises(ValueError, match="holds more payload bytes"):
        read_idx(raw)


@pytest.mark.parametrize("side", [0, 1])
def test_degenerate_mnist_images_are_refused(tmp_path, side):
    from modelring.data import mnist, write_idx

    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, side, side), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="at least 8x8"):
        mnist(tmp_path, train=True)


def test_train_and_test_splits_of_different_sizes_are_refused(tmp_path):
    from modelring.config import load_config
    from modelring.data import write_idx
    from modelring.tasks import get_task

    for split, side in (("train", 28), ("t10k", 20)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", np.zeros((4, side, side), dtype=np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"training images are \(1, 28, 28\) but the test images \(1, 20, 20\)"):
        get_task("classification").build_data(load_config(None, [f"data.root={tmp_path}"]))
