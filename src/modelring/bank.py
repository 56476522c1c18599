"""The ring bank: the ``Ring`` modules of a converted model and the hooks that put their generated weights where
the model's layers look for them.

``convert`` removes each generated parameter from its module and adds one ``Ring`` per group, gathered in a
``RingBank`` child of the root: ``model.modelring.ring0.weight`` is the trainable ring, ``model.modelring.ring0``
holds its spec (travelling in state_dicts as the module's extra state) and its generator. Forward pre-hooks on the
root and on every module above a generated weight write the generated tensors into the modules' attributes when the
outermost of those modules is entered, so the classes, attribute paths and forward signatures stay exactly as they
were; after the outermost forward returns, the attributes hold detached copies (safe to deep-copy, read or pickle).
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from .compat import LegacyStateDictHook
from .generate import RingGenerator
from .spec import BANK, EXTRA, HIDDEN_CHILDREN, RingSpec, encode_spec, readable_spec, spec_mismatch


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
            problem = spec_mismatch(readable_spec(theirs), self.spec.to_dict())
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

    attribute = BANK  # the root's child it is (checked by the root's EnterHook)

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

    def relay(self, module: nn.Module) -> None:
        """Entering ``module`` inside a forward: the weights it holds, and the rest of their generation groups, are
        written through relay nodes created now, so that the backward reduces each group's gradients into its ring
        as soon as they are complete instead of at the end (``elementwise.relay``; peak memory). Skipped without
        grad mode and while gradient energy is tracked (its hooks sit on the generation's own outputs)."""
        if not torch.is_grad_enabled() or self.energy is not None:
            return
        generators = self.generators
        for i, group in self._groups_held_by(generators).get(id(module), ()):
            tensors = generators[i].relayed(group)
            if tensors is None:
                continue
            first, stop = generators[i].segment_groups()[group]
            for tensor, owners in zip(tensors, self.owners[i][first:stop]):
                for owner, attr in owners:
                    owner.__dict__[attr] = tensor

    def _groups_held_by(self, generators: list[RingGenerator]) -> dict[int, list[tuple[int, int]]]:
        """id(module) -> the (ring, group) pairs whose weights it holds: a lookup per module entered, not a scan of
        every segment. The groups follow from the specs and the owners from this bank, so the map is built once per
        bank (a copy of the model has its own bank: ``id(self)``) once the generations have made their groups."""
        key = (id(self), tuple(len(gen.segment_groups()) for gen in generators))
        if getattr(self, "_held_key", None) != key:  # (a bank unpickled from an older release has neither)
            held: dict[int, list[tuple[int, int]]] = {}
            for i, gen in enumerate(generators):
                for group, (first, stop) in enumerate(gen.segment_groups()):
                    for seg in self.owners[i][first:stop]:
                        for module, _ in seg:
                            pairs = held.setdefault(id(module), [])
                            if (i, group) not in pairs:
                                pairs.append((i, group))
            self._held_key, self._held = key, held
        return self._held

    def forget_weights(self, i: int) -> None:
        """Drop ring ``i``'s latest generation from the modules and the cache (its memory can be reused)."""
        self.generators[i].clear()
        for owners in self.owners[i]:
            for module, attr in owners:
                module.__dict__.pop(attr, None)


class ContainerChildren(dict):
    """The child dict of a container root (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``) holding the ring
    bank: the container's own view (iteration, ``len``, indexing, ``keys``/``values``, so its forward and user
    loops) does not see the bank, while ``items()`` (what ``named_children``, ``parameters``, ``state_dict``,
    ``to`` and loading walk) does. The class of the container is unchanged."""

    def __iter__(self):
        return (key for key in dict.__iter__(self) if key not in HIDDEN_CHILDREN)

    def __len__(self) -> int:
        return dict.__len__(self) - sum(key in self for key in HIDDEN_CHILDREN)

    def keys(self):
        return [key for key in dict.keys(self) if key not in HIDDEN_CHILDREN]

    def values(self):
        return [module for key, module in dict.items(self) if key not in HIDDEN_CHILDREN]


CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class EnterHook:
    """Forward pre-hook: the outermost converted module entered writes fresh generated weights. On the root it also
    checks that the bank is still the root's child (``del``/``pop`` on a container rebuilds the children without it,
    and rings that ``parameters()`` no longer yields would silently stop training)."""

    def __init__(self, state: RingBank, *, root: bool = False):
        self.state = state
        self.root = root

    def __call__(self, module, args):
        if self.root and module._modules.get(self.state.attribute) is not self.state:
            raise RuntimeError(f"the ring bank {self.state.attribute!r} is no longer a child of this "
                               f"{type(module).__name__}: deleting "
                               "or popping a layer of a converted nn.Sequential/nn.ModuleList rebuilds its children "
                               "without it, so its rings would no longer be trained or saved; edit the model before "
                               "modelring.convert, or materialize it (modelring.materialize), edit, and convert again")
        self.state.depth += 1  # first: the always-called exit hook undoes it even if generation raises
        if self.state.depth == 1:
            self.state.write_weights(detach=False)
        elif hasattr(self.state, "relay"):
            self.state.relay(module)


class ExitHook:
    """Forward hook (always called): leaving the outermost module swaps in detached weights."""

    def __init__(self, state: RingBank):
        self.state = state

    def __call__(self, module, args, output):
        self.state.depth -= 1
        if self.state.depth == 0:
            self.state.write_weights(detach=True)


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


def owners_of(model: nn.Module, param: torch.Tensor) -> list[tuple[nn.Module, str]]:
    """Every (module, attribute) that holds ``param`` (a tied parameter has several)."""
    return [(m, n) for m in model.modules() for n, p in m._parameters.items() if p is param]


def _run_hooks_eagerly() -> None:
    """Keep torch.compile out of the hooks: generation runs eagerly (C++ gather, cached wiring) while the model
    around it compiles. Applied to the hook classes when hooks are first installed, not at ``import modelring``:
    ``torch.compiler.disable`` imports torch._dynamo, about 0.9 s that a process which never converts a model
    should not pay."""
    for hook in (EnterHook, ExitHook):
        if not getattr(hook.__call__, "_modelring_eager", False):
            call = torch.compiler.disable(hook.__call__)
            call._modelring_eager = True
            hook.__call__ = call


def install_hooks(model: nn.Module, state: RingBank, *, legacy: bool = True) -> None:
    """The hooks that generate weights on entry and detach them on exit (see the module docstring), on the root
    and on every module above a generated weight, and (``legacy``) the root's legacy state-dict hook. ``state`` is
    a ``RingBank`` or anything with its ``attribute``, ``owners``, ``handles``, ``depth`` and ``write_weights``
    (the adapters' bank)."""
    _run_hooks_eagerly()
    owner_modules = {id(m) for owners in state.owners for seg in owners for m, _ in seg}
    enter, leave = EnterHook(state), ExitHook(state)
    for module in _ancestors_of(model, owner_modules):
        hook = EnterHook(state, root=True) if module is model else enter
        state.handles.append(module.register_forward_pre_hook(hook))
        state.handles.append(module.register_forward_hook(leave, always_call=True))
    if legacy:
        state.handles.append(model.register_load_state_dict_pre_hook(LegacyStateDictHook()))


def _ancestors_of(model: nn.Module, owner_ids: set[int]) -> list[nn.Module]:
    """Modules whose subtree holds a generated weight: any of them can be the entry point of a forward."""
    memo: dict[int, bool] = {}

    def holds(module: nn.Module) -> bool:
        if id(module) not in memo:
            memo[id(module)] = False  # guards against cycles in odd module graphs
            memo[id(module)] = id(module) in owner_ids or any(holds(c) for c in module.children())
        return memo[id(module)]

    return [m for m in model.modules() if holds(m)]


