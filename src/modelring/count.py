"""count_params: honest accounting of trainable degrees of freedom against the dense model they stand for.

Counts go through ``named_parameters()`` (as fvcore does), so a shared tensor counts once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from .adapters.bank import adapter_gain_names, adapter_ring_names, get_adapters
from .bank import get_state, ring_names
from .spec import ADAPTERS


@dataclass(frozen=True)
class LayerCount:
    """One generated tensor: shape, virtual weights, the ring it reads and that ring's reuse factor T/N."""

    name: str
    shape: tuple[int, ...]
    virtual: int
    ring: str
    reuse: float


@dataclass(frozen=True)
class RingCount:
    """One ring: N entries, T virtual weights it generates, reuse T/N, and entries never read (N > T)."""

    name: str
    size: int
    total: int
    reuse: float
    dead: int


@dataclass
class ParamCount:
    """Parameter accounting of a (converted or plain) model.

    Attributes:
        dof: unique trainable scalars (ring + trainable free parameters).
        ring: ring entries, all rings together.
        free: parameters that are not generated and not rings (norms, biases, excluded layers).
        frozen: free parameters with requires_grad=False (counted in ``free``, not in ``dof``).
        virtual: parameters of the equivalent dense model (generated + free).
        generated: weights produced from rings.
        buffers: buffer scalars (e.g. BatchNorm statistics), not parameters.
        bytes: bytes of all parameters as stored (rings + free).
        dense_bytes: bytes the dense model's parameters would take.
        wiring_bytes: bytes of wiring held in memory now (0 in recompute mode or before the first build).
        workspace_bytes: backward scratch held now (block layouts keep two T-sized buffers after a backward;
            the element-wise layout keeps none).
        held_bytes: what generation keeps between training steps, all in (wiring + every kept workspace),
            computed from the specs: the figure to compare with the dense model's memory. See
            ``held_bytes_per_virtual``.
        dead: ring entries that no weight reads.
        scales: trainable per-layer scales of ring adapters (``adapt(trainable_scale=True)``), not in ``free``.
        base: frozen base weights under ring adapters (counted in ``free`` and ``frozen``, never in ``dof``).
        adapted: weights the active adapter adds a delta to.
    """

    dof: int
    ring: int
    free: int
    frozen: int
    virtual: int
    generated: int
    buffers: int
    bytes: int
    dense_bytes: int
    wiring_bytes: int
    workspace_bytes: int
    held_bytes: int
    dead: int
    rings: list[RingCount] = field(default_factory=list)
    layers: list[LayerCount] = field(default_factory=list)
    scales: int = 0
    base: int = 0
    adapted: int = 0

    @property
    def dof_fraction(self) -> float:
        return self.dof / self.virtual if self.virtual else 0.0

    @property
    def held_bytes_per_virtual(self) -> float:
        """Bytes kept between steps per generated (or adapted) weight (about 4.07 element-wise cached, 0
        recompute)."""
        weights = self.generated + self.adapted
        return self.held_bytes / weights if weights else 0.0

    def table(self) -> str:
        """The per-layer table as aligned text."""
        rows = [("name", "shape", "virtual", "ring", "reuse")]
        rows += [(l.name, "x".join(map(str, l.shape)), f"{l.virtual:,}", l.ring, f"{l.reuse:.2f}")
                 for l in self.layers]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        return "\n".join("  ".join(c.ljust(w) if i < 2 or i == 3 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths))) for r in rows)

    def __str__(self) -> str:
        lines = [f"DoF {self.dof:,} of {self.virtual:,} dense parameters ({100 * self.dof_fraction:.2f}%)",
                 f"  ring {self.ring:,} + free {self.free:,}" + (f" (frozen {self.frozen:,})" if self.frozen
                                                                  else "")
                 + f"; generated {self.generated:,}; buffers {self.buffers:,}",
                 f"  parameter bytes {self.bytes:,} vs dense {self.dense_bytes:,}; held between steps by "
                 f"generation {self.held_bytes:,} B ({self.held_bytes_per_virtual:.2f} B per generated weight)"]
        if self.base:
            lines.append(f"  ring adapter: {self.adapted:,} weights adapted, frozen base {self.base:,}"
                         + (f", trainable scales {self.scales:,}" if self.scales else ""))
        for r in self.rings:
            lines.append(f"  {r.name}: N={r.size:,} T={r.total:,} reuse {r.reuse:.2f}"
                         + (f", {r.dead:,} dead entries (N > T)" if r.dead else ""))
        if self.layers:
            lines.append(self.table())
        return "\n".join(lines)


