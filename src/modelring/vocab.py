"""Closed vocabularies that more than one module needs: the allowed names, in one place, importing nothing.

Each tuple belongs to the module that gives its names a meaning (the owner, named beside it); the owner and the
config schema (``config_keys``) both import it from here, so a name added to the owner is a name the config
accepts. This module imports nothing (no torch), so the config can check a recipe before torch is loaded.
"""
from __future__ import annotations

# (methods are not a closed vocabulary: the registry in modelring.methods holds them, and a plug-in may add one)
# owner: spec.py (RingSpec.sampling; the layouts in generate.py): how virtual weights pick their ring entries
SAMPLINGS = ("even", "independent")
# owner: spec.py (RingSpec.wiring; generate.RingGenerator): keep the wiring between generations, or rebuild it
WIRING_MODES = ("cached", "recompute")
# owner: plan.py (grouping): the words for ring groupings besides null (one ring) and a mapping glob -> size
GROUPINGS = ("per_stage", "per_layer")
# owner: plan.py (ring_scales): the per-layer initial std rules that have a name
SCALE_RULES = ("fan_in", "fan_out")
# owner: optim.py (lr_factor): learning-rate schedules
SCHEDULES = ("cosine", "paper", "step", "constant")
# owner: optim.py (build_optimizer): optimizers a task may ask for
OPTIMIZERS = ("sgd", "adam", "adamw")
# owner: data/text.py (load_corpus; data/ imports no vocabulary, so it spells them out): lm task tokenizers
TOKENIZERS = ("bytes", "bpe")
# owner: adapters/bank.py (apply_adapter): how an adapter's ring starts (zeros: the adapted model is the base)
ADAPTER_INITS = ("zeros", "random")
# owner: methods/peft_baselines.py (PEFT_CONFIGS): the peft methods the `peft` method builds (peft's own classes)
PEFT_TYPES = ("lora", "vera", "unilora", "fourierft", "vblora")
