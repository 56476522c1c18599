"""What a training method is to the run loop, and the registry that makes one trainable as ``method: <name>``.

A method decides how a task's dense model is made small. It may convert the model (``apply``), act on the
optimizer while training (``attach``, e.g. a pruner as an optimizer step hook, resumed at a given step), and say
what it trained (``report``: DoF and whatever else belongs in ``report.json``). The loop owns everything else.
Methods are peers: the built-in ones register exactly as a user's does (``register_method``).
"""
from __future__ import annotations

from typing import Any, ClassVar

from torch import nn


class Method:
    """Base class of a training method; every hook has a do-nothing default.

    Attributes:
        name: the ``method`` config value that selects it.
    """

    name: ClassVar[str]

    def check(self, cfg: dict) -> None:
        """Refuse options that cannot work with this method, before anything is built (default: none)."""

    def apply(self, model: nn.Module, cfg: dict) -> nn.Module:
        """The model as this method trains it (converted in place, or as it is); returns it."""
        return model

    def attach(self, model: nn.Module, optimizer, cfg: dict, *, steps_per_epoch: int, start_step: int) -> Any:
        """Act on training through ``optimizer`` (e.g. an optimizer step hook), starting at global optimizer step
        ``start_step`` (0, or where a resumed run continues). Returns whatever ``report`` needs, or None."""
        return None

    def report(self, model: nn.Module, attached: Any) -> dict:
        """Entries for ``report.json`` beside the loop's own (e.g. ``dof`` when the trainable count is not the
        model's parameter count). ``attached`` is what ``attach`` returned."""
        return {}


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Make ``method`` trainable as ``method: <method.name>``; returns it.

    Raises:
        ValueError: a method of that name is already registered.
    """
    if not isinstance(getattr(method, "name", None), str) or not method.name:
        raise ValueError(f"a method needs a non-empty name, got {getattr(method, 'name', None)!r}")
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Forget the method called ``name`` (for plug-ins and tests that register one for a while)."""
    METHODS.pop(name, None)


def get_method(name: str) -> Method:
    """The registered method called ``name``, or a clear error naming the known ones."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {name!r} (register a new one with "
                         "modelring.methods.register_method)")
    return METHODS[name]


def list_methods() -> list[str]:
    """Names of the registered methods, in registration order."""
    return list(METHODS)


def ring_exclude(model: nn.Module, rc: dict) -> list[str] | None:
    """``ring.exclude`` as the methods pass it to ``convert``/``adapt``/the pruner: the patterns a config writes,
    as written (one that matches no parameter is an error there); the default (the stem and classifier of the
    registry's convnets, ``conv1.weight`` and ``fc.*``) only as far as it matches this model, so a transformer
    trained with the default is not refused for names it does not have."""
    from fnmatch import fnmatch

    from ..config import default_config

    exclude = rc["exclude"] or None
    if exclude is None or list(exclude) != list(default_config()["ring"]["exclude"]):
        return exclude
    names = [name for name, _ in model.named_parameters()]
    kept = [pattern for pattern in exclude if any(fnmatch(name, pattern) for name in names)]
    return kept or None
