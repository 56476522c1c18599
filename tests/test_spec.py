"""The ring spec (``modelring.spec``): plain values, exact round trips, and the checks a file's spec must pass."""
import pytest

import modelring as mr
from modelring.spec import RingSpec, decode_spec, encode_spec, readable_spec, ring_dict_problems, spec_mismatch


def _spec() -> RingSpec:
    model = mr.create_model("resnet8", width=4)
    return mr.plan_rings(model, 0.1, seed=7, exclude=["conv1.weight", "fc.*"])[0]


def test_a_spec_round_trips_through_plain_values_and_its_tensor_codec():
    spec = _spec()
    assert RingSpec.from_dict(spec.to_dict()) == spec
    assert decode_spec(encode_spec(spec.to_dict())) == spec.to_dict()
    assert readable_spec(encode_spec(spec.to_dict())) == spec.to_dict()
    assert readable_spec(encode_spec({"a": 1})[:-2]) is None  # torn JSON is unreadable, not an exception


def test_specs_that_decide_other_values_do_not_match_and_the_wiring_mode_does():
    ours = _spec().to_dict()
    assert spec_mismatch({**ours, "wiring": "recompute"}, ours) is None  # memory for time, same values
    assert "differs" in spec_mismatch({**ours, "seed": 8}, ours)
    assert "wiring version 1" in spec_mismatch({**ours, "wiring_version": 1}, ours)
    assert "unreadable" in spec_mismatch(None, ours)


@pytest.mark.parametrize("edit, problem", [({"size": 0}, "size=0"), ({"sampling": "random"}, "sampling"),
                                           ({"name": "not an identifier"}, "identifier"),
                                           ({"extra": 1}, "unexpected")])
def test_a_crafted_spec_names_its_problem(edit, problem):
    assert any(problem in p for p in ring_dict_problems({**_spec().to_dict(), **edit}))
    assert ring_dict_problems(_spec().to_dict()) == []
