"""Training methods as peers: how a task's model is made small (config key ``method``).

- ``dense``: the model as built.
- ``rpg``: converted to Recurrent Parameter Generators as the ``ring`` section says (size, wiring, local rings).
- ``hashednets``: HashedNets (Chen et al. 2015) in modelring's terms: one ring per generated layer, each of the
  ``ring.size`` share of its layer, every weight hashed to a bucket on its own with a sign hash
  (``rings=per_layer``, ``sampling=independent``); the other ``ring`` keys (seed, include/exclude, scale) apply.
- ``prune-global`` / ``prune-layerwise``: the dense model trained, magnitude-pruned to ``prune.keep`` of the
  weights RPG would generate after fraction ``prune.at`` of all steps, then fine-tuned with the mask held
  (``modelring.prune``); global ranks the whole model at once, layerwise keeps the same share of every layer.

Every method works for every task: ``apply_method`` after the task built its model, ``build_pruner`` once the
number of steps is known; the run loop calls the pruner's ``after_step`` after each optimizer step.
"""
from __future__ import annotations

from torch import nn

from .config import METHODS
from .convert import convert, rings_per_stage
from .prune import MagnitudePruner

PRUNE_SCOPES = {"prune-global": "global", "prune-layerwise": "layer"}


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def apply_method(model: nn.Module, cfg: dict) -> nn.Module:
    """``model`` converted as ``cfg['method']`` says (unchanged for dense and pruning); returns it."""
    method = cfg["method"]
    check_method(method)
    if method == "rpg":
        return convert_as(model, cfg["ring"])
    if method == "hashednets":
        return convert_as(model, {**cfg["ring"], "rings": "per_layer", "sampling": "independent"})
    return model


def convert_as(model: nn.Module, rc: dict) -> nn.Module:
    """Convert ``model`` to RPG as a ``ring`` config section says.

    ``rc['rings']`` may be null (one global ring), ``per_stage`` (one ring per ``stage_names()`` entry),
    ``per_layer`` (one ring per generated parameter) or a {glob: size} mapping.
    """
    rings = rc["rings"]
    if rings == "per_stage":
        rings = rings_per_stage(model)
    elif rings == "per_layer":
        rings = lambda name, module: name  # noqa: E731 - each parameter its own group
    elif isinstance(rings, str):
        raise ValueError(f"ring.rings must be null, per_stage, per_layer or a mapping glob -> size, got {rings!r}")
    return convert(model, rc["size"], seed=rc["seed"], permute=rc["permute"], reflect=rc["reflect"],
                   sampling=rc["sampling"], scale=rc["scale"], rings=rings, include=rc["include"],
                   exclude=rc["exclude"] or None, wiring=rc["wiring"], block=rc["block"], strict=rc["strict"],
                   init_std=rc["init_std"])


def build_pruner(model: nn.Module, cfg: dict, steps_per_epoch: int) -> MagnitudePruner | None:
    """The pruning baseline of ``prune-global`` / ``prune-layerwise``; None for the other methods.

    The prunable weights are the ones RPG would generate (``ring.include`` / ``ring.exclude``), so at equal
    ``prune.keep`` and ``ring.size`` both train the same number of parameters.
    """
    scope = PRUNE_SCOPES.get(cfg["method"])
    if scope is None:
        return None
    pc, rc = cfg["prune"], cfg["ring"]
    if isinstance(pc["at"], bool) or not isinstance(pc["at"], (int, float)) or not 0 <= pc["at"] <= 1:
        raise ValueError(f"prune.at is the fraction of training after which to prune, in [0, 1]; got {pc['at']!r}")
    step = round(pc["at"] * cfg["train"]["epochs"] * steps_per_epoch)
    return MagnitudePruner(model, pc["keep"], step, include=rc["include"], exclude=rc["exclude"] or None,
                           scope=scope)
