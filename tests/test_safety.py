"""Safe loading, damaged checkpoints, NaN losses, and the GPU path (CUDA checks run only where CUDA exists)."""
import os

import pytest
import torch

import modelring as mr
import modelring.loop as T
from modelring.config import load_config
from modelring.runfiles import load_checkpoint


class _Payload:
    """Unpickling this would create a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_training_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "evil": _Payload(marker)}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="not a readable modelring checkpoint"):
        load_checkpoint(tmp_path / "last.pt")
    assert not marker.exists()


def test_pickle_handed_to_load_as_a_model_file_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save(_Payload(marker), tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        mr.load(tmp_path / "model.safetensors")
    assert not marker.exists()


def test_truncated_training_checkpoint_is_a_clear_error(fmnist_root, tmp_path):
    cfg = load_config(None, [f"data.root={fmnist_root}", f"out.dir={tmp_path}", "train.epochs=1",
                             "train.progress=false", "out.tensorboard=false", "data.pad_to=32"])
    T.fit(cfg, log=lambda *a: None)
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="not a readable modelring checkpoint"):
        T.fit(cfg, resume=True, log=lambda *a: None)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(fmnist_root, tmp_path, monkeypatch):
    cfg = load_config(None, [f"data.root={fmnist_root}", f"out.dir={tmp_path}", "train.epochs=2",
                             "train.progress=false", "out.tensorboard=false", "data.pad_to=32"])
    real_build = T.build_model

    def poisoned(*args):
        model = real_build(*args)
        calls = []

        def maybe_nan(module, inputs, output):  # epoch 1 has two training batches of 128; then NaN
            if module.training:
                calls.append(1)
            return output * float("nan") if len(calls) > 2 and module.training else output
        model.register_forward_hook(maybe_nan)
        return model

    monkeypatch.setattr(T, "build_model", poisoned)
    with pytest.raises(FloatingPointError, match="loss became nan in epoch 2"):
        T.fit(cfg, log=lambda *a: None)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 0 and all(torch.isfinite(v).all() for v in state["model"].values()
                                       if v.is_floating_point())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU machine)")
@pytest.mark.parametrize("block", [1, 16])
def test_wiring_and_generation_identical_on_cuda(block):
    from helpers import fingerprint, make_spec
    from modelring.generate import build_wiring, generate

    spec = make_spec([[64, 32, 3, 3], [10, 64], [5000]], 5000, seed=9, scales=[0.5, 2.0, 1.0], block=block)
    cpu = build_wiring(spec, torch.device("cpu"), torch.float32)
    gpu = build_wiring(spec, torch.device("cuda"), torch.float32)
    assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu.tensors(), gpu.tensors()))
    ring = torch.randn(5000)
    for a, b in zip(generate(ring, spec, cpu), generate(ring.cuda(), spec, gpu)):
        assert torch.equal(a, b.cpu())
    grads = []
    for _ in range(2):
        r = ring.cuda().requires_grad_()
        sum(w.square().sum() for w in generate(r, spec, gpu)).backward()
        grads.append(r.grad.cpu())
    assert torch.equal(grads[0], grads[1])  # deterministic backward on CUDA too
    r = ring.clone().requires_grad_()
    sum(w.square().sum() for w in generate(r, spec, cpu)).backward()
    torch.testing.assert_close(grads[0], r.grad)  # squares differ in rounding only: equal up to float error
    assert fingerprint(spec)  # the CPU fingerprint helper still works beside it
