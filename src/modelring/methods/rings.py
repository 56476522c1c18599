"""The ring methods: ``rpg`` (the paper's generators, as the ``ring`` section says) and ``hashednets`` (Chen et al.
2015 in modelring's terms: one ring per generated layer, each the ``ring.size`` share of its layer, every weight
hashed to a bucket on its own with a sign hash)."""
from __future__ import annotations

from torch import nn

from ..convert import convert
from .base import Method, ring_exclude


def convert_as(model: nn.Module, rc: dict) -> nn.Module:
    """Convert ``model`` as a ``ring`` config section says; returns it.

    ``rc['rings']`` may be null (one global ring), ``per_stage`` (one ring per ``stage_names()`` entry),
    ``per_layer`` (one ring per generated parameter) or a {glob: size} mapping.
    """
    return convert(model, rc["size"], seed=rc["seed"], permute=rc["permute"], reflect=rc["reflect"],
                   sampling=rc["sampling"], scale=rc["scale"], rings=rc["rings"], include=rc["include"],
                   exclude=ring_exclude(model, rc), wiring=rc["wiring"], block=rc["block"], strict=rc["strict"],
                   init_std=rc["init_std"])


class RPG(Method):
    """Recurrent Parameter Generators: the model's weights generated from model rings (``ring`` section)."""

    name = "rpg"

    def apply(self, model: nn.Module, cfg: dict) -> nn.Module:
        return convert_as(model, cfg["ring"])


class HashedNets(Method):
    """HashedNets: one ring per layer, independent sampling; the other ``ring`` keys (size, seed, include/exclude,
    scale) apply. ``ring.rings`` and ``ring.sampling`` are HashedNets' own: a value that contradicts them is refused,
    not overridden (``ring.sampling: even``, the default, is read as unset: it cannot be told apart)."""

    name = "hashednets"

    def check(self, cfg: dict) -> None:
        rc = cfg["ring"]
        if rc["rings"] not in (None, "per_layer"):
            raise ValueError(f"method=hashednets gives every layer its own ring; ring.rings={rc['rings']!r} "
                             "contradicts it: leave ring.rings null (or per_layer), or use method=rpg")
        if rc["sampling"] not in ("even", "independent"):
            raise ValueError(f"method=hashednets hashes every weight on its own (ring.sampling=independent); "
                             f"got ring.sampling={rc['sampling']!r}")

    def apply(self, model: nn.Module, cfg: dict) -> nn.Module:
        return convert_as(model, {**cfg["ring"], "rings": "per_layer", "sampling": "independent"})
