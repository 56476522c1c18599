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
