"""state_dict, save/load and materialize round-trips; file sizes; bad files."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from torch import nn

import modelring as mr
from modelring.bank import get_state
from modelring.spec import FILE_SPEC_KEY, decode_spec, encode_spec


def _model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return mr.convert(mr.create_model("resnet20", num_classes=7), 0.05, seed=3, **kwargs)


def _trained(model):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 3, 32, 32)).sum().backward()
        opt.step()
    return model.eval()


def _same_outputs(a, b):
    x = torch.randn(3, 3, 32, 32)
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_state_dict_holds_each_ring_once_and_no_dense_weights():
    model = _model()
    sd = model.state_dict()
    assert sd["modelring.ring0.weight"] is model.modelring.ring0.weight.data or torch.equal(
        sd["modelring.ring0.weight"], model.modelring.ring0.weight)
    assert not any(k.endswith("conv1.weight") or k == "fc.weight" for k in sd)
    # the ring's spec as its extra state, a uint8 JSON tensor (every value of the state_dict is a tensor)
    assert decode_spec(sd["modelring.ring0._extra_state"]) == get_state(model).spec()["rings"][0]
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    assert [k for k in sd if "modelring" in k] == ["modelring.ring0.weight", "modelring.ring0._extra_state"]


def test_state_dict_of_the_earlier_layout_still_loads():
    """Earlier releases kept rings as root parameters and the spec as a uint8 JSON tensor."""
    model = _trained(_model())
    sd = model.state_dict()
    old = {k: v for k, v in sd.items() if not k.startswith("modelring.")}
    old["modelring.ring0.weight"] = sd["modelring.ring0.weight"]
    old[FILE_SPEC_KEY] = encode_spec(get_state(model).spec())
    fresh = _model(seed=1)
    fresh.load_state_dict(old)
    _same_outputs(model, fresh)
    old[FILE_SPEC_KEY] = encode_spec({"rings": [{**get_state(model).spec()["rings"][0], "seed": 99}]})
    with pytest.raises(RuntimeError, match="modelring spec"):
        _model(seed=1).load_state_dict(old)


def test_state_dict_roundtrip_into_fresh_conversion():
    model = _trained(_model())
    fresh = _model(seed=1)
    fresh.load_state_dict(model.state_dict())
    _same_outputs(model, fresh)


def test_state_dict_moves_between_wiring_modes():
    model = _trained(_model())
    fresh = _model(seed=1, wiring="recompute")
    fresh.load_state_dict(model.state_dict())
    _same_outputs(model, fresh)


def test_state_dict_spec_mismatch_is_refused():
    sd = _model().state_dict()
    other = mr.convert(mr.create_model("resnet20", num_classes=7), 0.05, seed=4)
    with pytest.raises(RuntimeError, match="modelring spec"):
        other.load_state_dict(sd)
    sd.pop("modelring.ring0._extra_state")
    with pytest.raises(RuntimeError, match="Missing key"):
        _model().load_state_dict(sd)


def test_save_load_from_registry(tmp_path):
    model = _trained(_model())
    path = mr.save(model, tmp_path / "m.safetensors")
    loaded = mr.load(path)
    _same_outputs(model, loaded)
    counts = mr.count_params(model)
    assert os.path.getsize(path) <= 4 * (counts.ring + counts.free + counts.buffers) + 16 * 1024
    assert not list(tmp_path.glob(".*.tmp"))


def test_load_into_user_model_converted_or_not(tmp_path):
    model = _trained(_model())
    path = mr.save(model, tmp_path / "m.safetensors")
    _same_outputs(model, mr.load(path, model=mr.create_model("resnet20", num_classes=7)))
    _same_outputs(model, mr.load(path, model=_model(seed=5)))


def test_user_model_with_tied_weights_roundtrip(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, 6)
            self.b = nn.Linear(6, 6)
            self.b.bias = self.a.bias  # tied free parameter: stored once

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(0)
    model = mr.convert(Tied(), 20)
    path = mr.save(model, tmp_path / "t.safetensors")
    loaded = mr.load(path, model=Tied())
    x = torch.randn(2, 6)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.b.bias is loaded.a.bias or torch.equal(loaded.b.bias, loaded.a.bias)
    with pytest.raises(ValueError, match="does not say how to build"):
        mr.load(path)


def test_materialize_same_outputs_plain_classes_and_no_modelring_needed(tmp_path):
    model = _trained(_model())
    dense = mr.materialize(model)
    _same_outputs(model, dense)
    assert not mr.is_converted(dense) and mr.is_converted(model)
    assert "conv1.weight" in dense.state_dict() and not any("modelring" in k for k in dense.state_dict())
    assert not dense._forward_pre_hooks and not dense.layer1[0].conv1._forward_pre_hooks
    plain = mr.create_model("resnet20", num_classes=7)
    plain.load_state_dict(dense.state_dict())  # a plain model of the original class takes the weights
    _same_outputs(dense, plain)


def test_materialized_user_model_runs_without_modelring(tmp_path):
    torch.manual_seed(0)
    model = mr.convert(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)), 50)
    dense = mr.materialize(model)
    torch.save(dense.state_dict(), tmp_path / "dense.pt")
    x = torch.randn(2, 3, 8, 8)
    torch.save(x, tmp_path / "x.pt")
    expected = model(x)
    code = ("import sys, torch; sys.modules['modelring'] = None; from torch import nn\n"
            "m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))\n"
            f"m.load_state_dict(torch.load(r'{tmp_path / 'dense.pt'}', weights_only=True))\n"
            f"print(m(torch.load(r'{tmp_path / 'x.pt'}', weights_only=True)).tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    torch.testing.assert_close(torch.tensor(json.loads(out.stdout)), expected.detach())


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        mr.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        mr.load(junk)
    good = mr.save(_model(), tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    with pytest.raises(ValueError, match="not a readable safetensors"):
        mr.load(truncated)
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a modelring model file"):
        mr.load(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mr.save(_model(), tmp_path / "nofolder" / "m.safetensors")


def test_failed_save_leaves_previous_file_intact(tmp_path):
    path = mr.save(_model(), tmp_path / "m.safetensors")
    before = path.read_bytes()

    class Weird(nn.Module):
        def state_dict(self, *a, **k):
            return {"x": "not a tensor"}

    with pytest.raises(TypeError, match="not a tensor"):
        mr.save(Weird(), path)
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_spec_that_does_not_fit_leaves_model_untouched(tmp_path):
    path = mr.save(_model(), tmp_path / "m.safetensors")
    other = mr.create_model("resnet32", num_classes=7)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match="does not fit this model: missing"):
        mr.load(path, model=other)
    assert not mr.is_converted(other) and not other._forward_pre_hooks
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_tampered_spec_is_a_clear_error(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = mr.save(_model(), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    spec = json.loads(meta["spec"])
    del spec["rings"][0]["segments"]
    save_file(tensors, str(path), metadata={**meta, "spec": json.dumps(spec)})
    with pytest.raises(ValueError, match="unreadable modelring spec"):
        mr.load(path)
    spec["rings"][0]["wiring_version"] = 99
    save_file(tensors, str(path), metadata={**meta, "spec": json.dumps({"rings": [{"wiring_version": 99}]})})
    with pytest.raises(ValueError, match="wiring version 99"):
        mr.load(path)


def test_saved_size_equals_the_written_file_without_writing(tmp_path):
    model = mr.convert(mr.create_model("resnet8", width=4), 0.05)
    assert mr.io.saved_size(model) == mr.save(model, tmp_path / "m.safetensors").stat().st_size
    dense = mr.materialize(model)
    assert mr.io.saved_size(dense) == mr.save(dense, tmp_path / "d.safetensors").stat().st_size


def _rewrite(path, spec=None, model=None, tensors=None, raw_spec=None):
    """Rewrite a saved model file with edited metadata or tensors (a crafted file)."""
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta, stored = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta = {**meta, **({"spec": json.dumps(spec)} if spec is not None else {}),
            **({"spec": raw_spec} if raw_spec is not None else {}),
            **({"model": json.dumps(model)} if model is not None else {})}
    save_file({**stored, **(tensors or {})}, str(path), metadata=meta)
    return path


def _spec_of(path):
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["spec"])


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["rings"][0].update(size=0), "size=0 is out of range"),
    (lambda s: s["rings"][0].update(block=10 ** 12), "block=1000000000000 is out of range"),
    (lambda s: s["rings"][0]["segments"].append(dict(s["rings"][0]["segments"][0])), "appears twice"),
    (lambda s: s["rings"][0]["segments"][0].update(shape=[-3, 3]), "positive shape"),
    (lambda s: s["rings"][0].update(sampling="random"), "sampling='random'"),
    (lambda s: s["rings"].append(dict(s["rings"][0])), "share a name"),
])
def test_crafted_specs_are_refused_before_anything_is_built(tmp_path, edit, message):
    path = mr.save(_model(), tmp_path / "m.safetensors")
    spec = _spec_of(path)
    edit(spec)
    _rewrite(path, spec=spec)
    with pytest.raises(ValueError, match=message):
        mr.load(path)
    target = mr.create_model("resnet20", num_classes=7)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError):
        mr.load(path, model=target)  # the given model is left exactly as it was
    assert not mr.is_converted(target)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_rings_must_be_finite_floats_of_the_spec_size(tmp_path):
    path = mr.save(_model(), tmp_path / "m.safetensors")
    ring = safe_open(str(path), framework="pt").get_tensor("modelring_ring0")
    _rewrite(path, tensors={"modelring_ring0": ring.clone().index_fill_(0, torch.tensor([3]), float("nan"))})
    with pytest.raises(ValueError, match="hold NaN or Inf"):
        mr.load(path)
    _rewrite(path, tensors={"modelring_ring0": ring.view(torch.int32)})  # the same bytes relabelled int32
    with pytest.raises(ValueError, match="needs a floating-point vector"):
        mr.load(path)


def test_metadata_describing_a_huge_model_is_refused_without_building_it(tmp_path, monkeypatch):
    import modelring.io as mio

    path = mr.save(_model(), tmp_path / "m.safetensors")
    _rewrite(path, model={"name": "resnet20", "kwargs": {"num_classes": 10 ** 7}})  # 2.8 GB if built
    with pytest.raises(ValueError, match="does not fit this model"):
        mr.load(path)
    _rewrite(path, model={"name": "resnet20", "kwargs": {"num_classes": 7, "no_such_option": 1}})
    with pytest.raises(ValueError, match="cannot be built"):
        mr.load(path)
    _rewrite(path, model={"name": "resnet20", "kwargs": {"num_classes": 7}})
    monkeypatch.setattr(mio, "_physical_memory", lambda: 1000)  # a machine with 1 kB: even ResNet-20 is too big
    with pytest.raises(ValueError, match="more than half of this machine"):
        mr.load(path)


def test_deeply_nested_json_metadata_is_a_clear_error(tmp_path):
    path = mr.save(_model(), tmp_path / "m.safetensors")
    _rewrite(path, raw_spec="[" * 200_000 + "]" * 200_000)
    with pytest.raises(ValueError, match="not readable JSON"):
        mr.load(path)
