"""Wiring: which ring entry, with which sign, feeds each virtual weight.

Recurrent Parameter Generators (Wang et al., arXiv 2107.07110) generate every kernel K_i = R_i W from one
trainable vector W (the model ring, N entries) through fixed matrices R_i = c_i D_i S_i: S_i selects ring
entries, D_i flips signs at random ("reflection"), c_i is a per-layer scale. This module computes S and D.

Everything here is integer arithmetic on int64 tensors (or Python ints) whose intermediates stay below
2**63, so the wiring is bit-identical on any machine, device and torch version: no random generator stream is
ever used. Changing any function's output is a breaking change: bump ``WIRING_VERSION`` and the golden files
in ``tests/expect``.

Block layout (version 1, and ``block > 1`` in version 2). The T virtual weights of one ring are numbered
j = 0..T-1, layer after layer. Each layer is cut into blocks of ``block`` consecutive weights plus a tail of
(size mod block) weights. Over the whole ring, the nb full blocks are numbered in order, and so are the tail
weights. A keyed bijection sigma on [0, nb) puts full block b at position sigma(b)*block of the *tiled ring* (the
ring repeated ceil(T/N) times); the tail weights take positions nb*block, nb*block+1, ... in order. So pi, virtual
weight -> tiled position, is a bijection on [0, T) and weight j reads ring entry pi(j) mod N: every entry is read
floor(T/N) or ceil(T/N) times ("even sampling"). Only the marginals match the paper's element-wise permutation:
inside a block, weight j+1 reads the entry after weight j's, so with ``block=16`` most 3x3 kernels are
sign-flipped near-copies of a kernel elsewhere (see ``diagnose.wiring_report``). Version 1 with ``block=1`` is a
plain keyed permutation of [0, T).

Element-wise layout (version 2, ``block=1``; the default). The weights are cut into chunks of B = 2**TILE_BITS
consecutive weights (the last chunk may be shorter). A keyed bijection sigma puts each full chunk q on the tile
sigma(q) of the tiled ring (positions sigma(q)*B .. sigma(q)*B + B - 1), the short last chunk on the last
positions, and inside its tile every chunk is permuted element by element by its own keyed bijection rho_q
(a Feistel network on B = 2**bits values needs no cycle walking). pi is again a bijection on [0, T): the same even
sampling, and neighbouring weights read neighbouring entries only by chance (about 1/B). Only the distance of the reads is bounded:
a chunk's reads stay inside one B-entry window, which keeps generation a cache-resident gather in both directions
(forward: ring -> weights; backward: weights -> ring, through the inverse). Signs are per weight, as in version 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .keys import derive_key, hash32

WIRING_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
# what a key is derived for (RingSpec.key): one number per use, so the uses never share a hash stream
PURPOSE_PERMUTATION, PURPOSE_SIGNS, PURPOSE_INIT, PURPOSE_INDEPENDENT = 1, 2, 3, 4
# element-wise layout: 512-weight chunks, 2 KiB windows in float32. Measured (2 threads, CIFAR ResNet-18 sizes,
# interleaved with copies): 9 bits ~5-10% faster than 10, 20-30% faster than 12 or 13 in both directions
TILE_BITS = 9

_FEISTEL_ROUNDS = 4


def _feistel(x: torch.Tensor, bits: int, round_keys: list[int]) -> torch.Tensor:
    """One pass of an unbalanced Feistel network: a bijection on [0, 2**bits)."""
    lo_width = bits // 2
    for key in round_keys:
        hi_width = bits - lo_width
        hi, lo = x >> lo_width, x & ((1 << lo_width) - 1)
        hi = hi ^ (hash32(lo ^ key) & ((1 << hi_width) - 1))
        x = (lo << hi_width) | hi  # the untouched half moves to the top; widths swap for the next round
        lo_width = hi_width
    return x


def keyed_permutation(n: int, key: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """A keyed pseudo-random bijection on [0, n), as an int64 tensor p with p[i] = pi(i).

    A Feistel network permutes [0, 2**bits) with 2**bits < 2n; values that land outside [0, n) are mapped
    again until they fall inside ("cycle walking"), which keeps the result a bijection of [0, n).
    """
    if n < 0:
        raise ValueError(f"permutation size must be >= 0, got {n}")
    if n <= 1:
        return torch.arange(n, dtype=torch.int64, device=device)
    bits = max(2, math.ceil(math.log2(n)))
    round_keys = [derive_key(key, 0xFE15, r) for r in range(_FEISTEL_ROUNDS)]
    out = _feistel(torch.arange(n, dtype=torch.int64, device=device), bits, round_keys)
    outside = (out >= n).nonzero().squeeze(1)
    while outside.numel():
        walked = _feistel(out[outside], bits, round_keys)
        out[outside] = walked
        outside = outside[walked >= n]
    return out


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    """The inverse of a permutation tensor: inv[perm[i]] = i."""
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), dtype=perm.dtype, device=perm.device)
    return inv


def sign_bits(start: int, count: int, key: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool tensor, True where virtual weight j (start <= j < start+count) gets a minus sign."""
    j = torch.arange(start, start + count, dtype=torch.int64, device=device)
    return (hash32(j ^ key) >> 31).bool()


def independent_indices(count: int, ring_size: int, key: int, *, device: torch.device | str = "cpu"):
    """Ring entry for each virtual weight drawn independently and uniformly (the ablation of even sampling)."""
    j = torch.arange(count, dtype=torch.int64, device=device)
    return (hash32(j ^ key) * ring_size) >> 32  # multiply-shift: uniform on [0, ring_size), no modulo bias


