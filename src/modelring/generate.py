"""Generation: turn one ring and its wiring into every virtual weight of a forward, and back.

Two layouts (see ``wiring.py``): the element-wise layout (``block=1``, the default and the paper's) in
``elementwise.py`` (a fused gather through int16 tables, 4 B per virtual weight held between steps), and the
block layout (``block > 1``, every version-1 spec) with independent sampling in ``blockwise.py``. This module picks
the layout for a spec, starts a ring (``initial_ring``) and caches a ring's generation (``RingGenerator``).

No atomics in either layout: gradients are bit-identical run to run. The recompute wiring keeps nothing and
rebuilds the wiring from the integer hash at every generation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from . import wiring as wr
from .blockwise import Wiring, block_held_bytes, build_block_wiring, generate_blocks
from .compat import moved_names
from .elementwise import ElementWiring, build_element_wiring, generate_elements, held_bytes, relay

if TYPE_CHECKING:  # annotations only: RingSpec lives in modelring.spec (the old path here warns, below)
    from .spec import RingSpec

# names that lived here before the spec and the block layout got rooms of their own
__getattr__ = moved_names(__name__, {"Segment": "modelring.spec", "RingSpec": "modelring.spec",
                                     "SAMPLINGS": "modelring.spec", "WIRING_MODES": "modelring.spec",
                                     "MAX_ENTRIES": "modelring.spec", "ring_dict_problems": "modelring.spec"})


def build_wiring(spec: RingSpec, device: torch.device, dtype: torch.dtype, *,
                 tables: tuple[str, ...] = ("fwd", "inv")) -> Wiring | ElementWiring:
    """Compute the wiring of ``spec`` from the integer hash (no random generator involved); ``tables`` says which
    element-wise tables to build (the block layout always builds all of its wiring)."""
    if spec.element_wise:
        return build_element_wiring(spec, device, tables=tables)
    return build_block_wiring(spec, device, dtype)


def initial_ring(spec: RingSpec, dtype: torch.dtype = torch.float32, device="cpu") -> torch.Tensor:
    """The ring's starting values: N(0, init_std^2) from the integer hash, identical on every machine."""
    return (wr.normal_init(spec.size, spec.key(wr.PURPOSE_INIT)) * spec.init_std).to(device=device, dtype=dtype)


def generate(ring: torch.Tensor, spec: RingSpec, wiring: Wiring | ElementWiring,
             groups: list | None = None) -> tuple[torch.Tensor, ...]:
    """The generated tensors of one ring, one per segment, differentiable with respect to ``ring``; ``groups``
    (element-wise layout) receives one ``(first, stop, sink)`` per generation node, for ``RingGenerator.relayed``."""
    shapes = tuple(s.shape for s in spec.segments)
    if spec.element_wise:
        return generate_elements(ring, wiring, shapes, groups)
    return generate_blocks(ring, spec, wiring, shapes)


