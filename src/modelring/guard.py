"""The optimizer guard: an optimizer created before ``convert`` steps weights that no longer exist in the model.

``convert`` replaces each generated weight by a ring; an optimizer made earlier still holds the old weights and
would train nothing the model uses, silently. ``watch_replaced`` remembers each replaced weight (weakly, by
identity); one global optimizer step pre-hook, registered on first use, checks every optimizer's first step and
raises a clear error if it holds any of them.
"""
from __future__ import annotations

import weakref

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook


# id(weight) -> (weak reference, name) of the weights convert replaced; by identity, since tensors compare by value
_REPLACED: dict[int, tuple[weakref.ref, str]] = {}
_STEP_HOOK: list = []


def watch_replaced(param: torch.Tensor, name: str) -> None:
    """Remember a weight that ``convert`` replaced by a ring: an optimizer still stepping it was made too early."""
    key = id(param)
    _REPLACED[key] = (weakref.ref(param, lambda _: _REPLACED.pop(key, None)), name)
    if not _STEP_HOOK:
        _STEP_HOOK.append(register_optimizer_step_pre_hook(_check_optimizer))


def _check_optimizer(optimizer, args, kwargs) -> None:
    """Global optimizer pre-step hook, acting on each optimizer's first step only."""
    if getattr(optimizer, "_modelring_checked", False):
        return
    optimizer._modelring_checked = True
    stale = [_REPLACED[id(p)][1] for group in optimizer.param_groups for p in group["params"]
             if id(p) in _REPLACED and _REPLACED[id(p)][0]() is p]
    if stale:
        raise RuntimeError(f"this optimizer was created before modelring.convert(): it steps {len(stale)} weight(s) "
                           f"that convert replaced by a ring (e.g. {stale[0]!r}) and not the ring itself, so "
                           "training would change nothing that the model uses; create the optimizer after convert "
                           "(model.parameters() then yields the rings)")
