"""Quantized and pruned rings (``modelring.quantize``): the codec against hand values, exact file round trips, the
bytes a file takes, and clear errors for damaged encoded files."""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import modelring as mr
from modelring.io import saved_size
from modelring.quantize import (RingEncoding, decode_ring, dequantize_values, encode_ring, encoded_ring_bytes,
                                pack_mask, prune_rings, quantize_rings, quantize_values, ring_encoding, unpack_mask)


def test_8_and_4_bit_codes_by_hand():
    values = torch.tensor([1.27, -0.635, 0.0, 0.01, 2.0, -1.0, 0.5])
    codes, scales = quantize_values(values, 8, chunk=4)  # chunks [1.27, -0.635, 0, 0.01] and [2, -1, 0.5]
    assert torch.allclose(scales, torch.tensor([0.01, 2.0 / 127]))
    assert (codes.int() - 128).tolist() == [127, -64, 0, 1, 127, -64, 32]  # round half to even: -63.5 -> -64
    codes4, scales4 = quantize_values(torch.tensor([7.0, -7.0, 3.5]), 4, chunk=None)
    assert scales4.tolist() == [1.0] and codes4.tolist() == [15 | (1 << 4), 12 | (8 << 4)]  # offset 8, low first
    assert dequantize_values(codes4, scales4, 3, 4, None).tolist() == [7.0, -7.0, 4.0]


@pytest.mark.parametrize("bits, chunk", [(8, 64), (8, None), (4, 64), (4, 7)])
def test_quantization_error_is_at_most_half_a_step(bits, chunk):
    torch.manual_seed(0)
    values = torch.randn(1001) * torch.linspace(0.1, 3.0, 1001)
    codes, scales = quantize_values(values, bits, chunk)
    back = dequantize_values(codes, scales, values.numel(), bits, chunk)
    step = scales.repeat_interleave(chunk or values.numel())[: values.numel()]
    assert ((back - values).abs() <= step / 2 + 1e-6).all()


def test_masks_pack_eight_entries_a_byte():
    mask = torch.tensor([1, 0, 0, 0, 0, 0, 0, 1, 1, 1], dtype=torch.bool)
    assert pack_mask(mask).tolist() == [129, 3]
    assert torch.equal(unpack_mask(pack_mask(mask), 10), mask)


def _model():
    torch.manual_seed(0)
    return mr.convert(mr.create_model("resnet20", num_classes=10), 0.05, exclude=["conv1.weight", "fc.*"]).eval()


@pytest.mark.parametrize("steps", [["q8"], ["q4"], ["prune"], ["prune", "q8"], ["q4", "prune"], ["q8", "q4"]])
def test_a_compressed_model_loads_with_exactly_its_outputs(steps, tmp_path):
    model, x = _model(), torch.randn(2, 3, 32, 32)
    for step in steps:
        quantize_rings(model, int(step[1])) if step.startswith("q") else prune_rings(model, 0.25)
    expected = model(x)
    mr.save(model, tmp_path / "m.safetensors")
    loaded = mr.load(tmp_path / "m.safetensors").eval()
    assert torch.equal(loaded(x), expected)
    assert ring_encoding(loaded.modelring.ring0) == ring_encoding(model.modelring.ring0)
    mr.save(loaded, tmp_path / "again.safetensors")  # the same tensors and metadata again
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as a, safe_open(str(tmp_path / "again.safetensors"), "pt") as b:
        assert a.metadata() == b.metadata() and set(a.keys()) == set(b.keys())
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())


