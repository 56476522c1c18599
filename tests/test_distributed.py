"""DDP over gloo on 127.0.0.1: torchrun training agrees across ranks; DDP equals one process on the same batch."""
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from procs import init_ranks, run_bounded, spawn_ranks
from torch import nn

import modelring as mr
from modelring.distributed import Dist, cleanup

RECIPE = str(Path(__file__).parent.parent / "configs" / "fmnist_resnet20_rpg.yaml")


@pytest.mark.slow
def test_torchrun_two_processes(fmnist_root, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "modelring",
           "train", RECIPE, f"data.root={fmnist_root}", f"out.dir={run}", "train.epochs=2", "train.batch_size=24",
           "train.progress=false", "out.tensorboard=false", "train.threads=1"]
    result = run_bounded(cmd, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((run / "report.json").read_text())
    assert report["processes"] == 2 and report["ranks_agree"] is True
    counts = mr.count_params(mr.load(run / "model.safetensors"))
    assert report["ddp_gradient_bytes_per_step"] == 4 * counts.dof  # rings + free tensors, nothing generated
    assert report["ddp_gradient_bytes_per_step"] < 0.1 * 4 * counts.virtual
    assert "ranks agree: True" in result.stdout


def _mlp():
    torch.manual_seed(0)
    return mr.convert(nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)), 40, seed=2)


def _train(model, batches, step_model=None):
    forward = step_model or model
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for x, y in batches:
        opt.zero_grad()
        nn.functional.cross_entropy(forward(x), y).backward()
        opt.step()
    return model.modelring.ring0.weight.detach().clone()


def _global_batches():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(4)]


def _worker(rank, port, out):
    init_ranks(rank, port)
    model = _mlp()
    ddp = nn.parallel.DistributedDataParallel(model)
    shards = [(x[rank::2], y[rank::2]) for x, y in _global_batches()]
    ring = _train(model, shards, ddp)
    torch.save(ring, Path(out) / f"ring{rank}.pt")
    del ddp
    cleanup(Dist(rank=rank, world=2))


@pytest.mark.slow
def test_ddp_equals_single_process_on_the_same_global_batch(tmp_path):
    spawn_ranks(_worker, tmp_path)
    ring0 = torch.load(tmp_path / "ring0.pt", weights_only=True)
    ring1 = torch.load(tmp_path / "ring1.pt", weights_only=True)
    assert torch.equal(ring0, ring1)
    single = _train(_mlp(), _global_batches())
    torch.testing.assert_close(ring0, single, rtol=1e-5, atol=1e-6)
    assert not torch.equal(single, _mlp().modelring.ring0.weight.detach())  # training moved the ring


def _grouped_worker(rank, port, out):
    from modelring import elementwise

    elementwise.GROUP_MIN_WEIGHTS, elementwise.GROUP_RING_MULTIPLE = 0, 0  # one generation node per layer
    _worker(rank, port, out)


@pytest.mark.slow
def test_ddp_with_one_generation_node_per_layer_equals_single_process(tmp_path, monkeypatch):
    """With several generation groups (and their relays) the ring still gets one gradient per step, which DDP
    all-reduces once: both ranks and one process on the whole batches train the same ring."""
    from modelring import elementwise

    spawn_ranks(_grouped_worker, tmp_path)
    rings = [torch.load(tmp_path / f"ring{r}.pt", weights_only=True) for r in (0, 1)]
    assert torch.equal(rings[0], rings[1])
    monkeypatch.setattr(elementwise, "GROUP_MIN_WEIGHTS", 0)
    monkeypatch.setattr(elementwise, "GROUP_RING_MULTIPLE", 0)
    model = _mlp()
    model(torch.randn(2, 8))
    assert len(model.modelring.ring0.generator.segment_groups()) > 1
    torch.testing.assert_close(rings[0], _train(_mlp(), _global_batches()), rtol=1e-5, atol=1e-6)


