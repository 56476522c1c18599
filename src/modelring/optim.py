"""Optimizer and learning-rate schedule of a run: explicit parameter groups (rings, everything else), SGD, Adam or
AdamW, and the schedule (``train.schedule``) evaluated at fractional epochs, stepped once per optimizer step."""
from __future__ import annotations

import math

import torch
from torch import nn

from .adapters.bank import adapter_ring_names
from .bank import ring_names
from .vocab import OPTIMIZERS, SCHEDULES


def param_groups(model: nn.Module, cfg: dict) -> list[dict]:
    """Explicit groups: rings, adapter rings included (``train.ring_weight_decay``, default = weight_decay), and
    everything else trainable."""
    tc = cfg["train"]
    names = ring_names(model) | adapter_ring_names(model)
    rings = [p for n, p in model.named_parameters() if n in names and p.requires_grad]
    others = [p for n, p in model.named_parameters() if n not in names and p.requires_grad]
    ring_wd = tc["weight_decay"] if tc["ring_weight_decay"] is None else tc["ring_weight_decay"]
    groups = [{"params": others, "weight_decay": tc["weight_decay"], "name": "free"}]
    return groups + ([{"params": rings, "weight_decay": ring_wd, "name": "ring"}] if rings else [])


def build_optimizer(model: nn.Module, cfg: dict, steps_per_epoch: int, name: str = "sgd", *,
                    setting: str = "the optimizer"):
    """(optimizer, per-step LambdaLR) over ``param_groups``: SGD with ``train.momentum``/``nesterov``, Adam or AdamW;
    the learning rate follows ``train.schedule`` (see ``lr_factor``) at fractional epochs."""
    tc = cfg["train"]
    if name == "sgd":
        opt = torch.optim.SGD(param_groups(model, cfg), lr=tc["lr"], momentum=tc["momentum"],
                              nesterov=tc["nesterov"] and tc["momentum"] > 0)
    elif name == "adam":
        opt = torch.optim.Adam(param_groups(model, cfg), lr=tc["lr"])
    elif name == "adamw":  # decoupled weight decay (Loshchilov & Hutter 2019), the transformers' usual optimizer
        opt = torch.optim.AdamW(param_groups(model, cfg), lr=tc["lr"])
    else:
        raise ValueError(f"{setting} must be {' or '.join(OPTIMIZERS)}, got {name!r}")
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step / steps_per_epoch, tc))


def lr_factor(epoch: float, tc: dict) -> float:
    """Multiplier of the base lr at a (fractional) epoch: linear warm-up, then the schedule."""
    if epoch < tc["warmup_epochs"]:
        return (epoch + 1e-8) / tc["warmup_epochs"]
    schedule = tc["schedule"]
    if schedule == "paper":  # lr_t = lr_0 * 0.1^(epoch / 45) in the official RPG code
        return 0.1 ** (epoch / tc["decay_epochs"])
    if schedule == "step":
        return tc["gamma"] ** math.floor(epoch / tc["step_epochs"])
    if schedule == "cosine":
        span = max(tc["epochs"] - tc["warmup_epochs"], 1e-8)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (epoch - tc["warmup_epochs"]) / span)))
    if schedule == "constant":
        return 1.0
    raise ValueError(f"train.schedule must be one of {SCHEDULES}, got {schedule!r}")
