import sys
from pathlib import Path

import numpy as np
import pytest

from modelring.data import write_idx

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def fmnist_root(tmp_path_factory):
    """Tiny data in the exact Fashion-MNIST file layout: each class is a bright bar at its own row."""
    return write_tiny_fmnist(tmp_path_factory.mktemp("fmnist"))


def write_tiny_fmnist(root: Path) -> Path:
    """Each class a bright bar at its own row over noise; 240 train / 80 test images, deterministic."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in [("train", 240), ("t10k", 80)]:
        labels = np.arange(n, dtype=np.uint8) % 10
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 255
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root
