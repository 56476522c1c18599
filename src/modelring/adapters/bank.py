"""The adapters' modules: ``AdapterRing`` (a ring whose generation is a weight *delta*), ``Adapter`` (one named
adapter: its rings and where their deltas go) and ``AdapterBank`` (every adapter of a model, the active one, and
the hooks' state).

Where the base lives: every adapted weight W0 stays in its module as the parameter it always was
(``module._parameters["weight"]``), frozen (``requires_grad=False``). Keeping it a parameter rather than moving it
to a buffer keeps the model's state_dict keys, ``.to()``/``.half()`` and tied weights exactly as they were, keeps
DDP from broadcasting the whole base every forward (it broadcasts buffers, and skips frozen parameters), and is what
PEFT users expect (``named_parameters()`` lists the frozen base). For a forward, the hooks of ``modelring.bank``
write W0 + ΔW into the module's ``__dict__`` under the same name, where attribute lookup finds it before
``_parameters``; when the outermost forward returns the entry is removed, so outside a forward ``module.weight`` is
the frozen base W0 and nothing beyond the ring's own generation is held between steps.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from ..bank import Ring
from ..spec import ADAPTERS, RingSpec

Owners = list[list[tuple[nn.Module, str]]]  # per segment: every (module, attribute) holding that weight


class AdapterRing(Ring):
    """A ring whose generated tensors are added to frozen base weights: ΔW_k = g_k · c_k · D_k · S_k · ring.

    ``gain`` (present with ``trainable_scale``) is a trainable per-segment factor g_k starting at 1, so the
    effective per-layer scale c_k · g_k is trained while the spec keeps the planned c_k.
    """

    def __init__(self, spec: RingSpec, value: torch.Tensor, *, trainable_scale: bool = False):
        super().__init__(spec, value)
        gain = torch.ones(len(spec.segments), dtype=value.dtype, device=value.device)
        self.register_parameter("gain", nn.Parameter(gain) if trainable_scale else None)

    def deltas(self) -> list[torch.Tensor]:
        """ΔW of every segment (autograd to the ring and the gain when grad mode is on)."""
        tensors = self()
        if self.gain is None:
            return tensors
        return [tensor * self.gain[k] for k, tensor in enumerate(tensors)]


class Adapter(nn.Module):
    """One named adapter: its rings (children ``ring0``, ...) and, for each ring, the owners of every weight it
    adapts. ``trained`` names the model's own parameters this adapter was told to leave trainable (``train=``)."""

    def __init__(self, rings: list[AdapterRing], owners: list[Owners], *, trained: list[str]):
        super().__init__()
        for ring in rings:
            self.add_module(ring.spec.name, ring)
        self.owners = owners
        self.trained = list(trained)

    @property
    def rings(self) -> list[AdapterRing]:
        return list(self.children())

    @property
    def specs(self) -> list[RingSpec]:
        return [ring.spec for ring in self.rings]

    @property
    def trainable_scale(self) -> bool:
        return self.rings[0].gain is not None

    def adapter_parameters(self) -> list[nn.Parameter]:
        """The adapter's own trainable tensors: rings and gains."""
        return list(self.parameters())

    def bases(self) -> list[list[torch.Tensor]]:
        """W0 of every adapted weight, per ring and segment: looked up now (``.to()`` may have replaced it)."""
        return [[owners[0][0]._parameters[owners[0][1]] for owners in ring_owners] for ring_owners in self.owners]


class AdapterBank(nn.Module):
    """Every adapter of a model (``model.modelring_adapters``), by name, and which one is applied (``active``).

    Only the active adapter is applied and trainable; the others keep their values, frozen, until
    ``set_adapter`` switches. ``restore`` remembers the parameters ``adapt`` froze, so ``merge`` can thaw them.
    ``merged`` names the adapter that ``merge(model, unload=False)`` added into the bases (None otherwise): while
    set, forwards run the plain layers on W0 + ΔW and nothing is generated or trainable until ``unmerge``.
    """

    attribute = ADAPTERS  # the root's child it is (checked by the root's EnterHook)

    def __init__(self):
        super().__init__()
        self.active: str | None = None
        self.handles: list = []
        self.depth = 0
        self.restore: dict[str, bool] = {}  # parameter name -> requires_grad before the first adapt
        self.merged: str | None = None  # the adapter baked into the bases by merge(unload=False), until unmerge

    @property
    def adapters(self) -> dict[str, Adapter]:
        return dict(self.named_children())

    def current(self) -> Adapter:
        return self._modules[self.active]

    @property
    def owners(self) -> list[Owners]:
        """Owners of every adapted weight of every adapter (where the hooks go)."""
        return [ring_owners for adapter in self.children() for ring_owners in adapter.owners]

    def write_weights(self, detach: bool) -> None:
        """Entering a forward (``detach=False``): write W0 + ΔW of the active adapter into the owning modules'
        attributes. Leaving it (``detach=True``): remove them, so the attributes read the frozen base again."""
        if detach or self.active is None or self.merged is not None:  # merged: the bases already hold W0 + ΔW
            self.clear_weights()
            return
        adapter = self.current()
        for ring, ring_owners, bases in zip(adapter.rings, adapter.owners, adapter.bases()):
            for delta, owners, base in zip(ring.deltas(), ring_owners, bases):
                weight = base + delta
                for module, attr in owners:
                    module.__dict__[attr] = weight

    def clear_weights(self) -> None:
        """Remove every written W0 + ΔW (of every adapter) from the modules' attributes."""
        for ring_owners in self.owners:
            for owners in ring_owners:
                for module, attr in owners:
                    module.__dict__.pop(attr, None)


def get_adapters(model: nn.Module) -> AdapterBank | None:
    """The ``AdapterBank`` of an adapted model, or None."""
    bank = model._modules.get(ADAPTERS)
    return bank if isinstance(bank, AdapterBank) else None


def is_adapted(model: nn.Module) -> bool:
    """Whether ``model`` carries ring adapters (``modelring.adapt``)."""
    return get_adapters(model) is not None


def adapter_ring_names(model: nn.Module) -> set[str]:
    """Parameter names of every adapter ring of ``model`` (empty for a model without adapters)."""
    bank = get_adapters(model)
    if bank is None:
        return set()
    return {f"{ADAPTERS}.{name}.{ring.spec.name}.weight" for name, adapter in bank.adapters.items()
            for ring in adapter.rings}


def adapter_gain_names(model: nn.Module) -> set[str]:
    """Parameter names of every adapter's trainable per-layer gains (empty without ``trainable_scale``)."""
    bank = get_adapters(model)
    if bank is None:
        return set()
    return {f"{ADAPTERS}.{name}.{ring.spec.name}.gain" for name, adapter in bank.adapters.items()
            for ring in adapter.rings if ring.gain is not None}


def base_fingerprint(params: dict[str, torch.Tensor], specs: list[RingSpec]) -> str:
    """SHA-256 of the base weights an adapter is trained on: for every adapted weight in spec order (ring, then
    segment), its name, dtype, shape and raw bytes. An adapter loads only onto a base with the same fingerprint."""
    digest = hashlib.sha256()
    for spec in specs:
        for seg in spec.segments:
            tensor = params[seg.name].detach()
            digest.update(f"{seg.name}|{str(tensor.dtype).removeprefix('torch.')}|{list(tensor.shape)}|".encode())
            raw = tensor.cpu().contiguous().reshape(-1).view(torch.uint8)
            digest.update(raw.numpy().tobytes())
    return digest.hexdigest()
