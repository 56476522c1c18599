"""The ``peft`` method: fine-tune a pretrained model with a method of the peft library, unmodified (the baselines
the ring adapter is compared with, issue 25): LoRA, VeRA, Uni-LoRA, FourierFT and VB-LoRA.

``adapter.base`` names the pretrained model file (as for ``method: adapter``); ``peft.type`` picks the peft config
class, ``peft.options`` gives its keyword arguments (rank, vector length, ...), ``peft.targets`` the module names it
adapts (default: every ``nn.Linear``). ``peft.get_peft_model`` wraps the task's model (some methods, Uni-LoRA
among them, keep state on the wrapper) and freezes everything but the adapter; ``adapter.train`` leaves more of the
model's own parameters trainable (e.g. a new classifier), by their names in the model. peft is an optional
dependency (the ``hf`` extra): without it the method refuses the config before anything is built.
"""
from __future__ import annotations

import importlib.util
from torch import nn

from .adapter import check_base, load_base, trained_by
from .base import Method

PEFT_CONFIGS = {"lora": "LoraConfig", "vera": "VeraConfig", "unilora": "UniLoraConfig",
                "fourierft": "FourierFTConfig", "vblora": "VBLoRAConfig"}  # vocab.PEFT_TYPES -> peft's class


class PeftBaseline(Method):
    """Fine-tuning of ``adapter.base`` through a peft method (``peft`` section)."""

    name = "peft"

    def check(self, cfg: dict) -> None:
        if importlib.util.find_spec("peft") is None:
            raise ValueError("method=peft needs the peft library: pip install 'modelring[hf]' (peft==0.21.2), or "
                             "bash scripts/test_hf.sh, which builds that venv")
        check_base(cfg, self.name)

    def apply(self, model: nn.Module, cfg: dict) -> nn.Module:
        import peft

        pc, ac = cfg["peft"], cfg["adapter"]
        model = load_base(model, ac["base"])
        targets = pc["targets"] or linear_names(model)
        config = getattr(peft, PEFT_CONFIGS[pc["type"]])(target_modules=targets, **(pc["options"] or {}))
        trained = trained_by(model, ac["train"] or [])  # by the model's own names, before peft wraps it
        wrapped = peft.get_peft_model(model, config)  # freezes all but the adapter (not inject: shared state)
        for param in wrapped.parameters():
            if id(param) in trained:
                param.requires_grad_(True)
        return wrapped

    def attach(self, model: nn.Module, optimizer, cfg: dict, *, steps_per_epoch: int, start_step: int) -> dict:
        return {"base": cfg["adapter"]["base"], "type": cfg["peft"]["type"]}

    def report(self, model: nn.Module, attached: dict) -> dict:
        """The base, the peft method and the bytes of what it trains as float32 (the adapter file's tensors;
        methods that store projections or indices beside them, like VeRA's ``save_projection``, store more)."""
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return {"adapter_base": attached["base"], "peft_type": attached["type"], "adapter_bytes": 4 * trainable}


def linear_names(model: nn.Module) -> list[str]:
    """The full names of every ``nn.Linear`` of ``model`` (peft's target_modules)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError("the model has no nn.Linear: set peft.targets to the module names to adapt")
    return names
