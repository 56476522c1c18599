"""The adapter verbs: ``adapt`` (plan rings with ``modelring.plan`` and apply them as deltas), ``set_adapter``
(switch the applied one), ``merge`` (W0 += ΔW, back to the plain model, or kept adapted with ``unload=False``),
``unmerge`` (W0 -= ΔW), and ``apply_adapter`` (install an adapter
that a list of specs describes; what ``adapt`` and loading an adapter file use)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from fnmatch import fnmatch

import torch
from torch import nn

from ..bank import CONTAINERS, ContainerChildren, get_state, install_hooks, is_converted, owners_of
from ..convert import check_spec_fits
from ..generate import initial_ring
from ..plan import plan_rings
from ..sizes import RingSize
from ..spec import ADAPTERS, BANK, RingSpec
from ..vocab import ADAPTER_INITS
from .bank import Adapter, AdapterBank, AdapterRing, get_adapters


def adapt(model: nn.Module, ring_size: RingSize | None = None, *, name: str = "default", seed: int = 0,
          include=None, exclude=None, rings: Mapping[str, RingSize] | Callable | str | None = None,
          permute: bool = True, reflect: bool = True, sampling: str = "even", scale: str | Callable | None = None,
          init: str = "zeros", init_std: float | str | None = None, trainable_scale: bool = False,
          train: list[str] | None = None, wiring: str = "cached", block: int = 1, strict: bool = True) -> nn.Module:
    """Fine-tune a trained model through a ring adapter, in place: W_i = W0_i + c_i · D_i · S_i · ring, W0 frozen.

    The targeted weights stay in their modules as frozen parameters (the base W0); every forward uses W0 + ΔW,
    with ΔW generated from the adapter's ring(s) by the same wiring as ``convert``. Every other parameter of the
    model is frozen too (as PEFT does), except those named by ``train``. Calling ``adapt`` again with another
    ``name`` adds a second adapter on the same base and makes it the active one (``set_adapter`` switches).

    Args:
        model: a trained ``nn.Module`` (not converted); adapted in place and returned.
        ring_size: ring entries (int), fraction of the adapted weights (float in (0, 1]) or a byte budget; as in
            ``convert`` (with ``rings``, the size of every group or of the unmatched rest).
        name: the adapter's name (an identifier); a name already used is refused.
        seed, include, exclude, rings, permute, reflect, sampling, scale, wiring, block, strict: as in
            ``convert`` (targets: by default the weight of every conv, conv-transpose and linear layer).
        init: "zeros" (default: the adapted model is exactly the base, and the ring still gets a gradient) or
            "random" (the ring's usual start, N(0, init_std^2), which moves the model away from the base).
        init_std: the rings' std for ``init="random"`` (as in ``convert``: None is the layers' fan-in RMS).
        trainable_scale: train each layer's scale c_i too (a factor g_i starting at 1, one scalar per adapted
            weight, counted as trainable).
        train: parameter-name globs of the model's own parameters to leave trainable (e.g. ``["fc.*"]`` for a
            new classifier, ``["*.bias"]``); None freezes everything but the adapter. They belong to the model,
            so several adapters share them; an adapted weight's base always stays frozen.

    Returns:
        The same model object, adapted.
    """
    _refuse_converted(model)
    bank = get_adapters(model)
    _refuse_merged(bank, "adapt")
    if init not in ADAPTER_INITS:
        raise ValueError(f"init must be one of {ADAPTER_INITS}, got {init!r}")
    _check_name(name, bank)
    if bank is not None:  # the earlier adapters' rings are parameters too; they are never targets
        exclude = [*(exclude or []), f"{ADAPTERS}.*"]
    specs = plan_rings(model, ring_size, seed=seed, permute=permute, reflect=reflect, sampling=sampling,
                       scale=scale, rings=rings, include=include, exclude=exclude, wiring=wiring, block=block,
                       strict=strict, init_std=init_std if init == "random" else None)
    trained = _trained_names(model, train, {seg.name for spec in specs for seg in spec.segments})
    return apply_adapter(model, specs, name=name, init=init, trainable_scale=trainable_scale, trained=trained)


def apply_adapter(model: nn.Module, specs: list[RingSpec], *, name: str = "default", init: str = "zeros",
                  trainable_scale: bool = False, trained: list[str] = ()) -> nn.Module:
    """Install adapter ``name`` with rings described by ``specs`` on ``model`` and make it active; freeze every
    parameter except the adapter's and ``trained`` (exact parameter names). Used by ``adapt`` and by loading.

    Returns:
        The same model object, adapted.
    """
    _refuse_converted(model)
    bank = get_adapters(model)
    _refuse_merged(bank, "apply_adapter")
    _check_name(name, bank)
    params = dict(model.named_parameters())
    for spec in specs:  # validate everything before touching the model: an error leaves it unchanged
        check_spec_fits(model, spec, params)
    rings, owners = [], []
    for spec in specs:
        first = params[spec.segments[0].name]
        value = (initial_ring(spec, first.dtype, first.device) if init == "random"
                 else torch.zeros(spec.size, dtype=first.dtype, device=first.device))
        rings.append(AdapterRing(spec, value, trainable_scale=trainable_scale))
        owners.append([owners_of(model, params[seg.name]) for seg in spec.segments])
    if bank is None:
        bank = AdapterBank()
        bank.restore = {n: p.requires_grad for n, p in params.items()}
        if isinstance(model, CONTAINERS) and not isinstance(model._modules, ContainerChildren):
            model._modules = ContainerChildren(model._modules)  # its forward iterates over its children
        model.add_module(ADAPTERS, bank)
    bank.add_module(name, Adapter(rings, owners, trained=trained))
    _reinstall_hooks(model, bank)
    return set_adapter(model, name)


def set_adapter(model: nn.Module, name: str) -> nn.Module:
    """Apply adapter ``name`` from now on (the others stay stored, unapplied and frozen); the active adapter and
    the parameters it was told to train are the only trainable tensors.

    Returns:
        The same model object.
    """
    bank = _bank_of(model, "set_adapter")
    _refuse_merged(bank, "set_adapter")
    if name not in bank.adapters:
        raise ValueError(f"no adapter {name!r} on this model; it has {sorted(bank.adapters)}")
    bank.clear_weights()
    bank.active = name
    trained = set(bank.current().trained)
    for pname, param in model.named_parameters():
        if not pname.startswith(f"{ADAPTERS}."):
            param.requires_grad_(pname in trained)
    for aname, adapter in bank.adapters.items():
        for param in adapter.parameters():
            param.requires_grad_(aname == name)
    return model


def merge(model: nn.Module, *, unload: bool = True) -> nn.Module:
    """Bake the active adapter into the base, in place: W0 += ΔW.

    With ``unload=True`` (default) every adapter and hook is then removed: the result is the plain model (original
    classes and parameters, no modelring needed to run it) with the same outputs as the adapted model (bit for
    bit: the same addition), and parameters ``adapt`` froze get back their earlier ``requires_grad``. That is
    final: to go back, keep the adapter file (``modelring.save``) or a copy.

    With ``unload=False`` the adapters stay on the model, frozen, and forwards run the plain layers on the merged
    weights (inference at dense speed); ``unmerge`` takes ΔW out again to train on or switch adapters. While merged,
    ``set_adapter``, ``adapt`` and ``modelring.save`` refuse (the bases no longer are the base).

    Returns:
        The same model object: plain with ``unload=True``, still adapted (and merged) otherwise.
    """
    bank = _bank_of(model, "merge")
    bank.clear_weights()
    if bank.merged is None:
        _add_deltas(bank.current(), sign=1)
    if not unload:
        bank.merged = bank.active
        for param in bank.parameters():
            param.requires_grad_(False)
        return model
    for handle in bank.handles:
        handle.remove()
    del model._modules[ADAPTERS]
    if isinstance(model._modules, ContainerChildren) and BANK not in model._modules:
        model._modules = dict(model._modules.items())
    for pname, param in model.named_parameters():
        param.requires_grad_(bank.restore.get(pname, param.requires_grad))
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Undo ``merge(model, unload=False)``: W0 -= ΔW (the same ΔW, regenerated bit for bit from the ring), and the
    adapter is applied and trainable again.

    In floating point (W0 + ΔW) - ΔW is W0 up to one rounding of the merged sum: each restored weight is within
    half an ulp of max(|W0|, |ΔW|) of the original, exact wherever the sum was exact. Keep a copy of the base, or
    reload it, where bits matter.

    Returns:
        The same model object, adapted and unmerged.
    """
    bank = _bank_of(model, "unmerge")
    if bank.merged is None:
        raise ValueError("unmerge() needs a model merged with modelring.merge(model, unload=False); this one is not "
                         "merged")
    _add_deltas(bank.current(), sign=-1)
    bank.merged = None
    return set_adapter(model, bank.active)


