"""convert / materialize: attach ring generation to an unmodified model, and bake it back out.

``convert`` removes each selected parameter (by default the ``weight`` of every conv and linear layer) from
its module and adds one ``Ring`` module per group instead, gathered in a ``RingBank`` child of the root:
``model.modelring.ring0.weight`` is the trainable ring, ``model.modelring.ring0`` holds its spec (travelling in
state_dicts as the module's extra state) and its generator. Forward pre-hooks on the root and on every module
above a generated weight write the generated tensors into the modules' attributes when the outermost of those
modules is entered, so the classes, attribute paths and forward signatures stay exactly as they were; after the
outermost forward returns, the attributes hold detached copies (safe to deep-copy, read or pickle).

State dicts of earlier releases (rings as root parameters ``modelring_ring0``, ... and the spec as a uint8 JSON
tensor ``modelring_spec``) still load: a root pre-hook renames them (``LEGACY_RING_PREFIX``, ``LEGACY_SPEC_KEY``;
model files keep that layout, see ``modelring.io``).
"""
from __future__ import annotations

import copy
import functools
import json
import math
import re
import weakref
from collections.abc import Callable, Mapping
from fnmatch import fnmatch

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch import nn

from .generate import SAMPLINGS, WIRING_MODES, RingGenerator, RingSpec, Segment, initial_ring

DEFAULT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                 nn.Linear)
SCALE_RULES = ("fan_in", "fan_out")
BANK = "modelring"  # the root's child module holding the rings
LEGACY_SPEC_KEY = "modelring_spec"  # state_dict keys of earlier releases (and of model files)
LEGACY_RING_PREFIX = "modelring_"
EXTRA = "_extra_state"  # torch's state_dict key of a module's get_extra_state()

RingSize = int | float | str


class Ring(nn.Module):
    """One model ring: the trainable vector ``weight``, its spec, and the generator that turns it into weights.

    ``ring()`` returns the generated tensors (one per segment of the spec, with autograd to ``weight``). The spec
    is the module's extra state, a uint8 tensor of its JSON (a tensor, so code that walks a state_dict's values as
    tensors, such as EMA helpers or safetensors, keeps working): it travels in every state_dict, and a state_dict
    whose spec decides other values (ring size, seed, targets, wiring options) is refused on load.
    """

    def __init__(self, spec: RingSpec, value: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(value)
        self.spec = spec
        self.generator = RingGenerator(spec)

    def forward(self) -> list[torch.Tensor]:
        return self.generator.weights(self.weight)

    def get_extra_state(self) -> torch.Tensor:
        return encode_spec(self.spec.to_dict())

    def set_extra_state(self, state) -> None:
        """The spec is fixed when the ring is built; ``_load_from_state_dict`` has checked the incoming one."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        theirs = state_dict.get(prefix + EXTRA)
        if theirs is not None:
            problem = spec_mismatch(_readable_spec(theirs), self.spec.to_dict())
            if problem:  # nothing of this ring is loaded
                error_msgs.append(f"{prefix}: {problem}")
                return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        total = sum(seg.numel for seg in self.spec.segments)
        return f"{self.spec.size:,} entries -> {total:,} weights in {len(self.spec.segments)} tensors"


class RingBank(nn.Module):
    """The rings of a converted model (``model.modelring``) and where their generated weights go.

    ``owners[i][k]`` lists the (module, attribute) pairs that receive ring i's k-th generated tensor (a tied
    weight has several); the modules belong to the model and are not registered here.
    """

    def __init__(self, rings: list[Ring], owners: list[list[list[tuple[nn.Module, str]]]]):
        super().__init__()
        for ring in rings:
            self.add_module(ring.spec.name, ring)
        self.owners = owners
        self.handles: list = []
        self.depth = 0
        self.energy: dict[str, float] | None = None  # segment -> sum of (c * dL/dW)^2, while tracking

    def track_gradient_energy(self, on: bool = True) -> None:
        """Accumulate, for every generated tensor, the energy its gradient sends into the ring, sum (c_i * g)^2
        (``self.energy``, by parameter name, reset by calling this again); off with ``on=False``. One extra pass
        over each weight gradient per backward."""
        self.energy = {} if on else None

    def _add_energy(self, name: str, scale: float, grad: torch.Tensor) -> None:
        self.energy[name] = self.energy.get(name, 0.0) + float(grad.detach().float().square().sum()) * scale * scale

    @property
    def rings(self) -> list[Ring]:
        return list(self.children())

    @property
    def generators(self) -> list[RingGenerator]:
        return [ring.generator for ring in self.children()]

    def ring(self, i: int) -> torch.Tensor:
        """The trainable vector of ring ``i``."""
        return self.rings[i].weight

    def spec(self) -> dict:
        """The full spec of every ring, as plain values (stored in model files)."""
        return {"format": "modelring", "rings": [g.spec.to_dict() for g in self.generators]}

    def forward(self) -> list[list[torch.Tensor]]:
        """Every ring's generated tensors."""
        return [ring() for ring in self.children()]

    def write_weights(self, detach: bool) -> None:
        """Store every ring's weights in the owning modules' attributes: freshly generated for a forward,
        or (``detach``) the latest generation without its autograd history."""
        for i, ring_module in enumerate(self.children()):
            gen, ring = ring_module.generator, ring_module.weight
            if not detach and gen.stale(ring):
                self.forget_weights(i)  # free the previous generation before the next one is allocated
            tensors = gen.latest(ring) if detach else gen.weights(ring)
            if not detach and self.energy is not None:
                for seg, tensor in zip(gen.spec.segments, tensors):
                    if tensor.requires_grad and not getattr(tensor, "_modelring_energy", False):  # once per tensor
                        tensor.register_hook(functools.partial(self._add_energy, seg.name, seg.scale))
                        tensor._modelring_energy = True
            for tensor, owners in zip(tensors, self.owners[i]):
                value = tensor.detach() if detach else tensor
                for module, attr in owners:
                    module.__dict__[attr] = value

    def forget_weights(self, i: int) -> None:
        """Drop ring ``i``'s latest generation from the modules and the cache (its memory can be reused)."""
        self.generators[i].clear()
        for owners in self.owners[i]:
            for module, attr in owners:
                module.__dict__.pop(attr, None)


