"""IDX files (MNIST, Fashion-MNIST): a big-endian header (magic, dims) followed by raw array data.

Format: bytes 0-1 are zero, byte 2 is the element type (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), byte 3 the number of dimensions, then one big-endian uint32 per dimension.
Files may be gzip-compressed (``.gz``), as distributed.
"""
from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np
import torch

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C,
          np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an array as an IDX file (gzip-compressed when the name ends in .gz), atomically.

    Args:
        path: destination, e.g. ``train-images-idx3-ubyte.gz``.
        array: uint8, int8, int16, int32, float32 or float64 array of any shape.

    Returns:
        The path written.
    """
    from ..atomic import write_atomic

    path, array = Path(path), np.asarray(array)
    if array.dtype.newbyteorder("=") not in _CODES:
        raise ValueError(f"IDX cannot hold dtype {array.dtype}; use one of {[str(d) for d in _CODES]}")
    code = _CODES[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open

    def write(tmp):
        with opener(tmp, "wb") as f:
            f.write(payload)
    write_atomic(path, write)
    return path


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX file (raw or .gz) into a tensor of its stored shape.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not IDX, or its size disagrees with its header (truncated or corrupt).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no IDX file at {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"{path} cannot be read (corrupt gzip?): {err}") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_TYPES[data[2]])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path} holds {len(data)} bytes but its header {shape} needs {expected}: truncated "
                         "or corrupt; download it again")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")))
