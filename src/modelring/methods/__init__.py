"""Training methods as registered peers: how a task's model is made small (config key ``method``).

- ``dense``: the model as built.
- ``rpg``: converted to Recurrent Parameter Generators as the ``ring`` section says (size, wiring, local rings).
- ``hashednets``: HashedNets (Chen et al. 2015): one ring per generated layer, every weight hashed on its own.
- ``prune-global`` / ``prune-layerwise``: magnitude pruning of the weights RPG would generate (``modelring.prune``).
- ``adapter``: fine-tuning of the pretrained model ``adapter.base`` through a ring adapter (``modelring.adapt``).

Every method works for every task (``modelring.loop.fit``). Add one by subclassing ``Method`` and calling
``register_method``; ``get_method(name)`` is how the loop finds it.
"""
from __future__ import annotations

import warnings

from torch import nn

from .adapter import Adapter, FineTune
from .base import METHODS, Method, get_method, list_methods, register_method, unregister_method
from .peft_baselines import PeftBaseline
from .pruning import GlobalPruning, LayerwisePruning, MagnitudePruning
from .rings import RPG, HashedNets, convert_as


class Dense(Method):
    """The model as built: the reference every other method is compared with."""

    name = "dense"


for _method in (Dense(), RPG(), HashedNets(), GlobalPruning(), LayerwisePruning(), Adapter(), FineTune(),
                PeftBaseline()):
    register_method(_method)


def apply_method(model: nn.Module, cfg: dict) -> nn.Module:
    """``model`` as ``cfg['method']`` trains it (converted in place, or unchanged); returns it."""
    method = get_method(cfg["method"])
    method.check(cfg)
    return method.apply(model, cfg)


def check_method(method: str) -> None:
    """Deprecated: ``get_method(method)`` raises the same error."""
    warnings.warn("modelring.methods.check_method is deprecated; get_method(name) checks the name",
                  DeprecationWarning, stacklevel=2)
    get_method(method)


def build_pruner(model: nn.Module, cfg: dict, steps_per_epoch: int):
    """Deprecated: the pruning methods attach their pruner to the optimizer (``Method.attach``,
    ``modelring.prune.attach_pruner``). Returns the unattached pruner of ``prune-*`` methods, None otherwise."""
    warnings.warn("modelring.methods.build_pruner is deprecated; pruning methods attach to the optimizer "
                  "(modelring.prune.attach_pruner)", DeprecationWarning, stacklevel=2)
    method = get_method(cfg["method"])
    return method.pruner(model, cfg, steps_per_epoch) if isinstance(method, MagnitudePruning) else None


__all__ = ["METHODS", "Adapter", "Dense", "FineTune", "GlobalPruning", "HashedNets", "LayerwisePruning",
           "MagnitudePruning", "PeftBaseline",
           "Method", "RPG", "apply_method", "convert_as", "get_method", "list_methods", "register_method",
           "unregister_method"]
