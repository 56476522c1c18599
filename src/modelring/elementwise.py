"""Generation with the element-wise wiring (version 2, ``block=1``): the paper's per-weight permutation.

The wiring is held as two int16 tables (2 bytes per virtual weight each) plus four int64 and one int32 per
512-weight chunk:
``fwd[j]`` = position of weight j inside its chunk's tile, with its sign in bit 15; ``inv[p]`` = the weight (inside
its chunk) that lands on tiled position p, with that weight's sign. Forward: K[j] = c_layer * sign_j *
ring[(base[j >> bits] + fwd[j]) mod N]. Backward: grad[k] = sum over copies c of sign * g[start[p >> bits] +
inv[p]] with p = c*N + k, summed in ascending c: a gather in both directions, no atomics, so gradients are bitwise
identical run to run and for any thread count. The compiled backward reads each 512-weight chunk's gradient
where autograd left it (only the few chunks that straddle two layers are copied), so nothing T-sized is
allocated or kept: 4 B per virtual weight are held between steps in cached mode, none in recompute mode (whose
forward computes each group's codes from the hash as it generates the group, and its backward each tile's).

Layers are generated in groups (``gradient_groups``), one autograd node each, all adding into one ring gradient;
a relay node created as a group's layer is entered makes the backward add that group's gradients into the ring's
as soon as they are complete, so the weight gradients are never all alive at once (``relay``). Each ring entry
then sums its copies in ascending order within a group, and the groups in the order the backward reaches them.

Measured on CIFAR ResNet-18 with the paper's ring (T = 11.16 M, N = 2.36 M, 2 threads; ``bench/floor.py``):
forward 2.1-2.5x and backward 2.8-3.4x a ``copy_`` of T float32 values (the variants tried are listed in
``kernels.py``). On CPU the fused loops are the compiled kernel in ``kernels.py``; elsewhere (CUDA, other dtypes,
no compiler) the plain-torch code below computes bitwise the same values.
"""
from __future__ import annotations

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
    tiles: torch.Tensor | None = None  # int32, one per chunk: its tile (the backward's, built lazily)
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
        tables += [self.tiles] if self.tiles is not None else []
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
            The recompute wiring builds neither: its forward computes each group's codes when it generates the
            group, its backward computes the inverse codes tile by tile in the kernel.
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
    if fwd is None and inv is None:  # the recompute wiring: its codes are computed group by group, when used
        pass
    elif device.type == "cpu" and kernels.library() is not None:  # the same tables, fused (bench/convert.py)
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


def _torch_forward(ring: torch.Tensor, wiring: ElementWiring, outs: list[torch.Tensor], first: int,
                   codes: torch.Tensor, codes_first: int) -> None:
    """The plain-torch forward of layers ``first``, ``first + 1``, ... into ``outs``, layer by layer
    (temporaries the size of one layer); ``codes`` are the forward codes of the weights from ``codes_first`` on."""
    size, starts, scales = ring.numel(), wiring.starts.tolist(), wiring.scales.tolist()
    for i, out in enumerate(outs, start=first):
        j = torch.arange(starts[i], starts[i + 1], dtype=torch.int64, device=ring.device)
        offset, negative = _decode(codes[starts[i] - codes_first:starts[i + 1] - codes_first])
        values = ring.index_select(0, (wiring.base[j >> wiring.bits] + offset) % size)
        values = torch.where(negative, -values, values)
        out.view(-1).copy_(values * torch.tensor(scales[i], dtype=ring.dtype, device=ring.device))


GROUP_MIN_WEIGHTS = 1 << 20  # a group's least size: bounds the per-group overhead (one autograd node, a few ops)
GROUP_RING_MULTIPLE = 8  # and at least this many times the ring: each group's reduction also reads and writes it


def gradient_groups(starts: list[int], size: int) -> list[tuple[int, int]]:
    """Runs of consecutive layers ``(first, stop)`` that are generated, and differentiated, by one autograd node.

    One node per ring would hold every generated weight's gradient until the ring's gradient is computed (4 B per
    virtual weight at the end of the backward, as much as the weights). Per group, a group's gradients are reduced
    into the ring's as soon as they are complete, and freed (``relay``). A group closes once it holds
    max(``GROUP_RING_MULTIPLE`` * N, ``GROUP_MIN_WEIGHTS``) weights: a group larger than the ring reaches every
    ring entry, so each group costs a pass over the ring besides its own weights. Measured on gpt_medium (85 M
    generated weights, 1% ring, AdamW, batch 1 x 256, 1 thread, shared machine): the ring gradient's kernel takes
    124 ms per step as one group, 178 ms as 12 groups (8 N), 198 ms as 18 (4 N); with 12 groups the gradients held
    at a time are about 30 MB instead of 340 MB, and the step's peak moves to the forward (generated weights plus
    activations), the same for 4 N and 8 N.
    """
    least, groups, first = max(GROUP_RING_MULTIPLE * size, GROUP_MIN_WEIGHTS), [], 0
    for i in range(len(starts) - 1):
        if starts[i + 1] - starts[first] >= least:
            groups.append((first, i + 1))
            first = i + 1
    if first < len(starts) - 1:
        groups.append((first, len(starts) - 1))
    return groups