@dataclass
class RingGenerator:
    """Generates (and caches) the per-layer weights of one ring.

    The cache is keyed by the ring tensor's identity, version counter, device, dtype and grad mode. A
    generation that carries autograd history is dropped as soon as backward reaches it, so the next forward
    builds a fresh graph (gradient accumulation works); under ``torch.no_grad()`` nothing is regenerated while
    the ring is unchanged.
    """

    spec: RingSpec
    _wiring: dict = field(default_factory=dict, repr=False)
    _cache_key: tuple | None = field(default=None, repr=False)
    _cache: list | None = field(default=None, repr=False)
    _consumed: list = field(default_factory=lambda: [False], repr=False)
    _groups: list = field(default_factory=list, repr=False)  # the generation's groups (element-wise layout)
    _relays: dict = field(default_factory=dict, repr=False)  # group -> its relayed weights, this generation
    _generated_with: object = field(default=None, repr=False)  # that generation's wiring

    def wiring(self, device: torch.device, dtype: torch.dtype) -> Wiring:
        """The wiring on this device/dtype: kept (cached mode, one device at a time) or rebuilt (recompute)."""
        if self.spec.wiring == "recompute":  # no table: forward and backward compute their codes (elementwise)
            return build_wiring(self.spec, device, dtype, tables=())
        key = (device, dtype)
        if key not in self._wiring:
            self._wiring = {key: build_wiring(self.spec, device, dtype)}
        return self._wiring[key]

    def _key(self, ring: torch.Tensor) -> tuple:
        tracking = torch.is_grad_enabled() and ring.requires_grad
        return (id(ring), ring.data_ptr(), ring._version, ring.device, ring.dtype, tracking,
                torch.is_inference_mode_enabled())

    def stale(self, ring: torch.Tensor) -> bool:
        """Whether ``weights(ring)`` would generate anew (rather than return the cached generation)."""
        return self._stale(self._key(ring))

    def _stale(self, key: tuple) -> bool:
        return self._cache is None or key != self._cache_key or self._consumed[0]

    def weights(self, ring: torch.Tensor) -> list[torch.Tensor]:
        """The generated tensors, one per segment, shaped like the parameters they replace."""
        key = self._key(ring)
        if not self._stale(key):
            return self._cache
        self.clear()  # the previous generation can be freed before this one is allocated
        wiring, groups = self.wiring(ring.device, ring.dtype), []
        weights = list(generate(ring, self.spec, wiring, groups))
        self._consumed, self._groups, self._generated_with = [False], groups, wiring
        consumed = self._consumed
        for node in {id(w.grad_fn): w.grad_fn for w in weights if w.grad_fn is not None}.values():
            # a backward through any generation node frees its graph: generate anew next time
            node.register_prehook(lambda grads: consumed.__setitem__(0, True))
        self._cache, self._cache_key = weights, key
        return weights

    def segment_groups(self) -> list[tuple[int, int]]:
        """The groups of segments ``(first, stop)`` the latest generation made, one autograd node each (empty
        before a generation, and for the block layout)."""
        return [(first, stop) for first, stop, _ in self._groups]

    def relayed(self, group: int) -> list[torch.Tensor] | None:
        """The latest generation's weights of group ``group`` through a relay node (``elementwise.relay``), created
        on the first call after a generation; None where a relay would not help (no autograd history, or a single
        group: its node is the last to be ready anyway)."""
        if len(self._groups) < 2 or self._cache is None or self._cache[0].grad_fn is None:
            return None
        if group not in self._relays:
            first, stop, sink = self._groups[group]
            self._relays[group] = list(relay(self._cache[first:stop], self._generated_with, (first, stop), sink))
        return self._relays[group]

    def latest(self, ring: torch.Tensor) -> list[torch.Tensor]:
        """The most recent generation, whatever the grad mode (generating if there is none)."""
        return self._cache if self._cache is not None else self.weights(ring)

    def wiring_bytes(self) -> int:
        """Bytes the wiring holds in memory now (0 in recompute mode)."""
        return sum(w.nbytes for w in self._wiring.values())

    def workspace_bytes(self) -> int:
        """Bytes of backward scratch kept between steps (cached mode)."""
        return sum(w.workspace_bytes for w in self._wiring.values())

    def held_bytes(self, element_size: int = 4) -> int:
        """Bytes this ring's generation keeps between training steps once a step has run: wiring plus every
        kept workspace, for a ring of ``element_size``-byte floats. Computed from the spec, so it is known
        before the first step; after one it equals ``wiring_bytes() + workspace_bytes()`` (tested)."""
        spec = self.spec
        if spec.wiring == "recompute":
            return 0
        if spec.element_wise:
            return held_bytes(spec)
        return block_held_bytes(spec, element_size)

    def clear(self) -> None:
        """Forget cached weights (not the wiring)."""
        self._cache, self._cache_key = None, None
        self._groups, self._relays, self._generated_with = [], {}, None

    def __getstate__(self):
        # Generated tensors carry autograd history and cannot be copied or pickled, and the wiring is derived
        # from the spec: copies and pickles hold neither, and rebuild both on first use.
        return {"spec": self.spec, "_wiring": {}, "_cache_key": None, "_cache": None, "_consumed": [False],
                "_groups": [], "_relays": {}, "_generated_with": None}