def test_file_bytes_shrink_as_the_encoding_says(tmp_path):
    model = _model()
    size = model.modelring.ring0.weight.numel()
    float_bytes = saved_size(model)
    q8 = saved_size(model, ring_bits=8)
    q4 = saved_size(model, ring_bits=4)
    header = 2000  # the JSON header grows by the encoding's metadata and the part names only
    for stored, bits in ((q8, 8), (q4, 4)):  # saved: the ring's float bytes minus its encoded bytes, less the header
        saving = 4 * size - encoded_ring_bytes(size, size, RingEncoding(bits))
        assert 0 < saving - (float_bytes - stored) < header
    assert encoded_ring_bytes(size, size, RingEncoding(8)) == size + 4 * -(-size // 4096)
    prune_rings(model, 0.1)
    kept = int((model.modelring.ring0.weight != 0).sum())
    assert kept == round(0.1 * size)
    assert encoded_ring_bytes(size, kept, RingEncoding(None, sparse=True)) == -(-size // 8) + 4 * kept


def test_saving_with_ring_bits_leaves_the_model_as_it_is(tmp_path):
    model, x = _model(), torch.randn(2, 3, 32, 32)
    before = model.modelring.ring0.weight.detach().clone()
    mr.save(model, tmp_path / "q.safetensors", ring_bits=4, ring_chunk=256)
    assert torch.equal(model.modelring.ring0.weight, before) and ring_encoding(model.modelring.ring0) is None
    quantize_rings(model, 4, chunk=256)  # what the file holds, computed in memory
    assert torch.equal(mr.load(tmp_path / "q.safetensors").eval()(x), model(x))


def test_a_ring_trained_after_quantizing_is_encoded_afresh(tmp_path):
    model = _model()
    quantize_rings(model, 8)
    with torch.no_grad():
        model.modelring.ring0.weight.add_(0.001)
    mr.save(model, tmp_path / "m.safetensors")
    loaded = mr.load(tmp_path / "m.safetensors")
    error = (loaded.modelring.ring0.weight - model.modelring.ring0.weight).abs().max()
    assert 0 < error <= model.modelring.ring0.weight.abs().max() / 127  # within one step, not the stale codes


def test_plain_models_and_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="has no rings"):
        quantize_rings(mr.create_model("resnet8", width=4))
    with pytest.raises(ValueError, match="has none"):
        mr.save(mr.create_model("resnet8", width=4), tmp_path / "p.safetensors", ring_bits=8)
    with pytest.raises(ValueError, match="bits must be one of"):
        quantize_rings(_model(), 3)
    assert not (tmp_path / "p.safetensors").exists()


def _rewrite(path, out, edit_tensors=None, edit_meta=None):
    with safe_open(str(path), "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    (edit_tensors or (lambda t: None))(tensors)
    (edit_meta or (lambda m: None))(meta)
    save_file(tensors, str(out), metadata=meta)
    return out


@pytest.mark.parametrize("edit_tensors, edit_meta, message", [
    (lambda t: t.update({"modelring_ring0.codes": t["modelring_ring0.codes"][:-1]}), None, "codes must be"),
    (lambda t: t["modelring_ring0.scales"].__setitem__(0, float("nan")), None, "scales must be"),
    (lambda t: t.pop("modelring_ring0.scales"), None, "needs tensors"),
    (None, lambda m: m.update(encodings=json.dumps({"ring0": {"bits": 3, "chunk": 4096, "sparse": False}})),
     "bits must be one of"),
    (None, lambda m: m.update(encodings=json.dumps({"ring9": {"bits": 8, "chunk": 4096, "sparse": False}})),
     "which the spec does not have"),
    (None, lambda m: m.update(format="modelring-1"), "encoded rings in a modelring-1 file"),
])
def test_damaged_encoded_files_are_clear_errors(edit_tensors, edit_meta, message, tmp_path):
    model = _model()
    quantize_rings(model, 8)
    good = mr.save(model, tmp_path / "good.safetensors")
    bad = _rewrite(good, tmp_path / "bad.safetensors", edit_tensors, edit_meta)
    with pytest.raises(ValueError, match=message):
        mr.load(bad)


def test_sparse_float_rings_store_survivors_only():
    ring = torch.tensor([0.0, 1.5, 0.0, 0.0, -2.0, 0.0, 0.0, 0.0, 0.0, 3.0])
    parts = encode_ring(ring, RingEncoding(bits=None, sparse=True))
    assert parts["values"].tolist() == [1.5, -2.0, 3.0] and parts["mask"].tolist() == [0b00010010, 0b10]
    assert torch.equal(decode_ring(parts, RingEncoding(bits=None, sparse=True), 10), ring)