class RingSink:
    """One ring gradient that the backward of every group of a generation adds into, in the order autograd runs
    them (each entry: ascending copies within a group); a generation node hands what it holds to autograd."""

    def __init__(self, size: int):
        self.size = size
        self.gradient: torch.Tensor | None = None

    def target(self, like: torch.Tensor, *, writes_all: bool = False) -> tuple[torch.Tensor, bool]:
        """The gradient to add into, and whether it is new (nothing waited). A new one is zeros, or uninitialised
        when the caller writes every entry of it (``writes_all``: the compiled kernel's fresh mode), which saves
        zeroing a ring-sized buffer and reading it back."""
        if self.gradient is None:
            make = torch.empty if writes_all else torch.zeros
            self.gradient = make(self.size, dtype=like.dtype, device=like.device)
            return self.gradient, True
        return self.gradient, False

    def take(self) -> torch.Tensor | None:
        gradient, self.gradient = self.gradient, None
        return gradient


def generate_elements(ring: torch.Tensor, wiring: ElementWiring, shapes,
                      groups: list | None = None) -> tuple[torch.Tensor, ...]:
    """Every layer's generated weight, one autograd node per group of layers (``gradient_groups``), all adding
    into one ``RingSink``; ``groups``, if given, receives ``(first, stop, sink)`` per group (for ``relay``)."""
    ring = ring.contiguous()
    sink, outs = RingSink(ring.numel()), []
    for first, stop in gradient_groups(wiring.starts.tolist(), ring.numel()):
        outs.extend(ElementGenerate.apply(ring, wiring, tuple(shapes[first:stop]), (first, stop), sink))
        if groups is not None:
            groups.append((first, stop, sink))
    return tuple(outs)


def relay(weights: list[torch.Tensor], wiring: ElementWiring, group: tuple[int, int],
          sink: RingSink) -> tuple[torch.Tensor, ...]:
    """The generated weights of one group, passed through a relay node created now (when their layer is entered).

    Why: autograd runs the ready node created last first, so the generation nodes, all created before the model's
    forward, would run only at the very end of the backward, holding every weight gradient until then. A relay is
    created among the layer's own operations; in the backward it runs as soon as the group's gradients are complete,
    adds them into the ring gradient waiting in ``sink`` and frees them.
    """
    return ElementRelay.apply(wiring, group, sink, *weights)


