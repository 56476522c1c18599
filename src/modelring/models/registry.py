"""Model registry: name -> builder, in the style of torchvision/timm.

Builders are keyword-only functions returning an ``nn.Module``; they register
under their ``__name__`` with :func:`register_model`. :func:`create_model`
records how each model was built in ``model.modelring_model_spec`` so it can be
rebuilt later (e.g. when loading a checkpoint).

The ResNet families registered here follow He et al. 2016, "Deep Residual
Learning for Image Recognition" (arXiv 1512.03385).
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import inspect
import json
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from torch import nn

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]

F = TypeVar("F", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model is for.

    Attributes:
        task: the task whose outputs it produces (``classification`` models meet the classifier contract:
            ``forward_features``, ``forward_head(pre_logits=)``, ``reset_classifier``, ``num_features``).
        input_size: (channels, height, width) of the input it was designed for (other sizes may work); a language
            model (task ``lm``) declares (1, 1, context): one sequence of ``context`` token ids.
    """

    task: str = "classification"
    input_size: tuple[int, int, int] = (3, 32, 32)


_MODEL_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_MODEL_INFO: dict[str, ModelInfo] = {}


def register_model(fn: F | None = None, *, task: str = "classification",
                   input_size: tuple[int, int, int] = (3, 32, 32)):
    """Register a model builder under its function name, with what it is for.

    Use as ``@register_model`` (a 32x32 RGB classifier) or ``@register_model(task="pose", input_size=(3, 64, 64))``.

    Args:
        fn: Keyword-only builder, e.g. ``def resnet20(*, num_classes=10, in_chans=3, **kwargs)``.
        task, input_size: the model's ``ModelInfo``.

    Returns:
        ``fn`` unchanged, so this works as a decorator.

    Raises:
        ValueError: If a model with the same name is already registered.
    """
    info = ModelInfo(task, tuple(input_size))

    def register(builder: F) -> F:
        name = builder.__name__
        if name in _MODEL_REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _MODEL_REGISTRY[name], _MODEL_INFO[name] = builder, info
        return builder
    return register(fn) if fn is not None else register


def model_info(name: str) -> ModelInfo:
    """The ``ModelInfo`` a registered model declared.

    Raises:
        ValueError: If ``name`` is not registered (the message suggests close matches).
    """
    if name not in _MODEL_INFO:
        raise ValueError(_unknown_model_message(name))
    return _MODEL_INFO[name]


def accepts(name: str, argument: str) -> bool:
    """Whether the registered builder ``name`` takes a keyword ``argument`` (False for an unknown name)."""
    builder = _MODEL_REGISTRY.get(name)
    return builder is not None and argument in inspect.signature(builder).parameters


def list_models(pattern: str = "*") -> list[str]:
    """List registered model names matching a shell-style pattern.

    Args:
        pattern: ``fnmatch`` pattern, e.g. ``"resnet*"``.

    Returns:
        Sorted list of matching names.
    """
    return sorted(fnmatch.filter(_MODEL_REGISTRY, pattern))


def _unknown_model_message(name: str) -> str:
    available = list_models()
    close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"unknown model {name!r}.{hint} Available models: {', '.join(available)}"


def _check_json_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    try:
        json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"create_model({name!r}) kwargs must be JSON-serialisable plain values "
            f"(numbers, strings, bools, None, lists, dicts) so the model can be rebuilt "
            f"from its spec: {err}"
        ) from err


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model and record how it was built.

    Args:
        name: Registered model name (see :func:`list_models`).
        **kwargs: Keyword options passed to the builder, e.g. ``num_classes=100``;
            must be JSON-serialisable plain values.

    Returns:
        The model, with ``model.modelring_model_spec = {"name": name, "kwargs": {...}}``.

    Raises:
        ValueError: If ``name`` is not registered (the message suggests close matches).
        TypeError: If ``kwargs`` are not JSON-serialisable.
    """
    if name not in _MODEL_REGISTRY:
        raise ValueError(_unknown_model_message(name))
    _check_json_kwargs(name, kwargs)
    model = _MODEL_REGISTRY[name](**kwargs)
    model.modelring_model_spec = {"name": name, "kwargs": copy.deepcopy(dict(kwargs))}
    return model