def count_params(model: nn.Module) -> ParamCount:
    """Count DoF, ring, free, virtual and generated parameters, bytes, and a per-layer table.

    Args:
        model: any module; converted models also get ring and per-layer rows.

    Returns:
        A ``ParamCount``; ``print()`` it for a readable summary.
    """
    state, gains = get_state(model), adapter_gain_names(model)
    rings_named = ring_names(model) | adapter_ring_names(model)
    ring = free = dof = nbytes = scales = adapter_bytes = 0
    for name, p in model.named_parameters():  # deduplicated: a shared tensor counts once
        nbytes += p.numel() * p.element_size()
        dof += p.numel() if p.requires_grad else 0
        if name in rings_named:
            ring += p.numel()
        elif name in gains:
            scales += p.numel()
        else:
            free += p.numel()
        if name in gains or (name in rings_named and name.startswith(ADAPTERS)):
            adapter_bytes += p.numel() * p.element_size()
    frozen = free - sum(p.numel() for n, p in model.named_parameters()
                        if n not in rings_named and n not in gains and p.requires_grad)
    rings, layers, generated, generated_bytes, wiring_bytes, workspace_bytes, held = [], [], 0, 0, 0, 0, 0
    for i, gen in enumerate(state.generators if state else []):
        spec, elem = gen.spec, state.ring(i).element_size()
        total = spec.total
        rings.append(RingCount(spec.name, spec.size, total, total / spec.size, max(0, spec.size - total)))
        layers += [LayerCount(s.name, s.shape, s.numel, spec.name, total / spec.size) for s in spec.segments]
        generated += total
        generated_bytes += total * elem - spec.size * elem
        wiring_bytes += gen.wiring_bytes()
        workspace_bytes += gen.workspace_bytes()
        held += gen.held_bytes(elem)
    base, adapted = _adapter_counts(model, rings)
    for module in [r for a in get_adapters(model).adapters.values() for r in a.rings] if base else []:
        wiring_bytes += module.generator.wiring_bytes()
        workspace_bytes += module.generator.workspace_bytes()
        held += module.generator.held_bytes(module.weight.element_size())
    buffers = sum(b.numel() for b in model.buffers())
    return ParamCount(dof=dof, ring=ring, free=free, frozen=frozen,
                      virtual=generated + free, generated=generated, buffers=buffers, bytes=nbytes,
                      dense_bytes=nbytes + generated_bytes - adapter_bytes, wiring_bytes=wiring_bytes,
                      workspace_bytes=workspace_bytes, held_bytes=held,
                      dead=sum(r.dead for r in rings), rings=rings, layers=layers, scales=scales, base=base,
                      adapted=adapted)


def _adapter_counts(model: nn.Module, rings: list[RingCount]) -> tuple[int, int]:
    """(frozen base scalars under every adapter, weights the active adapter adapts); appends a ``RingCount`` per
    adapter ring to ``rings`` (named ``<adapter>/<ring>``)."""
    bank = get_adapters(model)
    if bank is None:
        return 0, 0
    params = dict(model.named_parameters())
    base = {seg.name: params[seg.name].numel() for a in bank.adapters.values() for s in a.specs for seg in s.segments}
    for name, adapter in bank.adapters.items():
        rings += [RingCount(f"{name}/{s.name}", s.size, s.total, s.total / s.size, max(0, s.size - s.total))
                  for s in adapter.specs]
    return sum(base.values()), sum(s.total for s in bank.current().specs)
