"""The block layout (``block > 1``, and every version-1 spec) and independent sampling, beside the element-wise
layout of ``elementwise.py``.

Block layout: each layer's weight is copied block by block out of the ring with one ``index_select`` on a
(N, block) view of overlapping windows of the ring (row s = entries s..s+block-1 mod N), then multiplied by a
per-weight coefficient c_i * (+-1) holding the layer scale and the reflection sign. Backward: each layer's gradient
is multiplied by the same coefficients into a flat workspace, gathered back to tiled-ring order through sigma^-1 (a
gather, never a scatter-add), and summed over the ceil(T/N) copies of the ring as a dense (copies, N) view. Both
T-sized workspaces are kept between steps. Held between steps per virtual weight: 8/block B of int32 block starts
and sigma^-1, 4 B of coefficients and 8 B of workspaces (12.5 B at block 16).

Independent sampling (ablation): every weight reads an independently hashed entry; the backward is an
``index_add_`` (the one scatter of the package, kept for the ablation only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from . import wiring as wr
from .spec import RingSpec


@dataclass
class Wiring:
    """The tensors generation needs on one device/dtype.

    Even sampling: ``index`` holds, per full block, the ring entry where it starts (sigma(b)*block mod N) and
    ``inverse`` holds sigma^-1, both int32. Independent sampling: ``index`` holds one entry per weight.
    ``coef`` holds c_i * sign_j per virtual weight in the ring's dtype.
    """

    layout: wr.BlockLayout
    index: torch.Tensor
    inverse: torch.Tensor | None
    coef: torch.Tensor
    workspace: list = field(default_factory=list)  # backward scratch, allocated on first use

    def tensors(self) -> list[torch.Tensor]:
        """The wiring tensors (what ranks compare, and what ``nbytes`` counts)."""
        return [self.index, self.coef] + ([self.inverse] if self.inverse is not None else [])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    @property
    def workspace_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.workspace)


def build_block_wiring(spec: RingSpec, device: torch.device, dtype: torch.dtype) -> Wiring:
    """The block (or independent-sampling) wiring of ``spec`` from the integer hash (no random generator)."""
    layout = wr.BlockLayout.of([s.numel for s in spec.segments], spec.block)
    coef = _coefficients(spec, device, dtype)
    if spec.sampling == "independent":
        index = wr.independent_indices(spec.total, spec.size, spec.key(wr.PURPOSE_INDEPENDENT), device=device)
        return Wiring(layout, index.to(torch.int32), None, coef)
    sigma = wr.block_permutation(layout.num_blocks, spec.key(wr.PURPOSE_PERMUTATION), permute=spec.permute,
                                 device=device)
    starts = (sigma * spec.block) % spec.size
    inverse = wr.inverse_permutation(sigma)
    return Wiring(layout, starts.to(torch.int32), inverse.to(torch.int32), coef)


_CHUNK = 1 << 20  # bounds the int64 temporaries of the hash while building the wiring


def _coefficients(spec: RingSpec, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """c_i * s_j for every virtual weight: layer scale times the reflection sign (built chunk by chunk)."""
    coef = torch.empty(spec.total, dtype=dtype, device=device)
    for seg in spec.segments:
        coef[seg.offset:seg.offset + seg.numel] = seg.scale
    if spec.reflect:
        key = spec.key(wr.PURPOSE_SIGNS)
        for start in range(0, spec.total, _CHUNK):
            part = coef[start:start + _CHUNK]
            part[wr.sign_bits(start, part.numel(), key, device=device)] *= -1
    return coef


def _ring_windows(ring: torch.Tensor, block: int) -> torch.Tensor:
    """(N, block) view whose row s is ring entries s, s+1, ... s+block-1 (mod N): every block's source."""
    size = ring.numel()
    extended = torch.cat([ring] + [ring] * ((block - 1) // size) + [ring[: (block - 1) % size]])
    return extended.unfold(0, block, 1)[:size]


def _workspace(wiring: Wiring, size: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat gradient buffer (T) and tiled buffer (copies * N, zero past T), reused across backward passes."""
    total = wiring.coef.numel()
    copies = -(-total // size)
    ws = wiring.workspace
    if not ws or ws[0].dtype != like.dtype or ws[0].device != like.device or ws[1].numel() != copies * size:
        tiled = torch.zeros(copies * size, dtype=like.dtype, device=like.device)
        ws[:] = [torch.empty(total, dtype=like.dtype, device=like.device), tiled]
    return ws[0], ws[1]


class BlockGenerate(torch.autograd.Function):
    """K_i = coef * ring[window rows]; backward gathers through sigma^-1 and sums the ring's copies."""

    @staticmethod
    def forward(ctx, ring, wiring, shapes):
        size, block, layout = ring.numel(), wiring.layout.block, wiring.layout
        windows = _ring_windows(ring, block)
        tail_base = layout.num_blocks * block
        outputs = []
        for (offset, first, count, tail_start, tail), shape in zip(layout.layers, shapes):
            out = torch.empty(count * block + tail, dtype=ring.dtype, device=ring.device)
            rows = out[:count * block].view(-1, block)
            torch.index_select(windows, 0, wiring.index[first:first + count], out=rows)
            if tail:  # tails keep their order after all blocks in the tiled ring
                out[count * block:] = windows[(tail_base + tail_start) % size, :tail]
            outputs.append(out.mul_(wiring.coef[offset:offset + out.numel()]).view(shape))
        ctx.wiring, ctx.size = wiring, size
        ctx.set_materialize_grads(True)
        return tuple(outputs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        wiring, size = ctx.wiring, ctx.size
        layout, block, coef = wiring.layout, wiring.layout.block, wiring.coef
        flat, tiled = _workspace(wiring, size, grads[0])
        main = layout.num_blocks * block
        for (offset, first, count, tail_start, tail), grad in zip(layout.layers, grads):
            grad, n = grad.reshape(-1), count * block
            torch.mul(grad[:n], coef[offset:offset + n], out=flat[first * block:first * block + n])
            if tail:
                torch.mul(grad[n:], coef[offset + n:offset + n + tail],
                          out=flat[main + tail_start:main + tail_start + tail])
        torch.index_select(flat[:main].view(-1, block), 0, wiring.inverse, out=tiled[:main].view(-1, block))
        tiled[main:flat.numel()] = flat[main:]
        copies = tiled.numel() // size
        grad_ring = tiled.view(copies, size).sum(0) if copies > 1 else tiled.clone()
        return grad_ring, None, None


class IndependentGenerate(torch.autograd.Function):
    """K_i = coef * ring[index] with independently drawn entries (ablation; index_add_ backward)."""

    @staticmethod
    def forward(ctx, ring, wiring, shapes):
        ctx.wiring, ctx.size = wiring, ring.numel()
        ctx.set_materialize_grads(True)
        flat = ring.index_select(0, wiring.index).mul_(wiring.coef)
        return tuple(p.view(shape) for p, shape in zip(flat.split([math.prod(s) for s in shapes]), shapes))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        wiring = ctx.wiring
        scaled = torch.cat([g.reshape(-1) for g in grads]).mul_(wiring.coef)
        grad = torch.zeros(ctx.size, dtype=scaled.dtype, device=scaled.device)
        return grad.index_add_(0, wiring.index, scaled), None, None



def generate_blocks(ring: torch.Tensor, spec: RingSpec, wiring: Wiring, shapes) -> tuple[torch.Tensor, ...]:
    """The generated tensors of a block-layout or independent-sampling ring, differentiable w.r.t. ``ring``."""
    function = IndependentGenerate if spec.sampling == "independent" else BlockGenerate
    return function.apply(ring, wiring, shapes)


def block_held_bytes(spec: RingSpec, element_size: int = 4) -> int:
    """Bytes the cached wiring of a block-layout or independent-sampling ring keeps between training steps."""
    if spec.sampling == "independent":  # int32 index and coefficient per weight; the backward keeps nothing
        return spec.total * (4 + element_size)
    layout = wr.BlockLayout.of([s.numel for s in spec.segments], spec.block)
    copies = -(-spec.total // spec.size)
    # int32 block starts and sigma^-1, a coefficient per weight, the flat and the tiled backward workspaces
    return 8 * layout.num_blocks + element_size * (2 * spec.total + copies * spec.size)
