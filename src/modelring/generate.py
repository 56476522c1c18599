"""Generation: turn one ring and its wiring into every virtual weight, in one gather per ring per forward.

Forward (even sampling): the ring is tiled ceil(T/N) times; whole blocks of ``block`` weights are copied out
of the tiled ring with one ``index_select`` (the keyed block permutation sigma), then multiplied by a
per-weight coefficient c_i * (+-1) that holds both the layer scale and the reflection sign.

Backward: the output gradient is multiplied by the same coefficients, gathered back to tiled-ring order through
sigma^-1 (again a gather, never a scatter-add) and summed over the ceil(T/N) copies as a dense (copies, N)
view. No atomics, no accumulation order that depends on threads: gradients are bit-identical run to run.

The cached wiring holds sigma and sigma^-1 as int32 (8/block bytes per virtual weight) and the coefficients
in the ring's dtype (4 bytes in float32): 4.5 B per virtual weight at the default block of 16. The recompute
wiring stores nothing and rebuilds them from the integer hash on every forward.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from . import wiring as wr

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
    block: int = 16
    permute: bool = True
    reflect: bool = True
    sampling: str = "even"
    wiring: str = "cached"
    wiring_version: int = wr.WIRING_VERSION

    @property
    def total(self) -> int:
        """T: the number of virtual weights this ring generates."""
        return sum(s.numel for s in self.segments)

    def key(self, purpose: int) -> int:
        return wr.derive_key(self.seed, self.index, purpose)

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("name", "index", "size", "seed", "block", "permute", "reflect",
                                             "sampling", "wiring", "wiring_version")}
        out["segments"] = [{"name": s.name, "shape": list(s.shape), "scale": s.scale} for s in self.segments]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "RingSpec":
        if data.get("wiring_version") != wr.WIRING_VERSION:
            raise ValueError(f"ring {data.get('name')!r} uses wiring version {data.get('wiring_version')}, but "
                             f"this modelring implements version {wr.WIRING_VERSION}; install the modelring "
                             "release that wrote the checkpoint")
        segments, offset = [], 0
        for s in data["segments"]:
            segments.append(Segment(s["name"], tuple(s["shape"]), float(s["scale"]), offset))
            offset += math.prod(s["shape"])
        fields = {k: v for k, v in data.items() if k != "segments"}
        return cls(segments=tuple(segments), **fields)


_PURPOSE_PERMUTATION, _PURPOSE_SIGNS, _PURPOSE_INIT, _PURPOSE_INDEPENDENT = 1, 2, 3, 4


@dataclass
class Wiring:
    """The tensors generation needs on one device/dtype. ``index``: block rows (even) or entries (independent)."""

    index: torch.Tensor
    inverse: torch.Tensor | None
    coef: torch.Tensor

    @property
    def nbytes(self) -> int:
        tensors = [self.index, self.coef] + ([self.inverse] if self.inverse is not None else [])
        return sum(t.numel() * t.element_size() for t in tensors)


def build_wiring(spec: RingSpec, device: torch.device, dtype: torch.dtype) -> Wiring:
    """Compute the wiring of ``spec`` from the integer hash (no random generator involved)."""
    total = spec.total
    if spec.sampling == "independent":
        index = wr.independent_indices(total, spec.size, spec.key(_PURPOSE_INDEPENDENT), device=device)
        return Wiring(index.to(torch.int32), None, _coefficients(spec, device, dtype))
    sigma = wr.block_permutation(total, spec.block, spec.key(_PURPOSE_PERMUTATION), permute=spec.permute,
                                 device=device)
    inverse = wr.inverse_permutation(sigma)
    return Wiring(sigma.to(torch.int32), inverse.to(torch.int32), _coefficients(spec, device, dtype))


def _coefficients(spec: RingSpec, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """c_i * s_j for every virtual weight: layer scale times the reflection sign."""
    scales = torch.tensor([s.scale for s in spec.segments], dtype=torch.float64, device=device)
    counts = torch.tensor([s.numel for s in spec.segments], device=device)
    coef = torch.repeat_interleave(scales, counts)
    if spec.reflect:
        coef[wr.sign_bits(0, spec.total, spec.key(_PURPOSE_SIGNS), device=device)] *= -1.0
    return coef.to(dtype)


def initial_ring(spec: RingSpec, dtype: torch.dtype = torch.float32, device="cpu") -> torch.Tensor:
    """The ring's starting values: N(0, 1) from the integer hash, so every machine starts identically."""
    return wr.normal_init(spec.size, spec.key(_PURPOSE_INIT)).to(device=device, dtype=dtype)


