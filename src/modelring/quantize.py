"""Quantized and pruned rings: post-training compression of a converted model's rings, and their file encoding.

The paper notes that RPG models can themselves be pruned and quantized. Here both act on the ring, the only
trained tensor a generated layer has:

- ``quantize_rings(model, bits=8)``: symmetric per-chunk quantization (``chunk`` consecutive entries share one
  float32 scale, absmax / (2**(bits-1) - 1); ``chunk=None`` gives one scale per ring) to 8 or 4 bits. The ring then
  holds the dequantized values, so the model in memory computes exactly what a loaded file will.
- ``prune_rings(model, keep)``: magnitude pruning of ring entries (the ``keep`` largest survive, per ring; ties by
  position); pruned entries are exact zeros and a file stores only a bit mask and the survivors.

``modelring.save`` writes a ring carrying an encoding as small integers + scales (+ mask) instead of float32
(``save(..., ring_bits=8)`` encodes every ring at save time without changing the model in memory), and
``modelring.load`` restores a working model. ``encoded_ring_bytes`` gives the stored size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .bank import get_state
from .prune import global_magnitude_masks
from .sizes import resolve_ring_size

BITS = (8, 4)
DEFAULT_CHUNK = 4096
MAX_CHUNK = 2 ** 30


@dataclass(frozen=True)
class RingEncoding:
    """How one ring is stored: ``bits`` (8, 4, or None for float32 values), ``chunk`` entries per scale (None: one
    scale for the ring), ``sparse`` (only the non-zero entries are stored, with a bit mask of where they are)."""

    bits: int | None = 8
    chunk: int | None = DEFAULT_CHUNK
    sparse: bool = False

    def __post_init__(self):
        if self.bits not in (*BITS, None):
            raise ValueError(f"ring bits must be one of {BITS} (or None for float32), got {self.bits!r}")
        if self.chunk is not None and (isinstance(self.chunk, bool) or not isinstance(self.chunk, int)
                                       or not 1 <= self.chunk <= MAX_CHUNK):
            raise ValueError(f"ring chunk must be a positive int (entries per scale) or None, got {self.chunk!r}")
        if self.bits is None and not self.sparse:
            raise ValueError("an encoding with neither bits nor sparse storage is plain float32: use no encoding")

    def to_dict(self) -> dict:
        return {"bits": self.bits, "chunk": self.chunk, "sparse": self.sparse}

    @classmethod
    def from_dict(cls, data) -> "RingEncoding":
        """An encoding from a file's metadata; ValueError for anything ``to_dict`` could not have written."""
        if not isinstance(data, dict) or set(data) != {"bits", "chunk", "sparse"} or \
                not isinstance(data["sparse"], bool):
            raise ValueError(f"unreadable ring encoding {data!r:.100}")
        return cls(bits=data["bits"], chunk=data["chunk"], sparse=data["sparse"])


def _levels(bits: int) -> int:
    return 2 ** (bits - 1) - 1  # symmetric: 127 for 8 bits, 7 for 4 bits; code 0 of the offset form is unused