def uniform01(count: int, key: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """float64 values in (0, 1), one per index, from the integer hash."""
    j = torch.arange(count, dtype=torch.int64, device=device)
    return (hash32(j ^ key).double() + 0.5) / 2.0**32


def normal_init(count: int, key: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal float64 values from the integer hash (Box-Muller), identical on every machine."""
    u1 = uniform01(count, derive_key(key, 1), device=device)
    u2 = uniform01(count, derive_key(key, 2), device=device)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)


def block_permutation(num_blocks: int, key: int, *, permute: bool = True,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """sigma: the tiled-ring block slot of each full block of virtual weights (int64)."""
    if not permute:
        return torch.arange(num_blocks, dtype=torch.int64, device=device)
    return keyed_permutation(num_blocks, key, device=device)


@dataclass(frozen=True)
class BlockLayout:
    """Where each layer's blocks and tail sit: per-layer element offset, first block, block count, first tail
    position (counted from nb*block) and tail length."""

    block: int
    num_blocks: int
    layers: tuple[tuple[int, int, int, int, int], ...]

    @classmethod
    def of(cls, sizes: list[int], block: int) -> "BlockLayout":
        if block < 1:
            raise ValueError(f"block must be a positive integer, got {block}")
        layers, offset, blocks, tails = [], 0, 0, 0
        for size in sizes:
            count, tail = divmod(size, block)
            layers.append((offset, blocks, count, tails, tail))
            offset, blocks, tails = offset + size, blocks + count, tails + tail
        return cls(block, blocks, tuple(layers))


def tiled_positions(sizes: list[int], block: int, key: int, *, permute: bool = True) -> torch.Tensor:
    """pi(j) for every virtual weight j: its position in the tiled ring (int64). For tests and tools."""
    layout = BlockLayout.of(sizes, block)
    sigma = block_permutation(layout.num_blocks, key, permute=permute)
    within = torch.arange(block)
    parts = []
    for _, first, count, tail_start, tail in layout.layers:
        parts.append((sigma[first:first + count, None] * block + within).reshape(-1))
        parts.append(layout.num_blocks * block + tail_start + torch.arange(tail))
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)


def chunk_slots(num_chunks: int, key: int, *, permute: bool = True,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """sigma of the element-wise layout: the tile of each full chunk (int64)."""
    return block_permutation(num_chunks, derive_key(key, 0xC1), permute=permute, device=device)


def within_chunk_positions(first: int, count: int, bits: int, key: int, *, permute: bool = True,
                           device: torch.device | str = "cpu") -> torch.Tensor:
    """rho_q(r) for the full chunks q = first .. first+count-1: a (count, 2**bits) int64 tensor whose row i is a
    keyed permutation of [0, 2**bits), each chunk with its own key."""
    width = 1 << bits
    r = torch.arange(width, dtype=torch.int64, device=device).expand(count, width)
    if not permute or bits < 2:  # a Feistel network needs two halves
        return r.clone()
    q = torch.arange(first, first + count, dtype=torch.int64, device=device)[:, None]
    return _feistel(r, bits, [hash32(q ^ k) for k in chunk_round_keys(key)])


def chunk_round_keys(key: int) -> list[int]:
    """The keys K_r of rho_q's Feistel rounds; chunk q's round r uses hash32(q ^ K_r)."""
    return [derive_key(key, 0xC2, round_) for round_ in range(_FEISTEL_ROUNDS)]


def tail_positions(length: int, key: int, *, permute: bool = True,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """rho of the short last chunk (length < 2**bits): a keyed permutation of [0, length)."""
    return block_permutation(length, derive_key(key, 0xC3), permute=permute, device=device)


def element_positions(total: int, key: int, *, permute: bool = True, bits: int = TILE_BITS) -> torch.Tensor:
    """pi(j) of the element-wise layout for every virtual weight j (int64). For tests and tools."""
    width = 1 << bits
    full, tail = divmod(total, width)
    sigma = chunk_slots(full, key, permute=permute)
    rho = within_chunk_positions(0, full, bits, key, permute=permute)
    parts = [(sigma[:, None] * width + rho).reshape(-1), full * width + tail_positions(tail, key, permute=permute)]
    return torch.cat(parts)


def entries_and_signs(spec) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference wiring of one ring: the entry (int64) each of its T virtual weights reads and whether it is
    negated (bool), from this module's functions alone, never from the tables generation builds. What the tests
    check generation against, and what ``diagnose.wiring_report`` reads.

    Args:
        spec: a ``modelring.spec.RingSpec`` (read for its size, total, layout options and keys).

    Returns:
        (entries, negative), both of length T.
    """
    if spec.sampling == "independent":
        entries = independent_indices(spec.total, spec.size, spec.key(PURPOSE_INDEPENDENT))
    elif spec.element_wise:
        entries = element_positions(spec.total, spec.key(PURPOSE_PERMUTATION), permute=spec.permute) % spec.size
    else:
        sizes = [s.numel for s in spec.segments]
        entries = tiled_positions(sizes, spec.block, spec.key(PURPOSE_PERMUTATION), permute=spec.permute) % spec.size
    negative = (sign_bits(0, spec.total, spec.key(PURPOSE_SIGNS)) if spec.reflect
                else torch.zeros(spec.total, dtype=torch.bool))
    return entries, negative
