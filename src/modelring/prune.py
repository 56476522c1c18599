"""Magnitude pruning, the equal-DoF baselines of the RPG experiments (train -> prune -> fine-tune).

Two scopes: ``global`` ranks every prunable weight of the model together (few survive in large layers: at 1% it
keeps ~0.1% of ResNet-20's stage 3); ``layer`` keeps the same fraction of every prunable tensor (the ``keep`` budget
split over tensors in proportion to their sizes, largest remainders rounded up, so the total is exact).

The prunable weights are the ones RPG would generate (``select_targets`` with the ring's include/exclude), so
at ``keep`` = the ring size both models have the same number of trainable non-zeros: the RPG model's
ring + free tensors, the pruned model's kept weights + the same free tensors.

At step ``at`` of training the ``keep`` largest-magnitude prunable weights over the whole model survive
(ties broken by position, so the mask is deterministic); after every later optimizer step the pruned
weights are set back to zero. The mask is not stored: a pruned weight is exactly 0.0 and a surviving one is
not (a trained float weight landing exactly on 0.0 has probability ~0), so a resumed run rebuilds it from
the weights with :func:`masks_from_zeros`.
"""
from __future__ import annotations

import torch
from torch import nn

from .plan import select_targets
from .sizes import resolve_ring_size, split_proportional


def prunable(model: nn.Module, *, include=None, exclude=None) -> dict[str, torch.Tensor]:
    """The parameters global pruning ranks, by name (the same selection as ``convert``)."""
    return {name: param for name, (param, _) in select_targets(model, include=include, exclude=exclude).items()}


def global_magnitude_masks(tensors: dict[str, torch.Tensor], keep: int) -> dict[str, torch.Tensor]:
    """Boolean masks keeping exactly the ``keep`` entries of largest magnitude across all ``tensors``.

    Raises:
        ValueError: ``keep`` is not in [1, total number of entries].
    """
    total = sum(t.numel() for t in tensors.values())
    if not 1 <= keep <= total:
        raise ValueError(f"prune.keep must be between 1 and the {total:,} prunable weights, got {keep:,}")
    flat = torch.cat([t.detach().abs().flatten().float() for t in tensors.values()])
    # topk on magnitudes; a stable sort makes ties (e.g. many zeros) resolve by position, run to run
    order = torch.sort(flat, descending=True, stable=True).indices[:keep]
    kept = torch.zeros(total, dtype=torch.bool)
    kept[order] = True
    masks, start = {}, 0
    for name, t in tensors.items():
        masks[name] = kept[start:start + t.numel()].view(t.shape).to(t.device)
        start += t.numel()
    return masks


def layer_keep_counts(sizes: list[int], keep: int) -> list[int]:
    """``keep`` split over tensors of ``sizes`` in proportion to size: floors, then one more for the largest
    remainders (ties: the earlier tensor), so the counts sum to ``keep`` exactly and each is <= its size."""
    total = sum(sizes)
    if not 1 <= keep <= total:
        raise ValueError(f"prune.keep must be between 1 and the {total:,} prunable weights, got {keep:,}")
    return split_proportional(keep, sizes, minimum=0)


def layerwise_magnitude_masks(tensors: dict[str, torch.Tensor], keep: int) -> dict[str, torch.Tensor]:
    """Boolean masks keeping, in each tensor, its share (``layer_keep_counts``) of largest-magnitude entries."""
    counts = layer_keep_counts([t.numel() for t in tensors.values()], keep)
    masks = {}
    for (name, t), count in zip(tensors.items(), counts):
        order = torch.sort(t.detach().abs().flatten().float(), descending=True, stable=True).indices[:count]
        kept = torch.zeros(t.numel(), dtype=torch.bool)
        kept[order] = True
        masks[name] = kept.view(t.shape).to(t.device)
    return masks


SCOPES = {"global": global_magnitude_masks, "layer": layerwise_magnitude_masks}