class _ContainerChildren(dict):
    """The child dict of a container root (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``) holding the ring
    bank: the container's own view (iteration, ``len``, indexing, ``keys``/``values``, so its forward and user
    loops) does not see the bank, while ``items()`` (what ``named_children``, ``parameters``, ``state_dict``,
    ``to`` and loading walk) does. The class of the container is unchanged."""

    def __iter__(self):
        return (key for key in dict.__iter__(self) if key != BANK)

    def __len__(self) -> int:
        return dict.__len__(self) - (BANK in self)

    def keys(self):
        return [key for key in dict.keys(self) if key != BANK]

    def values(self):
        return [module for key, module in dict.items(self) if key != BANK]


CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class _EnterHook:
    """Forward pre-hook: the outermost converted module entered writes fresh generated weights. On the root it also
    checks that the bank is still the root's child (``del``/``pop`` on a container rebuilds the children without it,
    and rings that ``parameters()`` no longer yields would silently stop training)."""

    def __init__(self, state: RingBank, *, root: bool = False):
        self.state = state
        self.root = root

    @torch.compiler.disable  # generation runs eagerly (C++ gather, cached wiring); the model around it compiles
    def __call__(self, module, args):
        if self.root and module._modules.get(BANK) is not self.state:
            raise RuntimeError(f"the ring bank {BANK!r} is no longer a child of this {type(module).__name__}: deleting "
                               "or popping a layer of a converted nn.Sequential/nn.ModuleList rebuilds its children "
                               "without it, so its rings would no longer be trained or saved; edit the model before "
                               "modelring.convert, or materialize it (modelring.materialize), edit, and convert again")
        self.state.depth += 1  # first: the always-called exit hook undoes it even if generation raises
        if self.state.depth == 1:
            self.state.write_weights(detach=False)


