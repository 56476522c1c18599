"""IDX files (MNIST, Fashion-MNIST): a big-endian header (magic, dims) followed by raw array data.

Format: bytes 0-1 are zero, byte 2 is the element type (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), byte 3 the number of dimensions, then one big-endian uint32 per dimension.
Files may be gzip-compressed (``.gz``), as distributed.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
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


# deflate cannot expand data more than ~1032x; a header declaring more than this is not this file's content
MAX_GZIP_RATIO = 1100


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX file (raw or .gz) into a tensor of its stored shape.

    The header is read first and the payload size it declares is checked against what the file can hold (its size,
    or for ``.gz`` the largest expansion deflate allows) before anything that size is allocated; then exactly that
    many bytes are read, and a longer or shorter stream is an error.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not IDX, or its size disagrees with its header (truncated, corrupt or crafted).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no IDX file at {path}")
    gz = path.suffix == ".gz"
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _TYPES:
                raise ValueError(f"{path} is not an IDX file (bad magic number {magic.hex()})")
            dims = f.read(4 * magic[3])
            if len(dims) != 4 * magic[3]:
                raise ValueError(f"{path} is truncated inside its header; download it again")
            shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(magic[3]))
            dtype = np.dtype(_TYPES[magic[2]])
            size = math.prod(shape) * dtype.itemsize
            limit = path.stat().st_size * (MAX_GZIP_RATIO if gz else 1)
            if size > limit:
                raise ValueError(f"{path}: its header declares {shape} ({size:,} bytes), more than the file can hold "
                                 f"({path.stat().st_size:,} bytes{', compressed' if gz else ''}): corrupt or crafted")
            data = f.read(size)
            extra = f.read(1)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path} cannot be read (corrupt gzip?): {type(err).__name__}: {err}") from None
    if len(data) != size or extra:
        held = "more" if extra else f"{len(data):,}"
        raise ValueError(f"{path} holds {held} payload bytes but its header {shape} needs {size:,}: truncated or "
                         "corrupt; download it again")
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")))
