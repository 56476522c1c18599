"""Shared test helpers: explicit dense generating matrices and a wiring fingerprint."""
import hashlib

import torch

from modelring.spec import RingSpec
from modelring.wiring import entries_and_signs


def entry_of(spec: RingSpec) -> torch.Tensor:
    """Ring entry read by every virtual weight, straight from the wiring functions."""
    return entries_and_signs(spec)[0]


def coefficients(spec: RingSpec, dtype=torch.float64) -> torch.Tensor:
    """c_layer(j) * sign(j) for every virtual weight, straight from the wiring functions."""
    scale = torch.cat([torch.full((s.numel,), s.scale, dtype=dtype) for s in spec.segments])
    return torch.where(entries_and_signs(spec)[1], -scale, scale)


def dense_matrix(spec: RingSpec, dtype=torch.float64) -> torch.Tensor:
    """R as an explicit (T, N) matrix: R[j, entry(j)] = c_layer(j) * sign(j)."""
    R = torch.zeros(spec.total, spec.size, dtype=dtype)
    R[torch.arange(spec.total), entry_of(spec)] = coefficients(spec, dtype)
    return R


def sparse_matrix(spec: RingSpec, dtype=torch.float64) -> torch.Tensor:
    """R as a sparse (T, N) COO matrix, for rings too large for ``dense_matrix``."""
    rows = torch.stack([torch.arange(spec.total), entry_of(spec)])
    return torch.sparse_coo_tensor(rows, coefficients(spec, dtype), (spec.total, spec.size),
                                   check_invariants=True).coalesce()


def fingerprint(spec: RingSpec) -> dict:
    """sha256 of the entry indices and of the coefficient signs (the whole wiring), plus a short prefix."""
    entries = entry_of(spec).to(torch.int64).numpy().tobytes()
    negative = (coefficients(spec) < 0).numpy().tobytes()
    return {"entries_sha256": hashlib.sha256(entries).hexdigest(),
            "signs_sha256": hashlib.sha256(negative).hexdigest(),
            "first_entries": entry_of(spec)[:12].tolist()}


def make_spec(shapes, size, *, seed=0, scales=None, **options) -> RingSpec:
    """A RingSpec over parameters of the given shapes (named p0, p1, ...)."""
    from modelring.spec import Segment

    segments, offset = [], 0
    for i, shape in enumerate(shapes):
        scale = 1.0 if scales is None else scales[i]
        segments.append(Segment(f"p{i}", tuple(shape), scale, offset))
        offset += Segment(f"p{i}", tuple(shape), scale, offset).numel
    return RingSpec(name="ring0", index=0, size=size, seed=seed, segments=tuple(segments), **options)