class ElementGenerate(torch.autograd.Function):
    """K_i = c_i * sign * ring[entry] per weight of the layers ``group``; the backward adds their gradients into the
    ring gradient in ``sink`` (through the inverse tables, or codes computed from the hash) and hands autograd what
    the sink holds, the relays' additions included."""

    @staticmethod
    def forward(ctx, ring, wiring: ElementWiring, shapes, group: tuple[int, int], sink: RingSink):
        outs = [torch.empty(shape, dtype=ring.dtype, device=ring.device) for shape in shapes]
        first, stop = group
        if wiring.fwd is not None:
            codes, codes_first = wiring.fwd, 0
        else:  # recompute mode: this group's codes only, freed when its weights are written
            q0, q1 = _group_chunks(wiring, group)
            codes, codes_first = _codes_of_weights(wiring, q0, q1, ring.device), q0 << wiring.bits
        if kernels.usable(ring):
            kernels.forward(ring, codes, wiring.base, wiring.bits, wiring.starts[first:stop + 1], outs,
                            wiring.scales[first:stop], fwd_first=codes_first)
        else:
            _torch_forward(ring, wiring, outs, first, codes, codes_first)
        ctx.wiring, ctx.group, ctx.sink = wiring, group, sink
        ctx.set_materialize_grads(False)  # a relayed weight's gradient arrives as None: the relay added it
        return tuple(outs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        add_group_gradient(ctx.wiring, ctx.group, grads, ctx.sink)
        return ctx.sink.take(), None, None, None, None


class ElementRelay(torch.autograd.Function):
    """Identity on one group's generated weights; its backward adds their gradients into the ring gradient at once
    (see ``relay``) and passes None on."""

    @staticmethod
    def forward(ctx, wiring: ElementWiring, group: tuple[int, int], sink: RingSink, *weights):
        ctx.wiring, ctx.group, ctx.sink = wiring, group, sink
        ctx.set_materialize_grads(False)
        return tuple(w.view_as(w) for w in weights)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        add_group_gradient(ctx.wiring, ctx.group, grads, ctx.sink)
        return (None, None, None, *([None] * len(grads)))


def add_group_gradient(wiring: ElementWiring, group: tuple[int, int], grads, sink: RingSink) -> None:
    """Add the ring gradient from the gradients of the layers ``group`` into ``sink`` (a layer whose gradient is
    None adds nothing; nothing happens when none has one)."""
    present = [g for g in grads if g is not None]
    if not present:
        return
    if kernels.usable(present[0]):
        out, fresh = sink.target(present[0], writes_all=True)
        _compiled_backward(wiring, group, grads, out, fresh=fresh)
    else:
        _torch_backward(wiring, group, grads, sink.target(present[0])[0])


def _group_chunks(wiring: ElementWiring, group: tuple[int, int]) -> tuple[int, int]:
    """The chunks ``[q0, q1)`` that hold weights of the layers ``group`` (the end ones may hold other layers' too)."""
    starts = wiring.starts
    return int(starts[group[0]]) >> wiring.bits, ((int(starts[group[1]]) - 1) >> wiring.bits) + 1


def _torch_backward(wiring: ElementWiring, group: tuple[int, int], grads, out: torch.Tensor) -> None:
    """The plain-torch backward of one group: every weight's contribution sign * c * g is added to its ring entry
    in ``out``, copy by copy in ascending order (the compiled kernel's sum order, so the bits are the same)."""
    present = next(g for g in grads if g is not None)
    bits, width, device, dtype = wiring.bits, 1 << wiring.bits, present.device, present.dtype
    first, stop = group
    starts, scales = wiring.starts.tolist(), wiring.scales.tolist()
    q0, q1 = _group_chunks(wiring, group)
    lo, hi = q0 * width, min(starts[-1], q1 * width)
    offset, negative = _decode(_codes_of_weights(wiring, q0, q1, device))
    j = torch.arange(lo, hi, dtype=torch.int64, device=device)
    inside = (j >= starts[first]) & (j < starts[stop])
    flat = torch.cat([(torch.zeros(starts[i + 1] - starts[i], dtype=dtype, device=device) if g is None
                       else g.reshape(-1) if scales[i] == 1.0 else g.reshape(-1) * scales[i])
                      for i, g in zip(range(first, stop), grads)])
    values = flat[j[inside] - starts[first]]
    values = torch.where(negative[inside], -values, values)
    tiles = _tile_of_chunk(wiring).to(device=device, dtype=torch.int64)
    position = tiles[j[inside] >> bits] * width + offset[inside]  # tiled position p
    order = torch.argsort(position)
    position, values = position[order], values[order]
    size = out.numel()
    copies = torch.unique_consecutive(position // size, return_counts=True)[1].tolist()
    for entries, part in zip(torch.split(position % size, copies), torch.split(values, copies)):
        out.index_add_(0, entries, part)  # distinct entries within a copy: no two writes collide


def _codes_of_weights(wiring: ElementWiring, q0: int, q1: int, device) -> torch.Tensor:
    """The forward codes (offset | sign << 15) of the weights of chunks ``[q0, q1)``: read from the table, or
    computed from the hash where the recompute wiring keeps none."""
    width, total = 1 << wiring.bits, int(wiring.starts[-1])
    lo, hi = q0 * width, min(total, q1 * width)
    if wiring.fwd is not None:
        return wiring.fwd[lo:hi]
    spec, full = wiring.spec, wiring.full_chunks
    key = spec.key(wr.PURPOSE_PERMUTATION)
    codes = torch.empty(hi - lo, dtype=torch.int16, device=device)
    count = max(0, min(q1, full) - q0)
    if count and device.type == "cpu" and kernels.library() is not None:
        kernels.element_tables(count, wiring.bits, wr.chunk_round_keys(key), permute=spec.permute,
                               reflect=spec.reflect, sign_key=spec.key(wr.PURPOSE_SIGNS), sigma=None,
                               fwd=codes, inv=None, first=q0)
    elif count:
        rho = wr.within_chunk_positions(q0, count, wiring.bits, key, permute=spec.permute, device=device)
        codes[:count * width] = _codes(rho.reshape(-1), _signs(spec, q0 * width, count * width, device))
    if q1 > full:  # the short last chunk
        tail = total - full * width
        rho = wr.tail_positions(tail, key, permute=spec.permute, device=device)
        codes[count * width:] = _codes(rho, _signs(spec, full * width, tail, device))
    return codes


def _compiled_backward(wiring: ElementWiring, group: tuple[int, int], grads, out: torch.Tensor, *,
                       fresh: bool = False) -> None:
    """Add the group's ring gradient into ``out`` (``fresh``: ``out`` is uninitialised and gets the gradient, as if
    it were zeros). The kernel reads every chunk's gradient where it lies (nothing group-sized is concatenated);
    only chunks that straddle layers are copied, with their layers' scales, into a side buffer of a few chunks. It
    visits the group's tiles only, in ascending order (it orders them itself: a sort here cost more)."""
    if wiring.chunks is None:
        wiring.chunks = chunk_sources(wiring.starts.tolist(), wiring.bits)
    first, stop = group
    chunks, width, scales = wiring.chunks, 1 << wiring.bits, wiring.scales.tolist()
    grads = [g.contiguous() if g is not None else None for g in grads]
    present = next(g for g in grads if g is not None)
    element, dtype = present.element_size(), present.dtype
    q0, q1 = _group_chunks(wiring, group)
    layer = chunks.layer[q0:q1].clamp(first, stop - 1)  # a chunk led by an earlier layer straddles: set below
    pointers = torch.tensor([g.data_ptr() if g is not None else 0 for g in grads], dtype=torch.int64)
    address = pointers[layer - first]
    address = torch.where(address != 0, address + chunks.offset[q0:q1] * element, 0)  # 0: no gradient, skipped
    scale = wiring.scales[layer]
    rows = [(row, int(q)) for row, q in enumerate(chunks.straddlers.tolist()) if q0 <= q < q1]
    side = torch.zeros(len(rows), width, dtype=dtype)
    local = {row: at for at, (row, _) in enumerate(rows)}
    for row, at, piece_layer, start, length in chunks.pieces:
        if row in local and first <= piece_layer < stop and grads[piece_layer - first] is not None:  # else: zero
            piece = grads[piece_layer - first].view(-1)[start:start + length]
            side[local[row], at:at + length] = piece if scales[piece_layer] == 1.0 else piece * scales[piece_layer]
    for at, (_, q) in enumerate(rows):
        address[q - q0] = side.data_ptr() + at * width * element
        scale[q - q0] = 1.0
    tiles = _tile_of_chunk(wiring)[q0:q1]
    if wiring.inv is not None:
        kernels.backward(tiles, address, scale, wiring.inv, wiring.bits, out, fresh=fresh)
    else:  # recompute: no T-sized table; the short last chunk's inverse codes (< 2**bits) come from here
        spec, full = wiring.spec, wiring.full_chunks
        kernels.backward_hashed(tiles, address, scale, spec.total, wiring.bits, full,
                                wr.chunk_round_keys(spec.key(wr.PURPOSE_PERMUTATION)), permute=spec.permute,
                                reflect=spec.reflect, sign_key=spec.key(wr.PURPOSE_SIGNS),
                                slot_chunk=wiring.start >> wiring.bits, tail=_tail_inverse(spec, full, wiring.bits),
                                out=out, fresh=fresh)


def _tile_of_chunk(wiring: ElementWiring) -> torch.Tensor:
    """The tile (slot) of every chunk: the inverse of ``start >> bits`` (int32, one per chunk, kept: chunks number
    fewer than 2**31 for any ring the spec allows)."""
    if wiring.tiles is None:
        slot_chunk = wiring.start >> wiring.bits
        wiring.tiles = torch.empty(slot_chunk.numel(), dtype=torch.int32, device=slot_chunk.device)
        wiring.tiles[slot_chunk] = torch.arange(slot_chunk.numel(), dtype=torch.int32, device=slot_chunk.device)
    return wiring.tiles


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
    """Bytes the element-wise wiring keeps between steps: the two int16 tables, four int64 and one int32 per
    chunk."""
    if spec.wiring == "recompute":
        return 0
    return spec.total * 4 + (4 * 8 + 4) * math.ceil(spec.total / (1 << wr.TILE_BITS))
