"""The ``adapter`` method: fine-tune a pretrained model through a ring adapter (``modelring.adapt``); and the
``finetune`` method, plain fine-tuning of the same checkpoint (all of it, or the parameters ``adapter.train`` names).

The task builds its model as usual; ``adapter.base`` names a modelring model file (a dense run's
``model.safetensors``, or a converted one, materialized here) whose weights are loaded into it; then the model is
adapted with the ``ring`` section's size, seed, targets and wiring options and the ``adapter`` section's init,
trainable scale and extra trainable parameters. Everything else stays frozen, so the run's DoF is the adapter's.
The run's ``model.safetensors`` is then an adapter file: ``modelring.load(path, model=base)`` puts it back on the
base.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ..adapters import adapt
from ..adapters.verbs import names_matching
from ..convert import materialize
from ..count import count_params
from ..io import load
from .base import Method, ring_exclude


class Adapter(Method):
    """Ring adapter fine-tuning of the checkpoint ``adapter.base``."""

    name = "adapter"

    def check(self, cfg: dict) -> None:
        check_base(cfg, self.name)

    def apply(self, model: nn.Module, cfg: dict) -> nn.Module:
        rc, ac = cfg["ring"], cfg["adapter"]
        model = load_base(model, ac["base"])
        return adapt(model, rc["size"], seed=rc["seed"], include=rc["include"], exclude=ring_exclude(model, rc),
                     rings=rc["rings"], permute=rc["permute"], reflect=rc["reflect"], sampling=rc["sampling"],
                     scale=rc["scale"], init=ac["init"], init_std=rc["init_std"],
                     trainable_scale=ac["trainable_scale"], train=ac["train"], wiring=rc["wiring"],
                     block=rc["block"], strict=rc["strict"])

    def attach(self, model: nn.Module, optimizer, cfg: dict, *, steps_per_epoch: int, start_step: int) -> str:
        return cfg["adapter"]["base"]  # for the report

    def report(self, model: nn.Module, base: str) -> dict:
        """What was adapted and what stayed frozen (DoF is the loop's count: the trainable tensors)."""
        counts = count_params(model)
        return {"adapter_base": base, "adapted": counts.adapted, "adapter_scales": counts.scales,
                "frozen_base": counts.base}


class FineTune(Method):
    """Plain fine-tuning of the checkpoint ``adapter.base``: every parameter (``adapter.train`` null: full
    fine-tuning, the ceiling the adapters are compared with), or only the parameters ``adapter.train`` names (the
    floors: ``[*.bias]``, ``[*ln*]``, a head)."""

    name = "finetune"

    def check(self, cfg: dict) -> None:
        check_base(cfg, self.name)

    def apply(self, model: nn.Module, cfg: dict) -> nn.Module:
        model = load_base(model, cfg["adapter"]["base"])
        globs = cfg["adapter"]["train"]
        if globs is not None:
            trained = trained_by(model, globs)
            for param in model.parameters():
                param.requires_grad_(id(param) in trained)
        return model

    def attach(self, model: nn.Module, optimizer, cfg: dict, *, steps_per_epoch: int, start_step: int) -> str:
        return cfg["adapter"]["base"]

    def report(self, model: nn.Module, base: str) -> dict:
        return {"adapter_base": base}


def trained_by(model: nn.Module, globs: list[str]) -> set[int]:
    """ids of the parameters whose names match one of ``globs``; a glob that matches nothing is an error."""
    params = dict(model.named_parameters())
    return {id(params[name]) for name in names_matching(list(params), globs, "adapter.train")}


def check_base(cfg: dict, method: str) -> None:
    """Refuse a fine-tuning run without its pretrained model file (``adapter.base``)."""
    base = cfg["adapter"]["base"]
    if base is None:
        raise ValueError(f"method={method} fine-tunes a pretrained model: set adapter.base to its model file "
                         "(e.g. the model.safetensors of a method=dense run)")
    if not Path(base).is_file():
        raise ValueError(f"adapter.base={base!r}: no such file")


def load_base(model: nn.Module, base: str) -> nn.Module:
    """``model`` with the weights of the model file ``base`` (a converted one materialized: its generated weights
    become plain ones), every parameter trainable: the starting point a fine-tuning method then freezes."""
    model = load(base, model=model)
    if count_params(model).ring:
        model = materialize(model, inplace=True)
    for param in model.parameters():  # whatever the file said
        param.requires_grad_(True)
    return model