def _add_deltas(adapter, sign: int) -> None:
    """W0 += sign · ΔW for every weight ``adapter`` adapts (exactly the forward's base + delta for sign 1)."""
    with torch.no_grad():
        for ring, bases in zip(adapter.rings, adapter.bases()):
            for delta, base in zip(ring.deltas(), bases):
                base.add_(delta) if sign > 0 else base.sub_(delta)


def _reinstall_hooks(model: nn.Module, bank: AdapterBank) -> None:
    """Hooks above the weights of every adapter (a new adapter may target others)."""
    for handle in bank.handles:
        handle.remove()
    bank.handles = []
    install_hooks(model, bank, legacy=False)


def _refuse_converted(model: nn.Module) -> None:
    if get_state(model) is not None or any(is_converted(m) for m in model.modules()):
        raise ValueError("this model is converted (its weights are generated from rings); adapters fine-tune a "
                         "plain trained model: call modelring.materialize(model) first, then adapt the result")


def _refuse_merged(bank: AdapterBank | None, verb: str) -> None:
    if bank is not None and bank.merged is not None:
        raise ValueError(f"{verb}() on a model whose adapter {bank.merged!r} is merged into its base weights "
                         "(modelring.merge(model, unload=False)): call modelring.unmerge(model) first")


def _check_name(name, bank: AdapterBank | None) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"an adapter name must be an identifier, got {name!r}")
    if bank is not None and name in bank.adapters:
        raise ValueError(f"this model already has an adapter named {name!r}; pick another name, or "
                         "modelring.set_adapter(model, name) to use it")


