"""Generation with the element-wise wiring (version 2, ``block=1``): the paper's per-weight permutation.

The wiring is held as two int16 tables (2 bytes per virtual weight each) plus four int64 per 512-weight chunk:
``fwd[j]`` = position of weight j inside its chunk's tile, with its sign in bit 15; ``inv[p]`` = the weight (inside
its chunk) that lands on tiled position p, with that weight's sign. Forward: K[j] = c_layer * sign_j *
ring[(base[j >> bits] + fwd[j]) mod N]. Backward: grad[k] = sum over copies c of sign * g[start[p >> bits] +
inv[p]] with p = c*N + k, summed in ascending c: a gather in both directions, no atomics, so gradients are bitwise
identical run to run and for any thread count. The compiled backward reads each 512-weight chunk's gradient
where autograd left it (only the few chunks that straddle two layers are copied), so nothing T-sized is
allocated or kept: 4 B per virtual weight are held between steps in cached mode, none in recompute mode.

Measured on CIFAR ResNet-18 with the paper's ring (T = 11.16 M, N = 2.36 M, 2 threads; ``bench/floor.py``):
forward 2.1-2.5x and backward 2.8-3.4x a ``copy_`` of T float32 values (the variants tried are listed in
``kernels.py``). On CPU the fused loops are the compiled kernel in ``kernels.py``; elsewhere (CUDA, other dtypes,
no compiler) the plain-torch code below computes bitwise the same values.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from . import kernels
from . import wiring as wr

_BATCH_CHUNKS = 16  # chunks per step while building tables: bounds the int64 temporaries (64 Ki values, 0.5 MiB)


@dataclass
class ElementWiring:
    """The element-wise wiring of one ring on one device (see the module docstring for the tables)."""

    bits: int
    fwd: torch.Tensor | None  # int16, T (None: not built, or dropped after the forward in recompute mode)
    inv: torch.Tensor | None  # int16, T (None: built when the backward needs it, in recompute mode)
    base: torch.Tensor     # int64, one per chunk: ring entry where its tile starts
    start: torch.Tensor    # int64, one per tile: first weight of the chunk on it
    starts: torch.Tensor   # int64, L + 1 layer offsets (CPU)
    scales: torch.Tensor   # float64, L layer scales c_i (CPU)
    chunks: "ChunkSources | None" = None  # where each chunk's gradient lives (compiled backward, built lazily)
    spec: object = None  # what the missing table is rebuilt from (recompute mode)

    workspace_bytes = 0  # nothing is kept between steps besides the tables

    @property
    def full_chunks(self) -> int:
        """The number of full chunks (2**bits weights each) of the ring's T weights."""
        return int(self.starts[-1]) >> self.bits

    def tensors(self) -> list[torch.Tensor]:
        """The wiring tensors built (what ranks compare); ``nbytes`` adds the lazily built chunk tables."""
        return [t for t in (self.fwd, self.inv, self.base, self.start) if t is not None]

    @property
    def nbytes(self) -> int:
        tables = self.tensors() + ([self.chunks.layer, self.chunks.offset] if self.chunks is not None else [])
        return sum(t.numel() * t.element_size() for t in tables)


@dataclass
class ChunkSources:
    """Per chunk: the layer its first weight is in and its offset there; the chunks that straddle layers are
    copied into a small side buffer instead, piece by piece: (row, at, layer, from, length)."""

    layer: torch.Tensor    # int64, one per chunk
    offset: torch.Tensor   # int64, one per chunk
    straddlers: torch.Tensor  # int64 chunk numbers
    pieces: list[tuple[int, int, int, int, int]]


def chunk_sources(starts: list[int], bits: int) -> ChunkSources:
    """Map chunks of 2**bits weights to layers, and list the pieces of the chunks that straddle layers."""
    total, width = starts[-1], 1 << bits
    first = torch.arange(0, total, width, dtype=torch.int64)
    bounds = torch.tensor(starts, dtype=torch.int64)
    layer = torch.searchsorted(bounds, first, right=True) - 1
    last = torch.searchsorted(bounds, torch.clamp(first + width, max=total) - 1, right=True) - 1
    straddlers = (last != layer).nonzero().flatten()
    pieces = []
    for row, q in enumerate(straddlers.tolist()):
        lo, hi = q * width, min(total, (q + 1) * width)
        for i in range(int(layer[q]), int(last[q]) + 1):
            a, b = max(lo, starts[i]), min(hi, starts[i + 1])
            if b > a:
                pieces.append((row, a - lo, i, a - starts[i], b - a))
    return ChunkSources(layer, first - bounds[layer], straddlers, pieces)