def masks_from_zeros(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The masks of an already pruned model: every non-zero weight survives."""
    return {name: t.detach() != 0 for name, t in tensors.items()}


@torch.no_grad()
def apply_masks(tensors: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
    """Zero the pruned entries in place."""
    for name, t in tensors.items():
        t.mul_(masks[name])


class MagnitudePruner:
    """Prunes ``model`` once at optimizer step ``prune_step`` and keeps it pruned after every later step.

    Args:
        model: the dense model being trained.
        keep: surviving weights: an int count, a float fraction of the prunable weights, or a byte budget.
        prune_step: the global optimizer step after which pruning happens (0 prunes before training).
        include, exclude: which weights are prunable (as for ``convert``).
        scope: ``global`` (one ranking over the model) or ``layer`` (the same fraction of every tensor).
    """

    def __init__(self, model: nn.Module, keep, prune_step: int, *, include=None, exclude=None,
                 scope: str = "global"):
        if scope not in SCOPES:
            raise ValueError(f"pruning scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        self.tensors = prunable(model, include=include, exclude=exclude)
        total = sum(t.numel() for t in self.tensors.values())
        self.keep = resolve_ring_size(keep, total)
        self.scope, self.prune_step, self.step, self.masks = scope, prune_step, 0, None
        self.handle = None

    def start_at(self, step: int) -> None:
        """Continue a resumed run at global ``step``: rebuild the masks from the zeros if pruning happened."""
        self.step = step
        if step > self.prune_step:
            self.masks = masks_from_zeros(self.tensors)
            kept = sum(int(m.sum()) for m in self.masks.values())
            if kept != self.keep:
                raise ValueError(f"resumed model has {kept:,} non-zero prunable weights, expected {self.keep:,}: "
                                 "the checkpoint does not belong to this pruning config")

    def attach(self, optimizer: torch.optim.Optimizer, start_step: int = 0) -> "MagnitudePruner":
        """Run ``after_step`` after every step of ``optimizer`` (a step post-hook; ``detach`` removes it), starting
        at global step ``start_step`` (``start_at``: a resumed run rebuilds its masks). Returns self."""
        if self.handle is not None:
            raise RuntimeError("this pruner is already attached to an optimizer; detach() it first")
        self.start_at(start_step)
        self.handle = optimizer.register_step_post_hook(lambda opt, args, kwargs: self.after_step())
        return self

    def detach(self) -> None:
        """Stop pruning after optimizer steps (the weights stay as they are)."""
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def after_step(self) -> None:
        """Call after every optimizer step (``attach`` does)."""
        self.step += 1
        if self.masks is None and self.step >= self.prune_step:
            self.masks = SCOPES[self.scope](self.tensors, self.keep)
        if self.masks is not None:
            apply_masks(self.tensors, self.masks)

    def nonzero(self, model: nn.Module) -> int:
        """Trainable non-zeros of the model: kept prunable weights + every other trainable entry."""
        ranked = {id(t) for t in self.tensors.values()}
        others = sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in ranked)
        return others + sum(int((t != 0).sum()) for t in self.tensors.values())


def attach_pruner(model: nn.Module, optimizer: torch.optim.Optimizer, keep, *, at_step: int = 0,
                  scope: str = "global", include=None, exclude=None, start_step: int = 0) -> MagnitudePruner:
    """Magnitude-prune ``model`` while ``optimizer`` trains it: after optimizer step ``at_step`` keep the ``keep``
    largest weights of those ``convert`` would generate, and hold the others at zero after every later step.

    Args:
        model: the dense model being trained.
        optimizer: the optimizer stepping it; the pruner runs as its step post-hook.
        keep: surviving weights: an int count, a float fraction of the prunable weights, or a byte budget.
        at_step: the global optimizer step after which pruning happens (0 prunes at the first step).
        scope: ``global`` (one ranking over the model) or ``layer`` (the same fraction of every tensor).
        include, exclude: which weights are prunable (as for ``convert``).
        start_step: the global step training continues from (a resumed run: masks rebuilt from the zeros).

    Returns:
        The attached ``MagnitudePruner`` (``detach()`` to stop, ``nonzero(model)`` to count what trains).
    """
    pruner = MagnitudePruner(model, keep, at_step, include=include, exclude=exclude, scope=scope)
    return pruner.attach(optimizer, start_step)
