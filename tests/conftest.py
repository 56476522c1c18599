import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))


def _write_idx(path, array, type_code):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


@pytest.fixture(scope="module")
def fmnist_root(tmp_path_factory):
    """Tiny data in the exact Fashion-MNIST file layout: each class is a bright bar at its own row."""
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for split, n in [("train", 240), ("t10k", 80)]:
        labels = np.arange(n, dtype=np.uint8) % 10
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 255
        _write_idx(root / f"{split}-images-idx3-ubyte.gz", images, 0x08)
        _write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels, 0x08)
    return root