def _codes(offsets: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """offset | sign << 15 as int16 (offsets < 2**15)."""
    return (offsets - negative.to(torch.int64) * (1 << 15)).to(torch.int16)


def build_element_wiring(spec, device: torch.device, *, tables: tuple[str, ...] = ("fwd", "inv")) -> ElementWiring:
    """The int16 tables and chunk tables of an element-wise spec, from the integer hash.

    Args:
        spec: the ring's spec.
        device: where the tables live.
        tables: which T-sized tables to build: ``fwd`` (the forward reads it), ``inv`` (the backward reads it).
            The recompute wiring builds one at a time, so that no more than 2 B per weight exist at once.
    """
    bits, total = wr.TILE_BITS, spec.total
    width = 1 << bits
    full, tail = divmod(total, width)
    key = spec.key(wr.PURPOSE_PERMUTATION)
    sigma = wr.chunk_slots(full, key, permute=spec.permute, device=device)
    chunks = full + (1 if tail else 0)
    base = torch.empty(chunks, dtype=torch.int64, device=device)
    start = torch.empty(chunks, dtype=torch.int64, device=device)
    base[:full] = sigma * width % spec.size  # ring entry where each chunk's tile starts
    start[sigma] = torch.arange(full, dtype=torch.int64, device=device) * width
    fwd = torch.empty(total, dtype=torch.int16, device=device) if "fwd" in tables else None
    inv = torch.empty(total, dtype=torch.int16, device=device) if "inv" in tables else None
    if device.type == "cpu" and kernels.library() is not None:  # the same tables, fused (bench/convert.py)
        kernels.element_tables(full, bits, wr.chunk_round_keys(key), permute=spec.permute, reflect=spec.reflect,
                               sign_key=spec.key(wr.PURPOSE_SIGNS), sigma=sigma, fwd=fwd, inv=inv)
    else:
        _torch_tables(spec, full, key, sigma, fwd, inv, device)
    if tail:
        rho = wr.tail_positions(tail, key, permute=spec.permute, device=device)
        negative = _signs(spec, full * width, tail, device)
        base[full], start[full] = full * width % spec.size, full * width
        if fwd is not None:
            fwd[full * width:] = _codes(rho, negative)
        if inv is not None:
            inv[full * width:][rho] = _codes(torch.arange(tail, device=device), negative)
    starts = torch.tensor([s.offset for s in spec.segments] + [total], dtype=torch.int64)
    scales = torch.tensor([s.scale for s in spec.segments], dtype=torch.float64)
    return ElementWiring(bits, fwd, inv, base, start, starts, scales, spec=spec)


def _torch_tables(spec, full: int, key: int, sigma: torch.Tensor, fwd: torch.Tensor | None,
                  inv: torch.Tensor | None, device) -> None:
    """The int16 tables of the full chunks with torch operations, ``_BATCH_CHUNKS`` chunks at a time (the path
    without the compiled kernel, and the reference it is tested against); a table given as None is skipped."""
    bits = wr.TILE_BITS
    width = 1 << bits
    inv_rows = inv[:full * width].view(full, width) if inv is not None else None
    for first in range(0, full, _BATCH_CHUNKS):
        count = min(_BATCH_CHUNKS, full - first)
        rho = wr.within_chunk_positions(first, count, bits, key, permute=spec.permute, device=device)
        within = torch.arange(width, dtype=torch.int64, device=device).expand(count, width)
        negative = _signs(spec, first * width, count * width, device).view(count, width)
        if fwd is not None:
            fwd[first * width:(first + count) * width] = _codes(rho, negative).view(-1)
        if inv_rows is not None:
            rows = torch.empty(count, width, dtype=torch.int16, device=device)
            inv_rows[sigma[first:first + count]] = rows.scatter_(1, rho, _codes(within, negative))


def _signs(spec, first: int, count: int, device) -> torch.Tensor:
    if not spec.reflect:
        return torch.zeros(count, dtype=torch.bool, device=device)
    return wr.sign_bits(first, count, spec.key(wr.PURPOSE_SIGNS), device=device)


def _decode(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(offset as int64, negative as bool) of int16 codes."""
    return codes.to(torch.int64) & 0x7FFF, codes < 0


def _torch_forward(ring: torch.Tensor, wiring: ElementWiring, outs: list[torch.Tensor]) -> None:
    """The plain-torch forward, layer by layer (temporaries the size of one layer)."""
    size, starts = ring.numel(), wiring.starts.tolist()
    for i, out in enumerate(outs):
        j = torch.arange(starts[i], starts[i + 1], dtype=torch.int64, device=ring.device)
        offset, negative = _decode(wiring.fwd[starts[i]:starts[i + 1]])
        values = ring.index_select(0, (wiring.base[j >> wiring.bits] + offset) % size)
        values = torch.where(negative, -values, values)
        out.view(-1).copy_(values * torch.tensor(wiring.scales[i].item(), dtype=ring.dtype, device=ring.device))


def _torch_backward(flat: torch.Tensor, wiring: ElementWiring, size: int) -> torch.Tensor:
    """The plain-torch backward: one gather per copy of the ring, added in ascending copy order."""
    total, grad = flat.numel(), torch.zeros(size, dtype=flat.dtype, device=flat.device)
    for first in range(0, total, size):
        p = torch.arange(first, min(first + size, total), dtype=torch.int64, device=flat.device)
        offset, negative = _decode(wiring.inv[first:first + p.numel()])
        values = flat[wiring.start[p >> wiring.bits] + offset]
        grad[:p.numel()] += torch.where(negative, -values, values)
    return grad


class ElementGenerate(torch.autograd.Function):
    """K_i = c_i * sign * ring[entry] per weight; backward gathers through the inverse tables."""

    @staticmethod
    def forward(ctx, ring, wiring: ElementWiring, shapes):
        outs = [torch.empty(shape, dtype=ring.dtype, device=ring.device) for shape in shapes]
        ring = ring.contiguous()
        if kernels.usable(ring):
            kernels.forward(ring, wiring.fwd, wiring.base, wiring.bits, wiring.starts, outs, wiring.scales)
        else:
            _torch_forward(ring, wiring, outs)
        if wiring.inv is None:  # recompute mode: the backward builds its own table; nothing T-sized waits for it
            wiring.fwd = None
        ctx.wiring, ctx.size = wiring, ring.numel()
        ctx.set_materialize_grads(True)
        return tuple(outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        wiring, size = ctx.wiring, ctx.size
        if kernels.usable(grads[0]):  # recompute mode: the kernel computes the inverse codes tile by tile
            return _compiled_backward(wiring, grads, size), None, None, None
        if wiring.inv is None:  # recompute mode: the inverse table lives only while this backward runs
            built = build_element_wiring(wiring.spec, wiring.base.device, tables=("inv",))
            wiring = dataclasses.replace(wiring, inv=built.inv)
        starts, scales = wiring.starts.tolist(), wiring.scales.tolist()
        flat = torch.empty(starts[-1], dtype=grads[0].dtype, device=grads[0].device)
        for i, grad in enumerate(grads):  # the layer scale is applied while copying into one flat buffer
            piece = flat[starts[i]:starts[i + 1]].view(grad.shape)
            piece.copy_(grad) if scales[i] == 1.0 else torch.mul(grad, scales[i], out=piece)
        return _torch_backward(flat, wiring, size), None, None, None


def _compiled_backward(wiring: ElementWiring, grads, size: int) -> torch.Tensor:
    """The kernel reads every chunk's gradient where it lies (no T-sized concatenation); only chunks that
    straddle layers are copied, with their layers' scales, into a side buffer of a few chunks."""
    if wiring.chunks is None:
        wiring.chunks = chunk_sources(wiring.starts.tolist(), wiring.bits)
    chunks, width, scales = wiring.chunks, 1 << wiring.bits, wiring.scales.tolist()
    grads = [g.contiguous() for g in grads]
    element = grads[0].element_size()
    address = torch.tensor([g.data_ptr() for g in grads], dtype=torch.int64)[chunks.layer] + chunks.offset * element
    scale = wiring.scales[chunks.layer]
    side = torch.empty(len(chunks.straddlers), width, dtype=grads[0].dtype)
    for row, at, layer, start, length in chunks.pieces:
        piece = grads[layer].view(-1)[start:start + length]
        side[row, at:at + length] = piece if scales[layer] == 1.0 else piece * scales[layer]
    if len(chunks.straddlers):
        address[chunks.straddlers] = side.data_ptr() + torch.arange(len(side), dtype=torch.int64) * width * element
        scale[chunks.straddlers] = 1.0
    slot_chunk = wiring.start >> wiring.bits
    grad_ring = torch.empty(size, dtype=grads[0].dtype)
    if wiring.inv is not None:
        kernels.backward(address[slot_chunk], scale[slot_chunk], wiring.inv, wiring.bits, grad_ring)
    else:  # recompute: no T-sized table; the short last chunk's inverse codes (< 2**bits) come from here
        spec, full = wiring.spec, wiring.full_chunks
        kernels.backward_hashed(address[slot_chunk], scale[slot_chunk], spec.total, wiring.bits, full,
                                wr.chunk_round_keys(spec.key(wr.PURPOSE_PERMUTATION)), permute=spec.permute,
                                reflect=spec.reflect, sign_key=spec.key(wr.PURPOSE_SIGNS), slot_chunk=slot_chunk,
                                tail=_tail_inverse(spec, full, wiring.bits), out=grad_ring)
    return grad_ring


def _tail_inverse(spec, full: int, bits: int) -> torch.Tensor:
    """The inverse codes of the short last chunk's tile (int16; at least one entry so the pointer is valid)."""
    width = 1 << bits
    tail = spec.total - full * width
    codes = torch.zeros(max(tail, 1), dtype=torch.int16)
    if tail:
        rho = wr.tail_positions(tail, spec.key(wr.PURPOSE_PERMUTATION), permute=spec.permute)
        codes[rho] = _codes(torch.arange(tail), _signs(spec, full * width, tail, "cpu"))
    return codes


def held_bytes(spec) -> int:
    """Bytes the element-wise wiring keeps between steps: the two int16 tables and four int64 per chunk."""
    if spec.wiring == "recompute":
        return 0
    return spec.total * 4 + 4 * 8 * math.ceil(spec.total / (1 << wr.TILE_BITS))
