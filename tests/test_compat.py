"""Old import paths keep working for one release, with a DeprecationWarning that names the new home."""
import importlib

import pytest

MOVED = [("modelring.convert", "ring_names", "modelring.bank", "ring_names"),
         ("modelring.convert", "_EnterHook", "modelring.bank", "EnterHook"),
         ("modelring.convert", "select_targets", "modelring.plan", "select_targets"),
         ("modelring.convert", "ring_scales", "modelring.plan", "ring_scales"),
         ("modelring.convert", "resolve_ring_size", "modelring.sizes", "resolve_ring_size"),
         ("modelring.convert", "BYTE_SIZE", "modelring.sizes", "BYTE_SIZE"),
         ("modelring.convert", "split_proportional", "modelring.sizes", "split_proportional"),
         ("modelring.convert", "LEGACY_SPEC_KEY", "modelring.spec", "FILE_SPEC_KEY"),
         ("modelring.convert", "LEGACY_RING_PREFIX", "modelring.spec", "FILE_RING_PREFIX"),
         ("modelring.convert", "encode_spec", "modelring.spec", "encode_spec"),
         ("modelring.convert", "_LegacyStateDictHook", "modelring.compat", "LegacyStateDictHook"),
         ("modelring.generate", "RingSpec", "modelring.spec", "RingSpec"),
         ("modelring.generate", "Segment", "modelring.spec", "Segment"),
         ("modelring.generate", "SAMPLINGS", "modelring.spec", "SAMPLINGS"),
         ("modelring.generate", "ring_dict_problems", "modelring.spec", "ring_dict_problems"),
         ("modelring.diagnose", "entries_and_signs", "modelring.wiring", "entries_and_signs")]


@pytest.mark.parametrize("old, name, new, new_name", MOVED, ids=[f"{o}.{n}" for o, n, _, _ in MOVED])
def test_a_moved_name_still_imports_from_its_old_module_with_a_warning(old, name, new, new_name):
    with pytest.warns(DeprecationWarning, match=f"{old}.{name} moved to {new}.{new_name}"):
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(new), new_name)


def test_from_import_of_a_moved_name_warns_and_an_unknown_name_still_fails():
    with pytest.warns(DeprecationWarning, match="modelring.spec.RingSpec"):
        from modelring.generate import RingSpec  # noqa: F401
    with pytest.raises(ImportError):
        from modelring.convert import no_such_name  # noqa: F401


def test_names_the_verbs_still_use_import_silently(recwarn):
    from modelring.convert import DEFAULT_TYPES, Ring, RingBank, convert, materialize, rings_per_stage  # noqa: F401
    from modelring.bank import get_state  # noqa: F401
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
