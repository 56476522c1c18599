"""Everything earlier releases named differently, translated in one place.

- ``moved_names``: a module's ``__getattr__`` that keeps names which moved to another module importable for one
  release, with a ``DeprecationWarning`` naming the new home.
- ``LegacyStateDictHook``: state dicts of releases before the ring bank (rings as root parameters
  ``modelring_<ring>``, every spec in one uint8 JSON tensor ``modelring_spec``, the layout model files still use)
  are renamed to today's keys before anything loads.
"""
from __future__ import annotations

import importlib
import warnings

from .spec import BANK, EXTRA, FILE_RING_PREFIX, FILE_SPEC_KEY, decode_spec, encode_spec


def moved_names(module: str, moved: dict[str, str]):
    """A module-level ``__getattr__`` for ``module`` serving each name in ``moved`` (name -> the module that holds
    it now) with a ``DeprecationWarning``; any other missing name raises AttributeError as usual.

    Args:
        module: the ``__name__`` of the module that used to hold the names.
        moved: old name -> dotted name of its new module (the name itself is unchanged, or given as
            ``"new.module:new_name"``).

    Returns:
        The function to assign to the module's ``__getattr__``.
    """
    def __getattr__(name: str):
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target, _, new_name = moved[name].partition(":")
        new_name = new_name or name
        warnings.warn(f"{module}.{name} moved to {target}.{new_name}; import it from there (the old path goes in "
                      "the next release)", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(target), new_name)

    return __getattr__


class LegacyStateDictHook:
    """Root load_state_dict pre-hook: a state_dict of an earlier release (rings as root parameters
    ``modelring_ring<i>``, the spec as the uint8 JSON tensor ``modelring_spec``) is renamed to today's keys
    (``modelring.ring<i>.weight`` and the ring's extra state) before anything loads."""

    def __call__(self, module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        if prefix + FILE_SPEC_KEY not in state_dict:
            return
        try:
            spec = decode_spec(state_dict.pop(prefix + FILE_SPEC_KEY))
            rings = list(spec["rings"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
            errors.append(f"{prefix + FILE_SPEC_KEY} is not a readable modelring spec ({err})")
            return
        for ring in rings:
            name = ring.get("name") if isinstance(ring, dict) else None
            if not isinstance(name, str):
                errors.append(f"{prefix + FILE_SPEC_KEY} holds a ring without a name")
                return
            if prefix + FILE_RING_PREFIX + name in state_dict:
                state_dict[f"{prefix}{BANK}.{name}.weight"] = state_dict.pop(prefix + FILE_RING_PREFIX + name)
            state_dict[f"{prefix}{BANK}.{name}.{EXTRA}"] = encode_spec(ring)