class _EvenGenerate(torch.autograd.Function):
    """V = coef * tiled_ring[blocks permuted by sigma]; backward gathers through sigma^-1."""

    @staticmethod
    def forward(ctx, ring, sigma, inverse, coef, total, block):
        size = ring.numel()
        copies = -(-total // size)
        tiled = ring.repeat(copies) if copies > 1 else ring
        main = sigma.numel() * block
        out = torch.empty(total, dtype=ring.dtype, device=ring.device)
        torch.index_select(tiled[:main].view(-1, block), 0, sigma, out=out[:main].view(-1, block))
        out[main:] = tiled[main:total]
        out.mul_(coef)
        ctx.save_for_backward(inverse, coef)
        ctx.shape = (size, copies, total, block)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        inverse, coef = ctx.saved_tensors
        size, copies, total, block = ctx.shape
        scaled = grad_out * coef
        main = inverse.numel() * block
        tiled = torch.empty(copies * size, dtype=scaled.dtype, device=scaled.device)
        torch.index_select(scaled[:main].view(-1, block), 0, inverse, out=tiled[:main].view(-1, block))
        tiled[main:total] = scaled[main:]
        tiled[total:] = 0
        return tiled.view(copies, size).sum(0), None, None, None, None, None


class _IndependentGenerate(torch.autograd.Function):
    """V = coef * ring[index] with independently drawn entries (ablation; index_add_ backward)."""

    @staticmethod
    def forward(ctx, ring, index, coef):
        ctx.save_for_backward(index, coef)
        ctx.size = ring.numel()
        return ring.index_select(0, index) * coef

    @staticmethod
    def backward(ctx, grad_out):
        index, coef = ctx.saved_tensors
        grad = torch.zeros(ctx.size, dtype=grad_out.dtype, device=grad_out.device)
        return grad.index_add_(0, index, grad_out * coef), None, None


def generate_flat(ring: torch.Tensor, spec: RingSpec, wiring: Wiring) -> torch.Tensor:
    """All T virtual weights of one ring as a flat tensor (differentiable with respect to ``ring``)."""
    if spec.sampling == "independent":
        return _IndependentGenerate.apply(ring, wiring.index, wiring.coef)
    return _EvenGenerate.apply(ring, wiring.index, wiring.inverse, wiring.coef, spec.total, spec.block)


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

    def weights(self, ring: torch.Tensor) -> list[torch.Tensor]:
        """The generated tensors, one per segment, shaped like the parameters they replace."""
        tracking = torch.is_grad_enabled() and ring.requires_grad
        key = (id(ring), ring.data_ptr(), ring._version, ring.device, ring.dtype, tracking,
               torch.is_inference_mode_enabled())
        if self._cache is not None and key == self._cache_key and not self._consumed[0]:
            return self._cache
        flat = generate_flat(ring, self.spec, self.wiring(ring.device, ring.dtype))
        self._consumed = [False]
        if flat.requires_grad:
            consumed = self._consumed
            flat.register_hook(lambda grad: consumed.__setitem__(0, True))
        parts = flat.split([s.numel for s in self.spec.segments])
        self._cache = [p.view(s.shape) for p, s in zip(parts, self.spec.segments)]
        self._cache_key = key
        return self._cache

    def wiring_bytes(self) -> int:
        """Bytes the wiring holds in memory now (0 in recompute mode)."""
        return sum(w.nbytes for w in self._wiring.values())

    def clear(self) -> None:
        """Forget cached weights (not the wiring)."""
        self._cache, self._cache_key = None, None

    def __getstate__(self):
        # Generated tensors carry autograd history and cannot be copied or pickled; they are rebuilt on use.
        return {"spec": self.spec, "_wiring": self._wiring, "_cache_key": None, "_cache": None,
                "_consumed": [False]}
