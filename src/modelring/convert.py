"""The verbs: ``convert`` a model to generate its weights from model rings, ``materialize`` it back to a plain
model, and ``apply_specs`` (install the rings a list of specs describes; what ``modelring.io.load`` uses).

``convert`` is planning (``modelring.plan``: options -> ring specs) plus applying the specs (``modelring.bank``:
the rings and the hooks). State dicts of earlier releases still load (``modelring.compat``).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
from torch import nn

from .bank import CONTAINERS, BANK, ContainerChildren, Ring, RingBank, get_state, install_hooks, is_converted, owners_of
from .compat import moved_names
from .generate import initial_ring
from .guard import watch_replaced
from .plan import DEFAULT_TYPES, plan_rings, rings_by_prefix, rings_per_stage  # noqa: F401 (the public verbs' kin)
from .sizes import RingSize
from .spec import ADAPTERS, RingSpec

# names that lived here before planning, the ring bank, the spec, sizes and the guard got rooms of their own
__getattr__ = moved_names(__name__, {
    "ring_names": "modelring.bank",
    "_ContainerChildren": "modelring.bank:ContainerChildren", "_EnterHook": "modelring.bank:EnterHook",
    "_ExitHook": "modelring.bank:ExitHook", "_owners_of": "modelring.bank:owners_of",
    "_install_hooks": "modelring.bank:install_hooks",
    **dict.fromkeys(("SCALE_RULES", "select_targets", "ring_scales", "target_std"), "modelring.plan"),
    "_segments": "modelring.plan:segments_of",
    **dict.fromkeys(("BYTE_SIZE", "resolve_ring_size", "split_proportional"), "modelring.sizes"),
    **dict.fromkeys(("EXTRA", "encode_spec", "decode_spec", "spec_mismatch"), "modelring.spec"),
    "_readable_spec": "modelring.spec:readable_spec",
    "LEGACY_SPEC_KEY": "modelring.spec:FILE_SPEC_KEY", "LEGACY_RING_PREFIX": "modelring.spec:FILE_RING_PREFIX",
    "_LegacyStateDictHook": "modelring.compat:LegacyStateDictHook",
    "_check_optimizer": "modelring.guard:_check_optimizer",
})


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
        rings: local rings: a mapping of parameter-name globs to sizes (first match wins), a callable
            (name, module) -> group name with one ring per group (see ``rings_by_prefix``), or the words
            "per_stage" (``rings_per_stage``) / "per_layer" (one ring per generated parameter).
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
    if any(ADAPTERS in m._modules for m in model.modules()):
        raise ValueError("this model carries ring adapters (modelring.adapt); merge them first "
                         "(modelring.merge(model)), then convert the plain model")
    inner = next((name for name, m in model.named_modules() if name and is_converted(m)), None)
    if inner is not None:
        raise ValueError(f"submodule {inner!r} is already converted; convert the whole model once (use rings= "
                         "for separate rings per part), or materialize the submodule first")
    specs = plan_rings(model, ring_size, seed=seed, permute=permute, reflect=reflect, sampling=sampling, scale=scale,
                       rings=rings, include=include, exclude=exclude, wiring=wiring, block=block, strict=strict,
                       init_std=init_std)
    return apply_specs(model, specs)


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
        owners = [owners_of(model, params[seg.name]) for seg in spec.segments]
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
        model._modules = ContainerChildren(model._modules)
    model.add_module(BANK, state)
    install_hooks(model, state)
    with torch.no_grad():
        state.write_weights(detach=True)
    return model


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
    if isinstance(model._modules, ContainerChildren):
        model._modules = dict(model._modules.items())
    return model

