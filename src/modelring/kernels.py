"""The compiled element-wise gather (``_gather.cpp``), built on first use and called through ctypes.

Why a kernel of our own (``bench/floor.py --variants``, CIFAR ResNet-18, T = 11.16 M, 2 threads, forward as a
multiple of a ``copy_`` of T float32): on CPU ``torch.index_select`` of a 1-D tensor runs on one thread and costs
several nanoseconds per element; with the sign folded into the index it took 10.1x (int64 indices), 10.1x (int32),
10.6x (int32, per layer); ``gather``/``take``/advanced indexing were 40-60x in earlier measurements; a
``torch.compile``d gather 9.6x plus a compile per shape (1-22 s); the plain-torch int16 path of ``elementwise.py``
50x. One fused OpenMP loop that decodes the int16 wiring, gathers inside a 2 KiB window, applies the sign and the
layer scale and writes each layer's tensor: 2.0x. int16 tables beat int32/int64 indices because they halve or
quarter the bytes read per weight; one pass over all layers beats per-layer calls.

The source has no torch headers, so it compiles in about a second with the system's C++ compiler
(``-march=native``: without AVX2 the gathers do not vectorise and take twice as long). The shared object is
cached under ``$MODELRING_CACHE`` (default ``~/.cache/modelring``), keyed by the source and the CPU, and written
atomically. Without a compiler, on other devices or dtypes, or with ``MODELRING_KERNEL=torch``, the
plain-torch path in ``generate.py`` computes bitwise the same values.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("_gather.cpp")
_FLOATS = {torch.float32: "f32", torch.float64: "f64"}
_lock = threading.Lock()
_library: ctypes.CDLL | None | bool = None  # None: not tried yet; False: unavailable


def cache_dir() -> Path:
    """Where compiled kernels are kept."""
    root = os.environ.get("MODELRING_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "modelring")
    return Path(root) / "kernels"


def _compile(source: Path, target: Path) -> None:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        # -ffp-contract=off: no fused multiply-add, so results equal the plain-torch path bit for bit
        subprocess.run([compiler, "-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-shared", "-fPIC",
                        "-o", tmp, str(source)], check=True, capture_output=True, text=True)
        os.replace(tmp, target)
    except subprocess.CalledProcessError as err:
        Path(tmp).unlink(missing_ok=True)
        raise RuntimeError(f"compiling {source.name} failed: {err.stderr.strip()[:500]}") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _machine_key() -> bytes:
    """The CPU the kernel is built for (-march=native): a cache shared between machines keeps one build each."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    wanted = [line for line in lines if line.startswith(("model name", "flags"))][:2]
    return "\n".join(wanted + [platform.machine(), platform.processor()]).encode()


def _load() -> ctypes.CDLL:
    digest = hashlib.sha256(SOURCE.read_bytes() + _machine_key()).hexdigest()[:16]
    target = cache_dir() / f"gather-{digest}.so"
    if not target.is_file():
        _compile(SOURCE, target)
    lib = ctypes.CDLL(str(target))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for name in _FLOATS.values():
        getattr(lib, f"modelring_forward_{name}").argtypes = [ptr, i64, ptr, i64, ptr, ctypes.c_int, i64, ptr,
                                                              ptr, ptr, ctypes.c_int]
        getattr(lib, f"modelring_backward_{name}").argtypes = [ptr, i64, ptr, ptr, i64, i64, ptr, ctypes.c_int,
                                                               ptr, ctypes.c_int, ctypes.c_int]
        getattr(lib, f"modelring_backward_hashed_{name}").argtypes = [ptr, i64, ptr, ptr, i64, i64, ctypes.c_int,
                                                                      i64, ptr, ctypes.c_int, ctypes.c_int, i64,
                                                                      ptr, ptr, ptr, ctypes.c_int, ctypes.c_int]
    lib.modelring_element_tables.argtypes = [i64, i64, ctypes.c_int, ptr, ctypes.c_int, ctypes.c_int, i64, ptr, ptr,
                                             ptr, ctypes.c_int]
    return lib


def library() -> ctypes.CDLL | None:
    """The compiled kernel, or None when it cannot be used here (a warning says why, once)."""
    global _library
    if os.environ.get("MODELRING_KERNEL", "").lower() == "torch":
        return None
    with _lock:
        if _library is None:
            try:
                _library = _load()
            except (OSError, RuntimeError) as err:
                warnings.warn(f"modelring: compiled generation kernel unavailable ({err}); using the plain-torch "
                              "path (same values, slower on CPU)", RuntimeWarning, stacklevel=3)
                _library = False
    return _library or None


def usable(tensor: torch.Tensor) -> bool:
    """Whether the compiled kernel can serve this ring tensor (contiguous CPU float32/float64)."""
    return tensor.device.type == "cpu" and tensor.dtype in _FLOATS and library() is not None


def forward(ring: torch.Tensor, fwd: torch.Tensor, base: torch.Tensor, bits: int, starts: torch.Tensor,
            outs: list[torch.Tensor], scales: torch.Tensor, fwd_first: int = 0) -> None:
    """Write the generated weights of the layers that ``starts`` bounds into ``outs`` (contiguous, one per layer);
    ``fwd`` holds the codes of the weights from ``fwd_first`` on (the whole table: 0)."""
    pointers = torch.tensor([o.data_ptr() for o in outs], dtype=torch.int64)
    getattr(library(), f"modelring_forward_{_FLOATS[ring.dtype]}")(
        ring.data_ptr(), ring.numel(), fwd.data_ptr(), fwd_first, base.data_ptr(), bits, len(outs),
        starts.data_ptr(), pointers.data_ptr(), scales.data_ptr(), torch.get_num_threads())


