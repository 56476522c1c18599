"""See the wiring: how evenly a ring is used and how much structure its layout leaves between weights.

``wiring_report(model)`` gives, per ring: the use count of its entries (min/max: even sampling means
floor(T/N)..ceil(T/N)), the sign balance, the fraction of neighbouring weights of a layer that read neighbouring
ring entries, and the fraction of convolution kernels (the k = kh*kw weights of one input-output channel pair)
that share most of their entries (at least ceil(3k/4): 7 of 9 for 3x3) with another kernel of the ring. The last
two are what the paper's destructive weight sharing is about: with the element-wise layout both are ~0, with
``block=16`` most kernels are sign-flipped near-copies of another kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import wiring as wr
from .bank import get_state
from .compat import moved_names
from .spec import RingSpec

__getattr__ = moved_names(__name__, {"entries_and_signs": "modelring.wiring"})  # the wiring's reference

_SAMPLE_KERNELS = 4096  # kernels checked per kernel size (evenly spaced): bounds time on large rings


@dataclass(frozen=True)
class RingWiringReport:
    """Structure of one ring's wiring (see the module docstring)."""

    name: str
    size: int
    total: int
    layout: str
    use_min: int
    use_max: int
    negative_fraction: float
    adjacent_fraction: float
    kernels_checked: int
    kernels_sharing_most: int

    @property
    def kernel_sharing_fraction(self) -> float:
        return self.kernels_sharing_most / self.kernels_checked if self.kernels_checked else 0.0

    def __str__(self) -> str:
        kernels = (f"{self.kernel_sharing_fraction:.3f} of {self.kernels_checked:,} kernels share most entries "
                   "with another kernel" if self.kernels_checked else "no conv kernels")
        even = f"{self.total // self.size}..{-(-self.total // self.size)}"
        return (f"{self.name}: {self.layout}, N={self.size:,} T={self.total:,}; entry use {self.use_min}.."
                f"{self.use_max} (even: {even}); negative {self.negative_fraction:.3f}; next weight reads next entry "
                f"{self.adjacent_fraction:.3f}; {kernels}")


def _layout_name(spec: RingSpec) -> str:
    if spec.sampling == "independent":
        return "independent sampling"
    name = "element-wise" if spec.block == 1 else f"blocks of {spec.block}"
    name += "" if spec.permute else ", not permuted"
    return f"{name} (wiring v{spec.wiring_version})"


def adjacent_fraction(spec: RingSpec, entries: torch.Tensor) -> float:
    """Fraction of pairs of neighbouring weights of one layer (j, j+1) whose entries are neighbours too."""
    hits = pairs = 0
    for seg in spec.segments:
        e = entries[seg.offset:seg.offset + seg.numel]
        hits += int(((e[:-1] + 1) % spec.size == e[1:]).sum())
        pairs += max(0, seg.numel - 1)
    return hits / pairs if pairs else 0.0


def kernels_sharing_most(spec: RingSpec, entries: torch.Tensor) -> tuple[int, int]:
    """(checked, sharing): conv kernels (k >= 4 weights) checked, and those sharing at least ceil(3k/4) of
    their entries with another kernel of the same size in this ring."""
    groups: dict[int, list[torch.Tensor]] = {}
    for seg in spec.segments:
        k = math.prod(seg.shape[2:])
        if len(seg.shape) >= 3 and k >= 4:
            groups.setdefault(k, []).append(entries[seg.offset:seg.offset + seg.numel].view(-1, k))
    checked = sharing = 0
    for k, parts in groups.items():
        kernels = torch.cat(parts)
        sample = torch.unique(torch.linspace(0, len(kernels) - 1, min(_SAMPLE_KERNELS, len(kernels))).long())
        checked += len(sample)
        sharing += _count_sharing(kernels, sample, math.ceil(3 * k / 4))
    return checked, sharing


def _count_sharing(kernels: torch.Tensor, sample: torch.Tensor, most: int) -> int:
    """How many sampled kernels share >= ``most`` entries with another kernel. A kernel that shares ``most`` of
    its k entries must read at least one of any k - most + 1 of them: only kernels reading one of the first
    k - most + 1 entries are candidates."""
    count, k = kernels.shape
    owner = torch.arange(count).repeat_interleave(k)
    order = torch.argsort(kernels.reshape(-1), stable=True)
    sorted_entries, owners = kernels.reshape(-1)[order], owner[order]
    found = 0
    for chunk in sample.split(256):
        probes = kernels[chunk, :k - most + 1].reshape(-1)
        lo = torch.searchsorted(sorted_entries, probes)
        hi = torch.searchsorted(sorted_entries, probes, right=True)
        lengths = hi - lo
        who = torch.arange(len(chunk)).repeat_interleave(k - most + 1).repeat_interleave(lengths)
        where = torch.repeat_interleave(lo, lengths) + _ranks(lengths)
        partner = owners[where]
        keep = partner != chunk[who]
        who, partner = who[keep], partner[keep]
        shared = (kernels[chunk[who]][:, :, None] == kernels[partner][:, None, :]).any(2).sum(1)
        hit = torch.zeros(len(chunk), dtype=torch.bool)
        hit[who[shared >= most]] = True
        found += int(hit.sum())
    return found


def _ranks(lengths: torch.Tensor) -> torch.Tensor:
    """0..n-1 for each run length n, concatenated."""
    starts = torch.cumsum(lengths, 0) - lengths
    return torch.arange(int(lengths.sum())) - torch.repeat_interleave(starts, lengths)


def ring_report(spec: RingSpec) -> RingWiringReport:
    """The wiring report of one ring spec."""
    entries, negative = wr.entries_and_signs(spec)
    uses = torch.bincount(entries, minlength=spec.size)
    checked, sharing = kernels_sharing_most(spec, entries)
    return RingWiringReport(spec.name, spec.size, spec.total, _layout_name(spec), int(uses.min()),
                            int(uses.max()), float(negative.float().mean()), adjacent_fraction(spec, entries),
                            checked, sharing)


def wiring_report(model: nn.Module) -> list[RingWiringReport]:
    """Per ring of a converted model: use counts, sign balance, adjacency and kernel sharing of its wiring.

    Args:
        model: a model converted with ``modelring.convert``.

    Returns:
        One ``RingWiringReport`` per ring; ``print()`` each for a line of text.
    """
    state = get_state(model)
    if state is None:
        raise ValueError("wiring_report() needs a model converted with modelring.convert(); this one is plain")
    return [ring_report(gen.spec) for gen in state.generators]
