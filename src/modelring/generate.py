"""Generation: turn one ring and its wiring into every virtual weight of a forward, and back.

Two layouts (see ``wiring.py``). The element-wise layout (``block=1``, the default and the paper's) is generated
in ``elementwise.py``: a fused gather through int16 tables, 4 B per virtual weight held between steps.

The block layout (``block > 1``, and every version-1 spec): each layer's weight is copied block by block out of
the ring with one ``index_select`` on a (N, block) view of overlapping windows of the ring (row s = entries
s..s+block-1 mod N), then multiplied by a per-weight coefficient c_i * (+-1) holding the layer scale and the
reflection sign. Backward: each layer's gradient is multiplied by the same coefficients into a flat workspace,
gathered back to tiled-ring order through sigma^-1 (a gather, never a scatter-add), and summed over the
ceil(T/N) copies of the ring as a dense (copies, N) view. Both T-sized workspaces are kept between steps. Held
between steps per virtual weight: 8/block B of int32 block starts and sigma^-1, 4 B of coefficients and 8 B of
workspaces (12.5 B at block 16).

No atomics in either layout: gradients are bit-identical run to run. The recompute wiring keeps nothing and
rebuilds the wiring from the integer hash at every generation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from . import wiring as wr
from .elementwise import ElementGenerate, ElementWiring, build_element_wiring, held_bytes

SAMPLINGS = ("even", "independent")
WIRING_MODES = ("cached", "recompute")


@dataclass(frozen=True)
class Segment:
    """One generated tensor: its parameter name, shape and scale c_i, at ``offset`` in the ring's output."""

    name: str
    shape: tuple[int, ...]
    scale: float
    offset: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class RingSpec:
    """Everything that defines one ring and its wiring; plain values, stored in checkpoints as JSON."""

    name: str
    index: int
    size: int
    seed: int
    segments: tuple[Segment, ...]
    init_std: float = 1.0
    block: int = 1
    permute: bool = True
    reflect: bool = True
    sampling: str = "even"
    wiring: str = "cached"
    wiring_version: int = wr.WIRING_VERSION

    @property
    def total(self) -> int:
        """T: the number of virtual weights this ring generates."""
        return sum(s.numel for s in self.segments)

    @property
    def element_wise(self) -> bool:
        """Whether this ring uses the element-wise layout (version 2, block 1, even sampling)."""
        return self.sampling == "even" and self.block == 1 and self.wiring_version >= 2

    def key(self, purpose: int) -> int:
        return wr.derive_key(self.seed, self.index, purpose)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("name", "index", "size", "seed", "init_std", "block", "permute",
                                             "reflect", "sampling", "wiring", "wiring_version")}
        out["segments"] = [{"name": s.name, "shape": list(s.shape), "scale": s.scale} for s in self.segments]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "RingSpec":
        """A spec from plain values (a file's metadata), checked first: a clear ValueError names every problem."""
        version = data.get("wiring_version") if isinstance(data, dict) else None
        if isinstance(version, int) and version not in wr.SUPPORTED_VERSIONS:  # a later release may add fields
            raise ValueError(f"ring {data.get('name')!r} uses wiring version {version}, but this modelring "
                             f"implements versions {wr.SUPPORTED_VERSIONS}; install the modelring release that "
                             "wrote the checkpoint")
        problems = ring_dict_problems(data)
        if problems:
            raise ValueError("; ".join(problems))
        segments, offset = [], 0
        for s in data["segments"]:
            segments.append(Segment(s["name"], tuple(s["shape"]), float(s["scale"]), offset))
            offset += math.prod(s["shape"])
        fields = {k: v for k, v in data.items() if k != "segments"}
        return cls(segments=tuple(segments), **fields)




MAX_ENTRIES = 2 ** 40  # far above any real model; keeps crafted specs from asking for unbounded work