def _tile_lists(tiles: torch.Tensor, tile_src: torch.Tensor, tile_scale: torch.Tensor) -> tuple:
    """The kernel's views of the listed tiles: int32, int64, float64, contiguous (checked: a wrong dtype would be
    read as other numbers)."""
    if (tiles.dtype, tile_src.dtype, tile_scale.dtype) != (torch.int32, torch.int64, torch.float64):
        raise TypeError(f"tiles, tile_src, tile_scale must be int32, int64, float64, got {tiles.dtype}, "
                        f"{tile_src.dtype}, {tile_scale.dtype}")
    if not tiles.numel() == tile_src.numel() == tile_scale.numel():
        raise ValueError("tiles, tile_src and tile_scale must list the same tiles")
    return tiles.contiguous(), tile_src.contiguous(), tile_scale.contiguous()


def backward(tiles: torch.Tensor, tile_src: torch.Tensor, tile_scale: torch.Tensor, inv: torch.Tensor, bits: int,
             out: torch.Tensor, *, fresh: bool = False) -> None:
    """out[k] += sum over the listed tiles t, in ascending order, of scale * sign * gradient of the weight on tiled
    position p = t * 2**bits + i with p mod N = k, term by term; ``tile_src[i]`` is the address of the gradient of
    the chunk on tile ``tiles[i]`` (0: none, the tile is skipped), ``tile_scale[i]`` its scale (int32 distinct
    tiles in any order, int64, float64). ``fresh``: ``out`` is uninitialised and is written as if it were zeros."""
    tiles, tile_src, tile_scale = _tile_lists(tiles, tile_src, tile_scale)  # alive until the call returns
    getattr(library(), f"modelring_backward_{_FLOATS[out.dtype]}")(
        tiles.data_ptr(), tiles.numel(), tile_src.data_ptr(), tile_scale.data_ptr(), inv.numel(), out.numel(),
        inv.data_ptr(), bits, out.data_ptr(), int(fresh), torch.get_num_threads())


def element_tables(chunks: int, bits: int, chunk_keys: list[int], *, permute: bool, reflect: bool, sign_key: int,
                   sigma: torch.Tensor | None, fwd: torch.Tensor | None, inv: torch.Tensor | None, first: int = 0
                   ) -> None:
    """Fill the int16 tables of the ``chunks`` full chunks from chunk ``first`` on (``fwd``, which starts at chunk
    ``first``, and ``inv`` at each chunk's slot ``sigma[q]``; a table given as None is skipped) from the integer
    hash, as ``elementwise.build_element_wiring``'s torch loop does (tested equal)."""
    if len(chunk_keys) != 4 or not 1 <= bits <= 15:  # the kernel's compile-time rounds; 15-bit offsets
        raise ValueError(f"the compiled tables take 4 round keys and 1..15 bits, got {len(chunk_keys)} and {bits}")
    keys = torch.tensor(chunk_keys, dtype=torch.int64)
    if inv is not None and sigma is None:
        raise ValueError("the inverse table needs sigma, the slot of every chunk")
    slots = sigma.to(torch.int64).contiguous() if sigma is not None else None  # alive until the call returns
    library().modelring_element_tables(first, chunks, bits, keys.data_ptr(), int(permute), int(reflect), sign_key,
                                       slots.data_ptr() if slots is not None else None,
                                       fwd.data_ptr() if fwd is not None else None,
                                       inv.data_ptr() if inv is not None else None, torch.get_num_threads())


def backward_hashed(tiles: torch.Tensor, tile_src: torch.Tensor, tile_scale: torch.Tensor, total: int, bits: int,
                    chunks: int, chunk_keys: list[int], *, permute: bool, reflect: bool, sign_key: int,
                    slot_chunk: torch.Tensor, tail: torch.Tensor, out: torch.Tensor, fresh: bool = False) -> None:
    """``backward`` for the recompute wiring: every tile's inverse codes computed from the hash as the sums need
    them (the full chunk on slot s is ``slot_chunk[s]``; the short last chunk's tile, slot ``chunks``, reads
    ``tail``), so no T-sized table exists at any time. Bitwise the same sums as ``backward`` (tested)."""
    if len(chunk_keys) != 4:
        raise ValueError(f"the compiled codes take 4 round keys, got {len(chunk_keys)}")
    keys = torch.tensor(chunk_keys, dtype=torch.int64)
    slots, tail = slot_chunk.to(torch.int64).contiguous(), tail.contiguous()  # alive until the call returns
    tiles, tile_src, tile_scale = _tile_lists(tiles, tile_src, tile_scale)
    getattr(library(), f"modelring_backward_hashed_{_FLOATS[out.dtype]}")(
        tiles.data_ptr(), tiles.numel(), tile_src.data_ptr(), tile_scale.data_ptr(), total, out.numel(), bits, chunks,
        keys.data_ptr(), int(permute), int(reflect), sign_key, slots.data_ptr(), tail.data_ptr(), out.data_ptr(),
        int(fresh), torch.get_num_threads())
