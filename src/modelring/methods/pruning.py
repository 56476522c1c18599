"""The pruning baselines ``prune-global`` / ``prune-layerwise``: the dense model trained, magnitude-pruned to
``prune.keep`` of the weights RPG would generate after fraction ``prune.at`` of all optimizer steps, then fine-tuned
with the mask held (``modelring.prune``). Global ranks the whole model at once; layerwise keeps the same share of
every layer. The pruner rides on the optimizer as a step hook, so it works the same inside ``fit`` and outside it."""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from ..prune import MagnitudePruner
from .base import Method, ring_exclude


class MagnitudePruning(Method):
    """Magnitude pruning of the weights RPG would generate (``ring.include`` / ``ring.exclude``), so that at equal
    ``prune.keep`` and ``ring.size`` both train the same number of parameters."""

    scope: ClassVar[str]

    def check(self, cfg: dict) -> None:
        at = cfg["prune"]["at"]
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not 0 <= at <= 1:
            raise ValueError(f"prune.at is the fraction of training after which to prune, in [0, 1]; got {at!r}")

    def pruner(self, model: nn.Module, cfg: dict, steps_per_epoch: int) -> MagnitudePruner:
        """The (unattached) pruner the config describes: ``prune.keep`` of the weights RPG would generate, pruned
        after fraction ``prune.at`` of all optimizer steps."""
        self.check(cfg)
        pc, rc = cfg["prune"], cfg["ring"]
        at_step = round(pc["at"] * cfg["train"]["epochs"] * steps_per_epoch)
        return MagnitudePruner(model, pc["keep"], at_step, include=rc["include"], exclude=ring_exclude(model, rc),
                               scope=self.scope)

    def attach(self, model: nn.Module, optimizer, cfg: dict, *, steps_per_epoch: int,
               start_step: int) -> MagnitudePruner:
        return self.pruner(model, cfg, steps_per_epoch).attach(optimizer, start_step)

    def report(self, model: nn.Module, pruner: MagnitudePruner) -> dict:
        """DoF of a pruned model: its trainable non-zeros."""
        from ..count import count_params

        nonzero = pruner.nonzero(model)
        return {"dof": nonzero, "dof_fraction": nonzero / count_params(model).virtual, "pruned_keep": pruner.keep}


class GlobalPruning(MagnitudePruning):
    name, scope = "prune-global", "global"


class LayerwisePruning(MagnitudePruning):
    name, scope = "prune-layerwise", "layer"