def _bank_of(model: nn.Module, verb: str) -> AdapterBank:
    bank = get_adapters(model)
    if bank is None:
        raise ValueError(f"{verb}() needs a model adapted with modelring.adapt(); this one has no adapter")
    return bank


def _trained_names(model: nn.Module, train, targets: set[str]) -> list[str]:
    """Names of the model's parameters matched by the ``train`` globs (never an adapted weight's base)."""
    if train is None:
        return []
    if isinstance(train, str):
        raise TypeError(f"train must be a list of parameter-name globs, got {train!r}; write train=[{train!r}]")
    names = [n for n, _ in model.named_parameters() if not n.startswith(f"{ADAPTERS}.")]
    matched = names_matching(names, train, "train")
    adapted = sorted(n for n in matched if n in targets)
    if adapted:
        raise ValueError(f"train matches {adapted[:3]}, which the adapter adapts: their base stays frozen (the "
                         "adapter trains them); exclude them from train or from the adapter's targets")
    return matched


def names_matching(names: list[str], globs, what: str) -> list[str]:
    """The ``names`` matched by one of ``globs``, in order; a glob that matches none is an error naming ``what``
    (the option the globs came from)."""
    unused = [g for g in globs if not any(fnmatch(n, g) for n in names)]
    if unused:
        raise ValueError(f"{what} pattern(s) {unused} match no parameter of this model; names look like {names[:6]}")
    return [n for n in names if any(fnmatch(n, g) for g in globs)]
