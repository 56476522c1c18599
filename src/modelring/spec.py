"""The ring spec: everything that defines one ring and its wiring, as plain values; its checks; its codec; and the
names under which rings and specs live in state dicts and model files.

A ``RingSpec`` is what a checkpoint stores instead of the wiring (the wiring is rebuilt from it, bit-identically).
``ring_dict_problems`` checks a spec read from a file before anything is built from it. In a state dict, a
converted model's rings are ``modelring.<ring>.weight`` and each spec is the ring module's extra state, a uint8 JSON
tensor (``encode_spec``); model files (``modelring.io``) keep the flat layout ``modelring_<ring>`` +
``modelring_spec``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch

from . import wiring as wr
from .vocab import SAMPLINGS, WIRING_MODES

BANK = "modelring"  # the converted root's child module holding the rings
ADAPTERS = "modelring_adapters"  # the adapted root's child module holding the adapters (modelring.adapters)
HIDDEN_CHILDREN = (BANK, ADAPTERS)  # children a container root's own iteration must not see
EXTRA = "_extra_state"  # torch's state_dict key of a module's get_extra_state()
FILE_SPEC_KEY = "modelring_spec"  # model files: the spec of every ring, as one uint8 JSON tensor
FILE_RING_PREFIX = "modelring_"  # model files: ring <name> is the tensor modelring_<name>
ADAPTER_FORMAT = "modelring-adapter-1"  # adapter files: rings, specs and the base's fingerprint, never the base


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


def ring_specs(rings, where: str) -> list[RingSpec]:
    """The ``RingSpec`` of every ring dict a file lists, each checked (``RingSpec.from_dict``), names unique.

    Args:
        rings: the file's list of ring specs (plain values).
        where: how the error names the file (and the part of it), e.g. the path.

    Raises:
        ValueError: no list, an unreadable ring, or two rings of one name ("the file is damaged or was edited").
    """
    if not isinstance(rings, list) or not rings:
        raise ValueError(f"{where} holds an unreadable modelring spec (no list of rings); the file is damaged or was "
                         "edited")
    try:
        specs = [RingSpec.from_dict(ring) for ring in rings]
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise ValueError(f"{where} holds an unreadable modelring spec ({err}); the file is damaged or was "
                         "edited") from None
    if len({r.name for r in specs}) != len(specs):
        raise ValueError(f"{where}: two rings share a name; the file is damaged or was edited")
    return specs


def readable_spec(value):
    """A ring spec from a state_dict: the uint8 JSON tensor ``get_extra_state`` writes (or a plain dict)."""
    if isinstance(value, torch.Tensor):
        try:
            return decode_spec(value)
        except (ValueError, UnicodeDecodeError, RuntimeError):
            return None
    return value


def spec_mismatch(theirs, ours: dict) -> str | None:
    """Why a ring spec from a state_dict cannot load into a ring built with ``ours`` (None when it can)."""
    if not isinstance(theirs, dict):
        return "the ring spec in the state_dict is unreadable (not the JSON a modelring ring writes)"
    if _value_ring(theirs) == _value_ring(ours):
        return None
    return ("the modelring spec in the state_dict differs from this model's (ring sizes, seeds, targets or wiring "
            f"options{_version_note(theirs, ours)}); convert the model with the same options, or use "
            "modelring.load(path) which rebuilds the model from the file's spec")


def _version_note(theirs: dict, ours: dict) -> str:
    """A hint for the error message when the two ring specs were written with different wiring versions."""
    versions = [str(ring.get("wiring_version")) for ring in (theirs, ours)]
    if versions[0] == versions[1]:
        return ""
    return (f"; the state_dict uses wiring version {versions[0]} and this model {versions[1]}: the element-wise "
            "wiring (block=1) differs between them, so load the file with modelring.load(path)")


def _value_ring(ring: dict) -> dict:
    """The parts of a ring spec that decide generated values: not the wiring mode (it only trades memory for time),
    and not the wiring version where the versions agree (every layout except the element-wise one of version 2:
    a version-1 checkpoint with ``block=16`` loads into a model converted today with ``block=16``)."""
    ring = {k: v for k, v in ring.items() if k != "wiring"}
    if ring.get("block") != 1 or ring.get("sampling") == "independent":
        ring.pop("wiring_version", None)
    return ring


def encode_spec(spec: dict) -> torch.Tensor:
    """A spec (plain values) as a uint8 tensor of its JSON: a ring's extra state, and model files' ``modelring_spec``
    (a tensor, so code that walks a state_dict's values as tensors, such as EMA helpers or safetensors, works)."""
    return torch.frombuffer(bytearray(json.dumps(spec, sort_keys=True).encode()), dtype=torch.uint8)


def decode_spec(tensor: torch.Tensor) -> dict:
    """The plain values of a spec tensor written by ``encode_spec``."""
    return json.loads(bytes(tensor.cpu().numpy().tobytes()).decode())
