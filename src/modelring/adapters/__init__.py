"""Ring adapters: fine-tune a frozen, trained model through one small ring (issue 25).

W_i = W0_i + c_i · D_i · S_i · ring, W0 frozen: the targeted weights keep their trained values as frozen parameters,
and every forward adds a delta generated from the adapter's ring(s) by the wiring of ``convert`` (``modelring.plan``
plans the rings, ``modelring.generate`` generates, ``modelring.bank``'s hooks apply). The ring starts at zero by
default, so the adapted model is exactly the base, and it still gets a gradient (the generation is linear).

- ``adapt(model, ring_size, ...)``: add a named adapter and freeze the rest; ``set_adapter`` switches adapters.
- ``merge(model)``: W0 += ΔW of the active adapter, bit for bit the adapted outputs; the plain model again
  (``unload=False`` keeps the adapters for ``unmerge``).
- ``modelring.save`` on an adapted model writes only rings, specs and a fingerprint of the base
  (``files.py``); ``modelring.load(path, model=base)`` / ``modelring.load_adapter`` re-create the adapters on a
  base and refuse any other base.
"""
from .bank import (Adapter, AdapterBank, AdapterRing, adapter_gain_names, adapter_ring_names, base_fingerprint,
                   get_adapters, is_adapted)
from .verbs import adapt, apply_adapter, merge, set_adapter, unmerge

__all__ = ["Adapter", "AdapterBank", "AdapterRing", "adapt", "adapter_gain_names", "adapter_ring_names",
           "apply_adapter", "base_fingerprint", "get_adapters", "is_adapted", "merge", "set_adapter", "unmerge"]
