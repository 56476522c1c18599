"""CIFAR-10 / CIFAR-100, "python version" as distributed by https://www.cs.toronto.edu/~kriz/cifar.html.

On disk (after ``tar xzf cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``)::

    cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/train, test, meta

Each file is a pickle (written by Python 2, so it is loaded with ``encoding="bytes"`` and its keys are bytes)
of a dict: ``b"data"`` a uint8 numpy array (N, 3072) holding each image as 1024 red, then 1024 green, then 1024
blue bytes, row-major 32x32; ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` / ``b"coarse_labels"``
(CIFAR-100) lists of ints. The meta files hold ``b"label_names"`` (CIFAR-10) or ``b"fine_label_names"`` /
``b"coarse_label_names"`` (CIFAR-100).

Unpickling can run arbitrary code, so these files go through :class:`RestrictedUnpickler`, which only
resolves the globals numpy needs to rebuild an array.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from .base import TensorImageDataset

_HOW_TO_GET = ("download cifar-{n}-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it "
               "with `tar xzf cifar-{n}-python.tar.gz`")

# Per variant: folder name, train files, test files, meta file, label key, label-name key.
_LAYOUT = {
    10: ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
         b"labels", b"label_names"),
    100: ("cifar-100-python", ["train"], ["test"], "meta", b"fine_labels", b"fine_label_names"),
}

# numpy's array-rebuild function, taken from a live array rather than a private module path because numpy 2
# moved it (numpy.core -> numpy._core) and files pickled under either name must load.
_RECONSTRUCT = np.empty(0).__reduce__()[0]


class UnsafePickleError(ValueError):
    """A pickle asked for a global outside the allow-list (possibly malicious); nothing from it was executed."""


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What a Python 3 protocol-2 pickle calls (as ``_codecs.encode``) to rebuild a bytes object; only latin-1."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise UnsafePickleError(f"refused _codecs.encode with encoding {encoding!r} in a data pickle (bytes are "
                                "rebuilt with latin-1 only)")
    return text.encode("latin1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1_bytes,  # bytes in a batch re-pickled by Python 3 with protocol 2
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array reconstruction; every other global is refused."""

    def find_class(self, module: str, name: str):
        # find_class is the only way a pickle can reach code (REDUCE/BUILD/INST/EXT all resolve through it), so
        # refusing here means a hostile file fails before anything of it runs.
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise UnsafePickleError(f"refused to load global {module}.{name} from a data pickle: only numpy array "
                                    "reconstruction is allowed; the file is not a genuine CIFAR batch")
        return allowed


def load_pickle(path: str | os.PathLike) -> object:
    """Load one CIFAR pickle through :class:`RestrictedUnpickler` with ``encoding="bytes"``.

    Args:
        path: the pickle file.

    Returns:
        The unpickled object (for CIFAR, a dict with bytes keys).

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafePickleError: the pickle refers to a global outside the allow-list.
        ValueError: the file is not a readable pickle (truncated or corrupt).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CIFAR pickle at {path}")
    data = path.read_bytes()
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{path}: {err}") from None
    except Exception as err:  # a corrupt pickle can fail in many ways (EOFError, UnpicklingError, KeyError, ...)
        raise ValueError(f"{path} is not a readable pickle (truncated or corrupt?): {type(err).__name__}: {err}; "
                         "download and extract the archive again") from err


def _find_folder(root: Path, folder: str, meta: str, num_classes: int) -> Path:
    # root may be the folder itself or the directory the archive was extracted into.
    for candidate in (root / folder, root):
        if (candidate / meta).is_file():
            return candidate
    raise FileNotFoundError(f"CIFAR-{num_classes} not found: expected {root / folder / meta} (or {root / meta}); "
                            + _HOW_TO_GET.format(n=num_classes) + f" into {root}")


def _read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, list[int]]:
    batch = load_pickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{path} is not a CIFAR batch: expected a dict with keys b'data' and {label_key!r}, "
                         f"got {keys}")
    data, labels = batch[b"data"], list(batch[label_key])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"{path}: b'data' must be a uint8 array of shape (N, 3072), got {found}")
    if len(labels) != data.shape[0]:
        raise ValueError(f"{path}: {data.shape[0]} images but {len(labels)} labels")
    return data, labels


def _read_class_names(path: Path, key: bytes) -> list[str]:
    meta = load_pickle(path)
    if not isinstance(meta, dict) or key not in meta:
        raise ValueError(f"{path} is not a CIFAR meta file: expected a dict with key {key!r}")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in meta[key]]


def cifar(root: str | os.PathLike, *, train: bool, num_classes: int = 10) -> TensorImageDataset:
    """Read a CIFAR-10 or CIFAR-100 split into memory (CIFAR-100 with its 100 fine labels).

    Args:
        root: the folder holding ``cifar-10-batches-py`` / ``cifar-100-python``, or that folder itself.
        train: the 50,000-image training split if True, else the 10,000-image test split.
        num_classes: 10 or 100.

    Returns:
        A dataset of (uint8 (3, 32, 32) image, int label), with ``classes`` from the meta file.

    Raises:
        FileNotFoundError: a file of the split is missing (the message says where and how to get it).
        ValueError: a file is corrupt, has the wrong layout, or is an unsafe pickle.
    """
    if num_classes not in _LAYOUT:
        raise ValueError(f"num_classes must be 10 or 100, got {num_classes}")
    folder, train_files, test_files, meta, label_key, names_key = _LAYOUT[num_classes]
    directory = _find_folder(Path(root), folder, meta, num_classes)
    classes = _read_class_names(directory / meta, names_key)
    arrays, labels = [], []
    for name in train_files if train else test_files:
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"CIFAR-{num_classes} file {path} is missing (incomplete extraction?); "
                                    + _HOW_TO_GET.format(n=num_classes))
        data, batch_labels = _read_batch(path, label_key)
        arrays.append(data)
        labels.extend(batch_labels)
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    if label_tensor.numel() and not 0 <= int(label_tensor.min()) <= int(label_tensor.max()) < len(classes):
        raise ValueError(f"CIFAR-{num_classes} labels in {directory} fall outside 0..{len(classes) - 1}: corrupt")
    images = torch.from_numpy(np.concatenate(arrays).reshape(-1, 3, 32, 32))
    return TensorImageDataset(images, label_tensor, classes=classes)