def _chunked(values: torch.Tensor, chunk: int | None) -> tuple[torch.Tensor, int]:
    """``values`` as (chunks, chunk) rows, zero-padded, and the chunk length used."""
    n = values.numel()
    chunk = max(1, n) if chunk is None else chunk
    rows = -(-n // chunk)
    padded = torch.zeros(rows * chunk, dtype=torch.float32)
    padded[:n] = values.detach().float().cpu()
    return padded.view(rows, chunk), chunk


def quantize_values(values: torch.Tensor, bits: int, chunk: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-chunk quantization: (codes, scales). Codes are uint8, offset by 2**(bits-1) and, for 4 bits,
    packed two per byte (low nibble first); scales are float32, one per chunk (absmax / levels, 0 for a chunk of
    zeros).

    Args:
        values: a 1-D float tensor.
        bits: 8 or 4.
        chunk: entries per scale, or None for one scale.

    Returns:
        (codes, scales).
    """
    rows, _ = _chunked(values, chunk)
    levels = _levels(bits)
    scales = rows.abs().amax(dim=1) / levels
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    q = torch.round(rows / safe[:, None]).clamp_(-levels, levels).to(torch.int16).flatten()[: values.numel()]
    codes = (q + 2 ** (bits - 1)).to(torch.uint8)
    if bits == 4:
        if codes.numel() % 2:
            codes = torch.cat([codes, codes.new_full((1,), 2 ** (bits - 1))])
        codes = codes[0::2] | (codes[1::2] << 4)
    return codes, scales


def dequantize_values(codes: torch.Tensor, scales: torch.Tensor, count: int, bits: int,
                      chunk: int | None) -> torch.Tensor:
    """The float32 values ``quantize_values`` encoded (``count`` of them)."""
    if bits == 4:
        codes = torch.stack([codes & 0x0F, codes >> 4], dim=1).flatten()
    q = codes[:count].to(torch.int16) - 2 ** (bits - 1)
    chunk = max(1, count) if chunk is None else chunk
    per_entry = scales.repeat_interleave(chunk)[:count]
    return q.to(torch.float32) * per_entry


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """A bool vector as uint8 bytes, 8 entries a byte, entry j in bit j % 8 of byte j // 8."""
    n = mask.numel()
    padded = torch.zeros(-(-n // 8) * 8, dtype=torch.uint8)
    padded[:n] = mask.to(torch.uint8)
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)
    return (padded.view(-1, 8) * weights).sum(dim=1, dtype=torch.int32).to(torch.uint8)


def unpack_mask(packed: torch.Tensor, count: int) -> torch.Tensor:
    bits = (packed[:, None].to(torch.int32) >> torch.arange(8, dtype=torch.int32)) & 1
    return bits.flatten()[:count].bool()


def encode_ring(values: torch.Tensor, encoding: RingEncoding) -> dict[str, torch.Tensor]:
    """The tensors a file stores for one ring: ``codes`` + ``scales`` (quantized), ``values`` (float32 survivors of
    a sparse ring without bits), and ``mask`` (sparse)."""
    flat = values.detach().float().cpu().flatten()
    out = {}
    if encoding.sparse:
        mask = flat != 0
        out["mask"] = pack_mask(mask)
        flat = flat[mask]
    if encoding.bits is None:
        out["values"] = flat.clone()
    else:
        out["codes"], out["scales"] = quantize_values(flat, encoding.bits, encoding.chunk)
    return out


def decode_ring(tensors: dict[str, torch.Tensor], encoding: RingEncoding, size: int) -> torch.Tensor:
    """The float32 ring of ``size`` entries ``encode_ring`` stored; ValueError naming what is inconsistent."""
    expected = ({"mask"} if encoding.sparse else set()) | ({"values"} if encoding.bits is None else
                                                           {"codes", "scales"})
    if set(tensors) != expected:
        raise ValueError(f"an encoded ring needs tensors {sorted(expected)}, found {sorted(tensors)}")
    count, mask = size, None
    if encoding.sparse:
        mask = tensors["mask"]
        if mask.dtype != torch.uint8 or tuple(mask.shape) != (-(-size // 8),):
            raise ValueError(f"the ring mask must be {-(-size // 8)} uint8 bytes for {size:,} entries")
        mask = unpack_mask(mask, size)
        count = int(mask.sum())
    if encoding.bits is None:
        kept = tensors["values"]
        if kept.dtype != torch.float32 or tuple(kept.shape) != (count,):
            raise ValueError(f"the ring's stored values must be {count:,} float32 entries")
    else:
        codes, scales = tensors["codes"], tensors["scales"]
        n_codes = count if encoding.bits == 8 else -(-count // 2)
        n_scales = -(-count // (max(1, count) if encoding.chunk is None else encoding.chunk))
        if codes.dtype != torch.uint8 or tuple(codes.shape) != (n_codes,):
            raise ValueError(f"the ring's codes must be {n_codes:,} uint8 bytes ({count:,} {encoding.bits}-bit "
                             "values)")
        if scales.dtype != torch.float32 or tuple(scales.shape) != (n_scales,) or \
                not (torch.isfinite(scales).all() and (scales >= 0).all()):
            raise ValueError(f"the ring's scales must be {n_scales:,} finite, non-negative float32 values")
        kept = dequantize_values(codes, scales, count, encoding.bits, encoding.chunk)
    if mask is None:
        return kept
    ring = torch.zeros(size, dtype=torch.float32)
    ring[mask] = kept
    return ring


def encoded_ring_bytes(size: int, nonzero: int, encoding: RingEncoding | None) -> int:
    """Bytes a ring of ``size`` entries (``nonzero`` of them non-zero) takes in a file, tensor data only."""
    if encoding is None:
        return 4 * size
    count = nonzero if encoding.sparse else size
    mask = -(-size // 8) if encoding.sparse else 0
    if encoding.bits is None:
        return mask + 4 * count
    chunk = max(1, count) if encoding.chunk is None else encoding.chunk
    codes = count if encoding.bits == 8 else -(-count // 2)
    return mask + codes + 4 * -(-count // chunk)


def stored_ring(module: nn.Module, encoding: RingEncoding) -> dict[str, torch.Tensor]:
    """The file tensors of one ``Ring`` module under ``encoding``: the ones its last ``quantize_rings`` /
    ``prune_rings`` produced when the ring still holds exactly their values (so a file reproduces the model in
    memory bit for bit), else freshly encoded from the current values."""
    kept = getattr(module, "encoded", None)
    if kept is not None and kept[0] == encoding:
        current = module.weight.detach().float().cpu()
        if torch.equal(decode_ring(kept[1], encoding, current.numel()), current):
            return kept[1]
    return encode_ring(module.weight, encoding)


def _apply(module: nn.Module, encoding: RingEncoding) -> dict:
    """Set a ring to the values its encoding stores, remember the encoding; return the error it made."""
    before = module.weight.detach().float().cpu().clone()  # (a view of the ring for float32 CPU rings)
    tensors = encode_ring(before, encoding)
    after = decode_ring(tensors, encoding, before.numel())
    with torch.no_grad():
        module.weight.copy_(after.to(module.weight.dtype))
    module.encoded = (encoding, tensors)
    error = (after - before).abs()
    rms = float(before.square().mean().sqrt()) or 1.0
    return {"ring": module.spec.name, "entries": before.numel(), "nonzero": int((after != 0).sum()),
            "bytes": encoded_ring_bytes(before.numel(), int((after != 0).sum()), encoding),
            "max_abs_error": float(error.max()) if error.numel() else 0.0,
            "relative_rms_error": float(error.square().mean().sqrt()) / rms}


def _rings(model: nn.Module) -> list[nn.Module]:
    state = get_state(model)
    if state is None:
        raise ValueError("this model has no rings (not converted with modelring.convert); quantize or prune its "
                         "weights with torch's own tools, or convert it first")
    return state.rings


def quantize_rings(model: nn.Module, bits: int = 8, *, chunk: int | None = DEFAULT_CHUNK) -> list[dict]:
    """Quantize every ring of a converted model in place to ``bits`` bits (post-training).

    Args:
        model: a converted model (its rings are changed; generated weights follow at the next forward).
        bits: 8 or 4.
        chunk: entries per float32 scale (default 4096), or None for one scale per ring.

    Returns:
        One dict per ring: entries, non-zeros, stored bytes, max absolute and relative RMS error.
    """
    out = []
    for module in _rings(model):
        sparse = getattr(module, "encoded", None) is not None and module.encoded[0].sparse
        out.append(_apply(module, RingEncoding(bits=bits, chunk=chunk, sparse=sparse)))
    return out


def prune_rings(model: nn.Module, keep) -> list[dict]:
    """Magnitude-prune the entries of every ring in place: the ``keep`` largest magnitudes of each ring survive
    (ties by position), the rest become exact zeros, and files store the ring sparse (mask + survivors, quantized
    if the ring was).

    Args:
        model: a converted model.
        keep: per ring, a count of surviving entries, a fraction of its entries, or a byte budget of float32
            entries (the size grammar of ``modelring.sizes``).

    Returns:
        One dict per ring, as ``quantize_rings``.
    """
    out = []
    for module in _rings(model):
        previous = getattr(module, "encoded", None)
        kept = resolve_ring_size(keep, module.weight.numel())
        mask = global_magnitude_masks({"ring": module.weight.detach().float().cpu()}, kept)["ring"]
        with torch.no_grad():
            module.weight.mul_(mask.to(module.weight.device, module.weight.dtype))
        encoding = RingEncoding(bits=previous[0].bits if previous else None,
                                chunk=previous[0].chunk if previous else DEFAULT_CHUNK, sparse=True)
        out.append(_apply(module, encoding))
    return out


def ring_encoding(module: nn.Module) -> RingEncoding | None:
    """The encoding a ring carries from ``quantize_rings`` / ``prune_rings`` (None: stored as float32)."""
    kept = getattr(module, "encoded", None)
    return kept[0] if kept is not None else None