def _fsdp_worker(rank, port, out):
    from torch.distributed.fsdp import fully_shard

    init_ranks(rank, port)
    model = _mlp()
    fully_shard(model)  # FSDP2 on the root of a converted model: the ring is a sharded DTensor between steps
    sharded = type(model.modelring.ring0.weight).__name__
    shards = [(x[rank::2], y[rank::2]) for x, y in _global_batches()]
    ring = _train(model, shards).full_tensor()
    torch.save({"ring": ring, "sharded": sharded}, Path(out) / f"fsdp{rank}.pt")
    cleanup(Dist(rank=rank, world=2))


@pytest.mark.slow
def test_fsdp2_fully_shard_on_the_root_equals_single_process(tmp_path):
    """FSDP2 gathers the ring before the generation hooks run and reduce-scatters its gradient: two gloo
    processes on half batches train the same ring as one process on the whole batches."""
    spawn_ranks(_fsdp_worker, tmp_path)
    results = [torch.load(tmp_path / f"fsdp{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(r["sharded"] == "DTensor" for r in results)
    assert torch.equal(results[0]["ring"], results[1]["ring"])
    torch.testing.assert_close(results[0]["ring"], _train(_mlp(), _global_batches()), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_ddp_run_killed_and_resumed_equals_uninterrupted(tmp_path):
    script = Path(__file__).parent.parent / "scripts" / "crash_resume.py"
    result = run_bounded([sys.executable, str(script), "--kills", "1", "--epochs", "2", "--nproc", "2",
                          "--seed", "3", "--work", str(tmp_path)],
                         timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "IDENTICAL" in result.stdout


def _mismatch_worker(rank, port, out):
    from modelring.distributed import check_same_wiring

    init_ranks(rank, port)
    torch.manual_seed(0)
    model = mr.convert(nn.Sequential(nn.Linear(8, 16)), 40, seed=rank)  # rank 1 wired differently
    try:
        check_same_wiring(model, Dist(rank=rank, world=2))
        message = "no error"
    except RuntimeError as err:
        message = str(err)
    Path(out, f"msg{rank}.txt").write_text(message)
    cleanup(Dist(rank=rank, world=2))


@pytest.mark.slow
def test_different_wiring_across_ranks_is_a_clear_error(tmp_path):
    spawn_ranks(_mismatch_worker, tmp_path)
    for rank in range(2):
        assert "ranks built different wiring" in (tmp_path / f"msg{rank}.txt").read_text()


def _failing_worker(rank, port, out):
    """``fit`` on 2 ranks (tiny Fashion-MNIST) where rank 1 raises in its second epoch; records what fit raised."""
    import modelring.loop as loop
    from modelring.config import load_config

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    init_ranks(rank, port)  # setup() finds the group joined
    original = loop.train_one_epoch

    def train_one_epoch(net, task, loader, opt, sched, scaler, epoch, *args, **kwargs):
        if rank == 1 and epoch == 1:
            raise OSError("rank 1 could not write its shard")
        return original(net, task, loader, opt, sched, scaler, epoch, *args, **kwargs)

    loop.train_one_epoch = train_one_epoch
    root = Path(out, "data_root.txt").read_text()
    cfg = load_config(RECIPE, [f"data.root={root}", f"out.dir={Path(out) / 'run'}", "train.epochs=3",
                               "train.batch_size=24", "train.progress=false", "out.tensorboard=false", "train.threads=1"])
    try:
        loop.fit(cfg, log=lambda *a: None)
    except BaseException as err:
        Path(out, f"error{rank}.txt").write_text(f"{type(err).__name__}: {err}")
        raise


@pytest.mark.slow
def test_a_rank_that_fails_leaves_with_its_own_error(fmnist_root, tmp_path):
    """The failing rank must not wait at the end-of-training barrier for peers that are still training: that
    hangs (or times out) and replaces the real error with a collective's."""
    from torch.multiprocessing import ProcessRaisedException

    (tmp_path / "data_root.txt").write_text(str(fmnist_root))
    with pytest.raises(ProcessRaisedException, match="rank 1 could not write its shard"):
        spawn_ranks(_failing_worker, tmp_path)
    assert (tmp_path / "error1.txt").read_text() == "OSError: rank 1 could not write its shard"
