"""Planning: from ``convert``'s options to ring specs, without touching the model.

Which parameters are generated (``select_targets``: module types and name globs), how they group into rings
(one global ring, a mapping of globs to sizes, a grouping callable, or the config words ``per_stage`` /
``per_layer``: ``grouping``), how large each ring is (``modelring.sizes``), which per-layer scale c_i and initial
std each ring gets (``ring_scales``), and so the ``RingSpec`` of every ring (``plan_rings``). ``convert`` applies
the plan.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from fnmatch import fnmatch

import torch
from torch import nn

from .sizes import RingSize, check_not_a_percentage, resolve_ring_size, split_proportional
from .spec import RingSpec, Segment
from .vocab import GROUPINGS, SAMPLINGS, SCALE_RULES, WIRING_MODES

DEFAULT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                 nn.Linear)


def plan_rings(model: nn.Module, ring_size: RingSize | None = None, *, seed: int = 0, permute: bool = True,
               reflect: bool = True, sampling: str = "even", scale: str | Callable | None = None,
               rings: Mapping[str, RingSize] | Callable | str | None = None, include=None, exclude=None,
               wiring: str = "cached", block: int = 1, strict: bool = True,
               init_std: float | str | None = None) -> list[RingSpec]:
    """The spec of every ring ``convert`` would install with these options (see ``convert`` for each option);
    the model is only read. Every option is checked here, before anything is built.

    Returns:
        One ``RingSpec`` per ring, in model order.
    """
    _check_options(seed=seed, sampling=sampling, wiring=wiring, block=block, scale=scale)
    targets = select_targets(model, include=include, exclude=exclude)
    groups = _group_targets(targets, ring_size, grouping(rings, model))
    if strict:
        check_not_a_percentage(ring_size, sum(p.numel() for p, _ in targets.values()))
    if init_std == "global":
        init_std = ring_scales([(n, tuple(p.shape)) for n, (p, _) in targets.items()], scale)[1]
    elif init_std is not None and (isinstance(init_std, bool) or not isinstance(init_std, (int, float))
                                   or not math.isfinite(init_std) or init_std <= 0):
        raise ValueError(f"init_std must be None, a positive number or 'global', got {init_std!r}")
    specs = []
    for index, (names, size) in enumerate(groups):
        named = [(n, tuple(targets[n][0].shape)) for n in names]
        scales, ring_std = ring_scales(named, scale, None if init_std is None else float(init_std))
        segments = segments_of(named, scales)
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
    return specs




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
        _refuse_tied_aliases(model, unused)
        names = [n for n, _ in model.named_parameters()][:6]
        raise ValueError(f"pattern(s) {unused} match no parameter of this model; parameter names look like "
                         f"{names}")
    if not chosen:
        raise ValueError("nothing to generate: no parameter matches include (default: the weight of conv and "
                         "linear layers) after exclude; pass include=[...] with module types or name globs")
    return chosen


def _refuse_tied_aliases(model: nn.Module, patterns: list[str]) -> None:
    """A glob that names only the second name of a tied parameter (GPT-2's ``lm_head.weight``, one tensor with
    ``transformer.wte.weight``) gets an error that names the first one: parameters are selected once, by it."""
    first = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        first.setdefault(id(param), name)
    for pattern in patterns:
        tied = {name: first[id(p)] for name, p in model.named_parameters(remove_duplicate=False)
                if fnmatch(name, pattern) and first[id(p)] != name}
        if tied:
            alias, original = next(iter(tied.items()))
            raise ValueError(f"pattern {pattern!r} matches {alias!r}, which is tied to {original!r} (one tensor, "
                             f"selected by its first name): write {original!r} instead; generating it generates "
                             "both and keeps them tied")


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


def segments_of(named: list[tuple[str, tuple[int, ...]]], scales: list[float]) -> list[Segment]:
    segments, offset = [], 0
    for (name, shape), scale in zip(named, scales):
        segments.append(Segment(name, shape, scale, offset))
        offset += math.prod(shape)
    return segments


def grouping(rings, model: nn.Module):
    """``rings`` as ``convert`` takes it: the config words ``per_stage`` (``rings_per_stage``) and ``per_layer``
    (each generated parameter its own ring) turned into grouping callables; anything else as it is."""
    if rings == "per_stage":
        return rings_per_stage(model)
    if rings == "per_layer":
        return per_layer
    if isinstance(rings, str):
        raise ValueError(f"rings (config: ring.rings) must be None (null), {' or '.join(GROUPINGS)}, a mapping "
                         f"glob -> size or a callable (name, module) -> group, got {rings!r}")
    return rings


def per_layer(name: str, module: nn.Module) -> str:
    """A grouping for ``convert(rings=...)``: every generated parameter its own ring (HashedNets' layout)."""
    return name


def rings_by_prefix(prefixes, rest: str = "rest") -> Callable[[str, nn.Module], str]:
    """A grouping for ``convert(rings=...)``: one ring per module-name prefix, one more for the rest.

    Example: ``convert(model, 0.05, rings=rings_by_prefix(["layer1", "layer2", "layer3"]))``.
    """
    prefixes = list(prefixes)

    def group_of(name: str, module: nn.Module) -> str:
        return next((p for p in prefixes if name == p or name.startswith(p + ".")), rest)

    return group_of


def rings_per_stage(model: nn.Module, rest: str = "rest") -> Callable[[str, nn.Module], str]:
    """One ring per stage: the model's ``stage_names()`` when it has them, else its top-level children; ``rest``
    names the group of everything outside them."""
    stages = model.stage_names() if hasattr(model, "stage_names") else [n for n, _ in model.named_children()]
    return rings_by_prefix(stages, rest)