def _is_int(value, low: int, high: int = MAX_ENTRIES) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def ring_dict_problems(data) -> list[str]:
    """Why a ring spec read from a file is not one ``convert`` could have written (empty when it is): types,
    ranges and consistency of every field, before anything is built from it."""
    if not isinstance(data, dict):
        return [f"a ring spec must be a mapping, got {type(data).__name__}"]
    name = data.get("name")
    where = f"ring {name!r}" if isinstance(name, str) else "a ring"
    problems = [] if isinstance(name, str) and name.isidentifier() else [f"{where}: name must be an identifier"]
    expected = {"index", "size", "seed", "init_std", "block", "permute", "reflect", "sampling", "wiring",
                "wiring_version", "segments", "name"}
    if set(data) != expected:
        problems.append(f"{where}: fields {sorted(set(data) ^ expected)} missing or unexpected")
        return problems
    checks = [("index", _is_int(data["index"], 0, 2 ** 20)), ("size", _is_int(data["size"], 1)),
              ("seed", _is_int(data["seed"], 0, 2 ** 64 - 1)), ("block", _is_int(data["block"], 1, 2 ** 20)),
              ("init_std", isinstance(data["init_std"], (int, float)) and not isinstance(data["init_std"], bool)
               and math.isfinite(data["init_std"]) and data["init_std"] > 0),
              ("permute", isinstance(data["permute"], bool)), ("reflect", isinstance(data["reflect"], bool)),
              ("sampling", data["sampling"] in SAMPLINGS), ("wiring", data["wiring"] in WIRING_MODES),
              ("wiring_version", _is_int(data["wiring_version"], 1, 2 ** 20))]
    problems += [f"{where}: {field}={data[field]!r} is out of range or of the wrong type" for field, ok in checks
                 if not ok]
    segments = data["segments"]
    if not isinstance(segments, list) or not segments:
        return problems + [f"{where}: segments must be a non-empty list"]
    names, total = set(), 0
    for seg in segments:
        shape = seg.get("shape") if isinstance(seg, dict) else None
        if not (isinstance(seg, dict) and set(seg) == {"name", "shape", "scale"} and isinstance(seg["name"], str)
                and isinstance(shape, list) and shape and all(_is_int(d, 1) for d in shape)
                and isinstance(seg["scale"], (int, float)) and not isinstance(seg["scale"], bool)
                and math.isfinite(seg["scale"])):
            problems.append(f"{where}: segment {seg!r:.80} is not a (name, positive shape, finite scale)")
            continue
        if seg["name"] in names:
            problems.append(f"{where}: segment {seg['name']!r} appears twice")
        names.add(seg["name"])
        total += math.prod(shape)
    if total > MAX_ENTRIES:
        problems.append(f"{where}: generates {total:,} weights, more than any model modelring can hold")
    return problems


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


def build_wiring(spec: RingSpec, device: torch.device, dtype: torch.dtype) -> Wiring | ElementWiring:
    """Compute the wiring of ``spec`` from the integer hash (no random generator involved)."""
    if spec.element_wise:
        return build_element_wiring(spec, device)
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


def initial_ring(spec: RingSpec, dtype: torch.dtype = torch.float32, device="cpu") -> torch.Tensor:
    """The ring's starting values: N(0, init_std^2) from the integer hash, identical on every machine."""
    return (wr.normal_init(spec.size, spec.key(wr.PURPOSE_INIT)) * spec.init_std).to(device=device, dtype=dtype)


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


class _EvenGenerate(torch.autograd.Function):
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


class _IndependentGenerate(torch.autograd.Function):
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


def generate(ring: torch.Tensor, spec: RingSpec, wiring: Wiring) -> tuple[torch.Tensor, ...]:
    """The generated tensors of one ring, one per segment, differentiable with respect to ``ring``."""
    shapes = tuple(s.shape for s in spec.segments)
    if spec.element_wise:
        return ElementGenerate.apply(ring, wiring, shapes)
    function = _IndependentGenerate if spec.sampling == "independent" else _EvenGenerate
    return function.apply(ring, wiring, shapes)


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

    def wiring(self, device: torch.device, dtype: torch.dtype) -> Wiring:
        """The wiring on this device/dtype: kept (cached mode, one device at a time) or rebuilt (recompute)."""
        if self.spec.wiring == "recompute":
            return build_wiring(self.spec, device, dtype)
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
        self._cache = None  # the previous generation can be freed before this one is allocated
        weights = list(generate(ring, self.spec, self.wiring(ring.device, ring.dtype)))
        self._consumed = [False]
        if weights[0].grad_fn is not None:  # backward through this node frees its graph: generate anew next time
            consumed = self._consumed
            weights[0].grad_fn.register_prehook(lambda grads: consumed.__setitem__(0, True))
        self._cache, self._cache_key = weights, key
        return weights

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
        if spec.sampling == "independent":  # int32 index and coefficient per weight; the backward keeps nothing
            return spec.total * (4 + element_size)
        layout = wr.BlockLayout.of([s.numel for s in spec.segments], spec.block)
        copies = -(-spec.total // spec.size)
        # int32 block starts and sigma^-1, a coefficient per weight, the flat and the tiled backward workspaces
        return 8 * layout.num_blocks + element_size * (2 * spec.total + copies * spec.size)

    def clear(self) -> None:
        """Forget cached weights (not the wiring)."""
        self._cache, self._cache_key = None, None

    def __getstate__(self):
        # Generated tensors carry autograd history and cannot be copied or pickled, and the wiring is derived
        # from the spec: copies and pickles hold neither, and rebuild both on first use.
        return {"spec": self.spec, "_wiring": {}, "_cache_key": None, "_cache": None, "_consumed": [False]}
