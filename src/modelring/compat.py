"""Everything earlier releases named differently, translated in one place. Imports no torch (config reads it).

- ``LEGACY``: config keys of earlier releases (read, never written) and what each value means today, declared as
  data; ``modelring.config.resolve_legacy`` applies them, with one ``FutureWarning`` per key per process.
- ``moved_names``: a module's ``__getattr__`` that keeps names which moved to another module importable for one
  release, with a ``DeprecationWarning`` naming the new home.
- ``LegacyStateDictHook``: state dicts of releases before the ring bank (rings as root parameters
  ``modelring_<ring>``, every spec in one uint8 JSON tensor ``modelring_spec``, the layout model files still use)
  are renamed to today's keys before anything loads.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Callable, NamedTuple


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
        from .spec import BANK, EXTRA, FILE_RING_PREFIX, FILE_SPEC_KEY, decode_spec, encode_spec  # needs torch

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


class LegacyKey(NamedTuple):
    """A key of an earlier release (read, never written) and what each of its values means in today's keys.

    ``means`` maps a legacy value to the modern ``{dotted key: value}`` it stands for; ``read`` turns the stored
    value into one of those values first (``bool``: the old release read the switch by truthiness); ``task``, when
    set, is the only task the key means anything for (elsewhere it is read and ignored).
    """
    name: str
    means: dict
    modern: str
    read: Callable[[object], object] | None = None
    task: str | None = None


# pose.variant of earlier releases -> (pose.reuse, method); also the four variants of experiments/pose_variants.py
POSE_VARIANTS = {"independent": (False, "dense"), "reuse": (True, "dense"), "rpg": (False, "rpg"),
                 "reuse_rpg": (True, "rpg")}

# Applied in this order, so prune.enabled: true wins over ring.enabled, and the old pose switch (which decided on
# its own whether the model was converted) wins over both for the pose task.
LEGACY = {old.name: old for old in (
    LegacyKey("ring.enabled", {True: {"method": "rpg"}, False: {"method": "dense"}}, "method", read=bool),
    LegacyKey("prune.enabled", {True: {"method": "prune-global"}, False: {}}, "method", read=bool),
    # null meant "no variant" (a config without the key), so it changes nothing
    LegacyKey("pose.variant", {None: {}, **{variant: {"pose.reuse": reuse, "method": method}
                                            for variant, (reuse, method) in POSE_VARIANTS.items()}},
              "pose.reuse + method", task="pose"),
)}