class _ExitHook:
    """Forward hook (always called): leaving the outermost module swaps in detached weights."""

    def __init__(self, state: RingBank):
        self.state = state

    @torch.compiler.disable
    def __call__(self, module, args, output):
        self.state.depth -= 1
        if self.state.depth == 0:
            self.state.write_weights(detach=True)


class _LegacyStateDictHook:
    """Root load_state_dict pre-hook: a state_dict of an earlier release (rings as root parameters
    ``modelring_ring<i>``, the spec as the uint8 JSON tensor ``modelring_spec``) is renamed to today's keys
    (``modelring.ring<i>.weight`` and the ring's extra state) before anything loads."""

    def __call__(self, module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        if prefix + LEGACY_SPEC_KEY not in state_dict:
            return
        try:
            spec = decode_spec(state_dict.pop(prefix + LEGACY_SPEC_KEY))
            rings = list(spec["rings"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
            errors.append(f"{prefix + LEGACY_SPEC_KEY} is not a readable modelring spec ({err})")
            return
        for ring in rings:
            name = ring.get("name") if isinstance(ring, dict) else None
            if not isinstance(name, str):
                errors.append(f"{prefix + LEGACY_SPEC_KEY} holds a ring without a name")
                return
            if prefix + LEGACY_RING_PREFIX + name in state_dict:
                state_dict[f"{prefix}{BANK}.{name}.weight"] = state_dict.pop(prefix + LEGACY_RING_PREFIX + name)
            state_dict[f"{prefix}{BANK}.{name}.{EXTRA}"] = encode_spec(ring)


def _readable_spec(value):
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
    """The spec as the uint8 JSON tensor of the earlier state_dict layout (``modelring_spec``)."""
    return torch.frombuffer(bytearray(json.dumps(spec, sort_keys=True).encode()), dtype=torch.uint8)


def decode_spec(tensor: torch.Tensor) -> dict:
    """The spec dict of an earlier state_dict's ``modelring_spec`` tensor."""
    return json.loads(bytes(tensor.cpu().numpy().tobytes()).decode())


def get_state(model: nn.Module) -> RingBank | None:
    """The ``RingBank`` of a converted model, or None for a plain model."""
    bank = model._modules.get(BANK)
    return bank if isinstance(bank, RingBank) else None


def ring_names(model: nn.Module) -> set[str]:
    """Parameter names of the model's rings (``modelring.ring0.weight``, ...; empty for a plain model)."""
    state = get_state(model)
    return {f"{BANK}.{g.spec.name}.weight" for g in state.generators} if state else set()


def is_converted(model: nn.Module) -> bool:
    return get_state(model) is not None


def convert(model: nn.Module, ring_size: RingSize | None = None, *, seed: int = 0, permute: bool = True,
            reflect: bool = True, sampling: str = "even", scale: str | Callable | None = None,
            rings: Mapping[str, RingSize] | Callable | None = None, include=None, exclude=None,
            wiring: str = "cached", block: int = 1, strict: bool = True,
            init_std: float | str | None = None) -> nn.Module:
    """Generate a model's weights from model rings, in place.

    Args:
        model: any ``nn.Module``; converted in place and returned.
        ring_size: ring entries (int), fraction of the generated weights (float in (0, 1]) or a byte budget
            ("2MB", "512KiB"). With ``rings`` it sizes every group (callable) or the unmatched rest (mapping).
        seed: wiring and ring-initialisation seed (integer arithmetic only: identical on every machine).
        permute: keyed permutation of where weights read the ring; False reads entry j mod N (ablation).
        reflect: independent random sign per virtual weight; False uses no sign flips (ablation).
        sampling: "even" (every entry used floor(T/N) or ceil(T/N) times) or "independent" (ablation).
        scale: None (default: no per-layer scale, c_i = 1, the ring starts at the RMS of the layers' Kaiming
            fan-in stds), or a per-layer initial std: Kaiming sqrt(2/fan) with "fan_in" / "fan_out", or a
            callable (name, shape) -> std; then c_i = std_i / ring_std (see ``ring_scales``). None is the
            default because it measured as good as the others when stem and classifier stay free, and it is
            the only rule that still trains when they are generated too (docs/results/scale_default*.md).
        rings: local rings: a mapping of parameter-name globs to sizes (first match wins), or a callable
            (name, module) -> group name with one ring per group (see ``rings_by_prefix``).
        include: what to generate: module types (their ``weight``) and/or parameter-name globs
            (default: the weight of conv, conv-transpose and linear layers).
        exclude: module types or parameter-name globs to leave free, e.g. ``["conv1.weight", "fc.*"]``.
        wiring: "cached" (keeps the wiring: 4 B per virtual weight held between steps at ``block=1``, 12 + 8/block
            B with blocks) or "recompute" (nothing kept, rebuilt at every generation).
        block: 1 (default) is the paper's element-wise permutation: every weight reads its own pseudo-random
            entry. ``block > 1`` moves runs of ``block`` consecutive weights together, so weight j+1 reads the
            entry after weight j's and most 3x3 kernels become sign-flipped near-copies of another kernel (same
            use counts and sign balance, different structure: see ``modelring.wiring_report``); kept for
            comparison with earlier results.
        init_std: the rings' initial std: None (each ring: the RMS of its layers' Kaiming fan-in stds), a number,
            or "global" (the value one global ring over every generated weight would get; with local rings this
            starts every ring alike, separating what local sharing does from what each layer's own start does).
        strict: refuse sizes that are almost always mistakes: a ring with more entries than the weights it
            generates (the extra entries are never read), or an int ``ring_size`` of at most 100 that is under
            0.1% of the generated weights (a percentage written as an int: 5 for 5%). ``strict=False`` allows both.

    Returns:
        The same model object, converted.
    """
    if is_converted(model):
        raise ValueError("this model is already converted; call modelring.materialize(model) to get a plain "
                         "model first, or convert a fresh model")
    inner = next((name for name, m in model.named_modules() if name and is_converted(m)), None)
    if inner is not None:
        raise ValueError(f"submodule {inner!r} is already converted; convert the whole model once (use rings= "
                         "for separate rings per part), or materialize the submodule first")
    _check_options(seed=seed, sampling=sampling, wiring=wiring, block=block, scale=scale)
    targets = select_targets(model, include=include, exclude=exclude)
    groups = _group_targets(targets, ring_size, rings)
    if strict:
        _check_not_a_percentage(ring_size, sum(p.numel() for p, _ in targets.values()))
    if init_std == "global":
        init_std = ring_scales([(n, tuple(p.shape)) for n, (p, _) in targets.items()], scale)[1]
    elif init_std is not None and (isinstance(init_std, bool) or not isinstance(init_std, (int, float))
                                   or not math.isfinite(init_std) or init_std <= 0):
        raise ValueError(f"init_std must be None, a positive number or 'global', got {init_std!r}")
    specs = []
    for index, (names, size) in enumerate(groups):
        named = [(n, tuple(targets[n][0].shape)) for n in names]
        scales, ring_std = ring_scales(named, scale, None if init_std is None else float(init_std))
        segments = _segments(named, scales)
        total = sum(s.numel for s in segments)
        elem = targets[names[0]][0].element_size()
        entries = resolve_ring_size(size, total, elem)
        if strict and entries > total:
            raise ValueError(f"ring size {size!r} gives {entries:,} entries for the {total:,} weights they generate "
                             f"({entries / total:.0%}): {entries - total:,} entries would never be read. Pass a "
                             "smaller size (a float in (0, 1] is a fraction of the generated weights), or "
                             "strict=False to allow it")
        specs.append(RingSpec(name=f"ring{index}", index=index, size=entries,
                              seed=seed, segments=tuple(segments), init_std=ring_std, block=block,
                              permute=permute, reflect=reflect, sampling=sampling, wiring=wiring))
    targets.clear()  # hold no reference to the weights being replaced (they are freed inside apply_specs)
    return apply_specs(model, specs)


def _check_not_a_percentage(ring_size, total: int) -> None:
    if isinstance(ring_size, int) and not isinstance(ring_size, bool) and 1 <= ring_size <= 100 \
            and ring_size * 1000 < total:
        raise ValueError(f"ring_size={ring_size} means {ring_size} ring entries, {ring_size / total:.4%} of the "
                         f"{total:,} generated weights; for {ring_size}% pass {ring_size / 100} (a float is a "
                         f"fraction), for {ring_size} entries pass strict=False")


def _check_options(*, seed, sampling, wiring, block, scale) -> None:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if wiring not in WIRING_MODES:
        raise ValueError(f"wiring must be one of {WIRING_MODES}, got {wiring!r}")
    if not isinstance(block, int) or isinstance(block, bool) or block < 1:
        raise ValueError(f"block must be a positive int, got {block!r}")
    if not (scale is None or callable(scale) or scale in SCALE_RULES):
        raise ValueError(f"scale must be one of {SCALE_RULES}, None or a callable (name, shape) -> float, "
                         f"got {scale!r}")


def select_targets(model: nn.Module, *, include=None, exclude=None) -> dict[str, tuple[torch.Tensor, nn.Module]]:
    """Parameters to generate, by name (first name of a shared parameter): name -> (parameter, owner)."""
    for label, value in (("include", include), ("exclude", exclude)):
        if isinstance(value, (str, type)):  # a bare "fc.*" would be read as the patterns "f", "c", ".", "*"
            shown = repr(value) if isinstance(value, str) else value.__name__
            raise TypeError(f"{label} must be a list of module types and/or name globs, got {value!r}; "
                            f"write {label}=[{shown}]")
    include = DEFAULT_TYPES if include is None else tuple(include)
    exclude = () if exclude is None else tuple(exclude)
    for item in include + exclude:
        if not (isinstance(item, str) or (isinstance(item, type) and issubclass(item, nn.Module))):
            raise TypeError(f"include/exclude items must be nn.Module subclasses or parameter-name globs, "
                            f"got {item!r}")
    owners = dict(model.named_modules())
    chosen, used = {}, set()
    for name, param in model.named_parameters():
        owner = owners[name.rpartition(".")[0]]
        hit_in = [i for i in include if _matches(i, name, owner)]
        hit_out = [i for i in exclude if _matches(i, name, owner)]
        used.update(map(_item_key, hit_in + hit_out))
        if hit_in and not hit_out:
            _check_generatable(name, param)
            chosen[name] = (param, owner)
    unused = [i for i in include + exclude if isinstance(i, str) and _item_key(i) not in used]
    if unused:
        names = [n for n, _ in model.named_parameters()][:6]
        raise ValueError(f"pattern(s) {unused} match no parameter of this model; parameter names look like "
                         f"{names}")
    if not chosen:
        raise ValueError("nothing to generate: no parameter matches include (default: the weight of conv and "
                         "linear layers) after exclude; pass include=[...] with module types or name globs")
    return chosen


def _item_key(item) -> str:
    return item if isinstance(item, str) else f"{item.__module__}.{item.__qualname__}"


def _matches(item, name: str, owner: nn.Module) -> bool:
    if isinstance(item, str):
        return fnmatch(name, item)
    return isinstance(owner, item) and name.rpartition(".")[2] == "weight"


def _check_generatable(name: str, param: torch.Tensor) -> None:
    if isinstance(param, nn.parameter.UninitializedParameter):
        raise ValueError(f"{name} is an uninitialised lazy parameter; run one forward pass before converting")
    if not param.is_floating_point():
        raise ValueError(f"{name} has dtype {param.dtype}; only floating-point parameters can be generated")


def _group_targets(targets: dict, ring_size, rings) -> list[tuple[list[str], RingSize]]:
    """Split target names into rings: [(names, size spec)], in model order."""
    names = list(targets)
    if rings is None:
        if ring_size is None:
            raise ValueError("ring_size is required (an int of entries, a float fraction in (0, 1], or a byte "
                             "budget like '2MB'), or pass rings= for local rings")
        return [(names, ring_size)]
    if callable(rings):
        return _group_by_callable(targets, ring_size, rings)
    if not isinstance(rings, Mapping) or not rings:
        raise TypeError(f"rings must be a non-empty mapping of name globs to sizes or a callable, got {rings!r}")
    groups = {pattern: [] for pattern in rings}
    rest = []
    for name in names:
        pattern = next((p for p in rings if fnmatch(name, p)), None)
        (groups[pattern] if pattern is not None else rest).append(name)
    empty = [p for p, members in groups.items() if not members]
    if empty:
        raise ValueError(f"ring pattern(s) {empty} match no generated parameter; generated names look like "
                         f"{names[:6]}")
    out = [(members, rings[p]) for p, members in groups.items()]
    if rest:
        if ring_size is None:
            raise ValueError(f"{len(rest)} generated parameter(s) match no ring pattern (e.g. {rest[:3]}); "
                             "add a pattern for them or pass ring_size= for a ring holding the rest")
        out.append((rest, ring_size))
    return out


def _group_by_callable(targets: dict, ring_size, group_of: Callable) -> list[tuple[list[str], RingSize]]:
    if ring_size is None:
        raise ValueError("with a grouping callable, ring_size sizes each group: pass ring_size=")
    groups: dict[str, list[str]] = {}
    for name, (_, owner) in targets.items():
        groups.setdefault(str(group_of(name, owner)), []).append(name)
    members = list(groups.values())
    if isinstance(ring_size, float):
        return [(m, ring_size) for m in members]
    totals = [sum(targets[n][0].numel() for n in m) for m in members]
    grand = resolve_ring_size(ring_size, sum(totals), targets[members[0][0]][0].element_size())
    return list(zip(members, split_proportional(grand, totals)))


def split_proportional(count: int, weights: list[int]) -> list[int]:
    """Split ``count`` into integer parts proportional to ``weights`` (largest remainder, each part >= 1)."""
    if count < len(weights):
        raise ValueError(f"a ring size of {count} cannot give each of {len(weights)} rings at least one entry")
    total = sum(weights)
    exact = [count * w / total for w in weights]
    parts = [max(1, math.floor(x)) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in order[: count - sum(parts)]:
        parts[i] += 1
    while sum(parts) > count:  # only when the max(1, .) floor pushed the sum over
        parts[max(range(len(parts)), key=lambda i: parts[i])] -= 1
    return parts


BYTE_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?i?B)\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def resolve_ring_size(size: RingSize, total: int, element_size: int = 4) -> int:
    """Ring entries for a size spec: int entries, float fraction of ``total``, or a byte budget string."""
    if isinstance(size, bool) or not isinstance(size, (int, float, str)):
        raise TypeError(f"ring size must be an int, a float in (0, 1] or a byte string like '2MB', got {size!r}")
    if isinstance(size, int):
        if size < 1:
            raise ValueError(f"ring size must be at least 1 entry, got {size}")
        return size
    if isinstance(size, float):
        if not (0.0 < size <= 1.0):
            raise ValueError(f"a float ring size is a fraction of the {total:,} generated weights and must be "
                             f"in (0, 1], got {size}; pass an int for a number of entries")
        return max(1, round(size * total))
    match = BYTE_SIZE.match(size)
    if not match:
        raise ValueError(f"cannot read ring size {size!r}; use e.g. '2MB', '1.5MiB' or '800kB'")
    entries = int(float(match.group(1)) * _UNITS[match.group(2).lower()]) // element_size
    if entries < 1:
        raise ValueError(f"ring size {size!r} is smaller than one {element_size}-byte entry")
    return entries


def target_std(rule, name: str, shape: tuple[int, ...]) -> float | None:
    """sigma_i: the standard deviation a layer's weights should start with (Kaiming: sqrt(2 / fan))."""
    if rule is None:
        return None
    if callable(rule):
        return float(rule(name, shape))
    receptive = math.prod(shape[2:])
    fan_in = shape[1] * receptive if len(shape) >= 2 else max(1, math.prod(shape))
    fan_out = shape[0] * receptive if len(shape) >= 2 else max(1, math.prod(shape))
    return math.sqrt(2.0 / (fan_in if rule == "fan_in" else fan_out))


def ring_scales(named: list[tuple[str, tuple[int, ...]]], rule, init_std: float | None = None
                ) -> tuple[list[float], float]:
    """Per-layer scales c_i and the ring's initial std sigma_W, with c_i * sigma_W = sigma_i.

    sigma_W is the RMS of the sigma_i over all virtual weights, so c_i is near 1 for the bulk of the weights:
    a layer's own gradient then moves its weights about as fast as in the dense model (a ring initialised at
    unit variance with c_i = sigma_i would learn ~fan/2 times slower behind BatchNorm). ``rule=None`` means
    c_i = 1 and the ring starts at the fan-in RMS. ``init_std`` fixes sigma_W instead (the c_i still give each
    layer its sigma_i under a scale rule).
    """
    stds = [target_std(rule or "fan_in", name, shape) for name, shape in named]
    sizes = [math.prod(shape) for _, shape in named]
    ring_std = init_std if init_std is not None else math.sqrt(sum(n * s * s for n, s in zip(sizes, stds)) / sum(sizes))
    if rule is None:
        return [1.0] * len(named), ring_std
    if ring_std == 0.0:
        return [0.0] * len(named), 1.0
    return [s / ring_std for s in stds], ring_std


def _segments(named: list[tuple[str, tuple[int, ...]]], scales: list[float]) -> list[Segment]:
    segments, offset = [], 0
    for (name, shape), scale in zip(named, scales):
        segments.append(Segment(name, shape, scale, offset))
        offset += math.prod(shape)
    return segments


def rings_by_prefix(prefixes, rest: str = "rest") -> Callable[[str, nn.Module], str]:
    """A grouping for ``convert(rings=...)``: one ring per module-name prefix, one more for the rest.

    Example: ``convert(model, 0.05, rings=rings_by_prefix(["layer1", "layer2", "layer3"]))``.
    """
    prefixes = list(prefixes)

    def group_of(name: str, module: nn.Module) -> str:
        return next((p for p in prefixes if name == p or name.startswith(p + ".")), rest)

    return group_of


def rings_per_stage(model: nn.Module) -> Callable[[str, nn.Module], str]:
    """One ring per stage: the model's ``stage_names()`` when it has them, else its top-level children."""
    stages = model.stage_names() if hasattr(model, "stage_names") else [n for n, _ in model.named_children()]
    return rings_by_prefix(stages)


def apply_specs(model: nn.Module, specs: list[RingSpec], *, init: bool = True) -> nn.Module:
    """Install rings described by ``specs`` on ``model`` (used by ``convert`` and by ``load``)."""
    params = dict(model.named_parameters())
    if hasattr(model, BANK):
        raise ValueError(f"the model already has an attribute {BANK!r}, where convert puts the rings")
    for spec in specs:  # validate everything before touching the model: an error leaves it unchanged
        check_spec_fits(model, spec, params)
    rings, all_owners = [], []
    for spec in specs:
        first = params[spec.segments[0].name]
        owners = [_owners_of(model, params[seg.name]) for seg in spec.segments]
        value = initial_ring(spec, first.dtype, first.device) if init else torch.zeros(
            spec.size, dtype=first.dtype, device=first.device)
        rings.append(Ring(spec, value))
        for seg, owner_list in zip(spec.segments, owners):
            watch_replaced(params[seg.name], seg.name)
            for module, name in owner_list:
                del module._parameters[name]
        all_owners.append(owners)
    del params, first  # the replaced weights are freed before the first generation allocates its own
    state = RingBank(rings, all_owners)
    if isinstance(model, CONTAINERS):  # its forward and its users iterate over its children
        model._modules = _ContainerChildren(model._modules)
    model.add_module(BANK, state)
    _install_hooks(model, state)
    with torch.no_grad():
        state.write_weights(detach=True)
    return model


# id(weight) -> (weak reference, name) of the weights convert replaced; by identity, since tensors compare by value
_REPLACED: dict[int, tuple[weakref.ref, str]] = {}
_STEP_HOOK: list = []


def watch_replaced(param: torch.Tensor, name: str) -> None:
    """Remember a weight that ``convert`` replaced by a ring: an optimizer still stepping it was made too early."""
    key = id(param)
    _REPLACED[key] = (weakref.ref(param, lambda _: _REPLACED.pop(key, None)), name)
    if not _STEP_HOOK:
        _STEP_HOOK.append(register_optimizer_step_pre_hook(_check_optimizer))


def _check_optimizer(optimizer, args, kwargs) -> None:
    """Global optimizer pre-step hook, acting on each optimizer's first step only."""
    if getattr(optimizer, "_modelring_checked", False):
        return
    optimizer._modelring_checked = True
    stale = [_REPLACED[id(p)][1] for group in optimizer.param_groups for p in group["params"]
             if id(p) in _REPLACED and _REPLACED[id(p)][0]() is p]
    if stale:
        raise RuntimeError(f"this optimizer was created before modelring.convert(): it steps {len(stale)} weight(s) "
                           f"that convert replaced by a ring (e.g. {stale[0]!r}) and not the ring itself, so "
                           "training would change nothing that the model uses; create the optimizer after convert "
                           "(model.parameters() then yields the rings)")


def check_spec_fits(model: nn.Module, spec: RingSpec, params: dict) -> None:
    """The model has every parameter the spec generates, with its shape, and one dtype/device."""
    first = None
    for seg in spec.segments:
        if seg.name not in params:
            raise ValueError(f"the spec generates {seg.name!r}, which this model does not have; the model "
                             "must be built exactly as the one that was converted")
        p = params[seg.name]
        if tuple(p.shape) != seg.shape:
            raise ValueError(f"{seg.name} has shape {tuple(p.shape)} here but {seg.shape} in the spec")
        first = first if first is not None else (seg.name, p)
        if p.dtype != first[1].dtype or p.device != first[1].device:
            raise ValueError(f"all weights of one ring must share dtype and device: {seg.name} is {p.dtype} on "
                             f"{p.device}, {first[0]} is {first[1].dtype} on {first[1].device}")


def _owners_of(model: nn.Module, param: torch.Tensor) -> list[tuple[nn.Module, str]]:
    """Every (module, attribute) that holds ``param`` (a tied parameter has several)."""
    return [(m, n) for m in model.modules() for n, p in m._parameters.items() if p is param]


def _install_hooks(model: nn.Module, state: RingBank) -> None:
    owner_modules = {id(m) for owners in state.owners for seg in owners for m, _ in seg}
    enter, leave = _EnterHook(state), _ExitHook(state)
    for module in _ancestors_of(model, owner_modules):
        hook = _EnterHook(state, root=True) if module is model else enter
        state.handles.append(module.register_forward_pre_hook(hook))
        state.handles.append(module.register_forward_hook(leave, always_call=True))
    state.handles.append(model.register_load_state_dict_pre_hook(_LegacyStateDictHook()))


def _ancestors_of(model: nn.Module, owner_ids: set[int]) -> list[nn.Module]:
    """Modules whose subtree holds a generated weight: any of them can be the entry point of a forward."""
    memo: dict[int, bool] = {}

    def holds(module: nn.Module) -> bool:
        if id(module) not in memo:
            memo[id(module)] = False  # guards against cycles in odd module graphs
            memo[id(module)] = id(module) in owner_ids or any(holds(c) for c in module.children())
        return memo[id(module)]

    return [m for m in model.modules() if holds(m)]


def materialize(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """A plain model with the generated weights baked in as ordinary parameters.

    Args:
        model: a converted model.
        inplace: strip ``model`` itself instead of a deep copy.

    Returns:
        A model of the original classes, without hooks or rings, with the same outputs; it runs and saves
        without modelring.
    """
    state = get_state(model)
    if state is None:
        raise ValueError("materialize() needs a model converted with modelring.convert(); this one is plain")
    if not inplace:
        model = copy.deepcopy(model)
        state = get_state(model)
    with torch.no_grad():
        for i, gen in enumerate(state.generators):
            ring = state.ring(i)
            for tensor, owners in zip(gen.weights(ring), state.owners[i]):
                param = nn.Parameter(tensor.detach().clone(), requires_grad=ring.requires_grad)
                for module, attr in owners:
                    module.__dict__.pop(attr, None)
                    module._parameters[attr] = param
    for handle in state.handles:
        handle.remove()
    del model._modules[BANK]
    if isinstance(model._modules, _ContainerChildren):
        model._modules = dict(model._modules.items())
    return model

