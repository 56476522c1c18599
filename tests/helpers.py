"""Shared test helpers: explicit dense generating matrices and a wiring fingerprint."""
import hashlib

import torch

from modelring import wiring as wr
from modelring.generate import RingSpec, build_wiring


def entry_of(spec: RingSpec) -> torch.Tensor:
    """Ring entry read by every virtual weight, straight from the wiring functions."""
    if spec.sampling == "independent":
        return wr.independent_indices(spec.total, spec.size, spec.key(4))
    sizes = [s.numel for s in spec.segments]
    return wr.tiled_positions(sizes, spec.block, spec.key(1), permute=spec.permute) % spec.size


def dense_matrix(spec: RingSpec, dtype=torch.float64) -> torch.Tensor:
    """R as an explicit (T, N) matrix: R[j, entry(j)] = c_layer(j) * sign(j)."""
    coef = build_wiring(spec, torch.device("cpu"), dtype).coef
    R = torch.zeros(spec.total, spec.size, dtype=dtype)
    R[torch.arange(spec.total), entry_of(spec)] = coef
    return R


def fingerprint(spec: RingSpec) -> dict:
    """sha256 of the entry indices and of the coefficient signs (the whole wiring), plus a short prefix."""
    entries = entry_of(spec).to(torch.int64).numpy().tobytes()
    negative = (build_wiring(spec, torch.device("cpu"), torch.float64).coef < 0).numpy().tobytes()
    return {"entries_sha256": hashlib.sha256(entries).hexdigest(),
            "signs_sha256": hashlib.sha256(negative).hexdigest(),
            "first_entries": entry_of(spec)[:12].tolist()}


def make_spec(shapes, size, *, seed=0, scales=None, **options) -> RingSpec:
    """A RingSpec over parameters of the given shapes (named p0, p1, ...)."""
    from modelring.generate import Segment

    segments, offset = [], 0
    for i, shape in enumerate(shapes):
        scale = 1.0 if scales is None else scales[i]
        segments.append(Segment(f"p{i}", tuple(shape), scale, offset))
        offset += Segment(f"p{i}", tuple(shape), scale, offset).numel
    return RingSpec(name="ring0", index=0, size=size, seed=seed, segments=tuple(segments), **options)
