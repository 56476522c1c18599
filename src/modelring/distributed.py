"""Distributed data parallel helpers for ``torchrun`` (one process per device).

``torchrun --standalone --nproc_per_node=N -m modelring train CONFIG`` sets RANK / WORLD_SIZE / LOCAL_RANK;
``setup`` then joins the process group (gloo on CPU, nccl on CUDA). Every rank builds its wiring from the
integer hash on its own, and ``check_same_wiring`` proves they agree before the first step. Gradient traffic is
what DDP all-reduces: the rings and the free tensors, never the generated weights; ``GradientBytes`` counts it.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .bank import get_state


@dataclass(frozen=True)
class Dist:
    """Where this process stands: rank, world size, and the device it drives."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=torch.device(device))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = torch.device(f"cuda:{local}") if device.startswith("cuda") else torch.device(device)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return Dist(rank=rank, world=world, device=chosen)


def shard(indices: torch.Tensor, d: Dist, *, even: bool) -> list[int]:
    """This rank's share of ``indices`` (every world-th one). ``even`` drops the remainder so that all ranks
    run the same number of steps (DDP needs it in training)."""
    if even:
        indices = indices[: len(indices) - len(indices) % d.world]
    return indices[d.rank::d.world].tolist()


def wiring_fingerprint(model: nn.Module, device: torch.device) -> int:
    """A 63-bit digest of every ring's spec and of the wiring tensors this process built."""
    state = get_state(model)
    digest = hashlib.sha256(json.dumps(state.spec(), sort_keys=True).encode() if state else b"plain")
    for i, gen in enumerate(state.generators if state else []):
        wiring = gen.wiring(device, state.ring(i).dtype)
        for tensor in wiring.tensors():
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little") >> 1


def check_same_wiring(model: nn.Module, d: Dist) -> None:
    """Raise on every rank when any two ranks built different wiring (different modelring, spec or bug)."""
    if d.world == 1:
        return
    mine = torch.tensor([wiring_fingerprint(model, d.device)], dtype=torch.int64, device=d.device)
    every = [torch.zeros_like(mine) for _ in range(d.world)]
    dist.all_gather(every, mine)
    values = [int(t.item()) for t in every]
    if len(set(values)) > 1:
        raise RuntimeError(f"ranks built different wiring (fingerprints by rank: {values}); every rank must run "
                           "the same modelring version, config and seed")


def all_sum(values: list[float], d: Dist) -> list[float]:
    """Element-wise sum of a few numbers over all ranks (float64)."""
    if d.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def parameters_agree(model: nn.Module, d: Dist) -> bool:
    """Whether every rank holds bit-identical parameters (rings included)."""
    digest = hashlib.sha256()
    for _, p in sorted(model.named_parameters(), key=lambda item: item[0]):
        digest.update(p.detach().cpu().contiguous().numpy().tobytes())
    if d.world == 1:
        return True
    every = [None] * d.world
    dist.all_gather_object(every, digest.hexdigest())
    return all(v == every[0] for v in every)


@dataclass
class GradientBytes:
    """Gradient bytes all-reduced by DDP, counted by ``count_and_allreduce``."""

    bytes: int = 0


def count_and_allreduce(state: GradientBytes, bucket):
    """DDP communication hook: count the bucket's bytes, then all-reduce it as DDP would by default."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    buffer = bucket.buffer()
    state.bytes += buffer.numel() * buffer.element_size()
    return allreduce_hook(None, bucket)


def cleanup(d: Dist, *, finished: bool = True) -> None:
    """Leave the process group; drop every DDP wrapper first. ``finished``: training ended on every rank, so wait
    for all of them at a barrier; after an error (``finished=False``) leave at once, so the error is not replaced by
    a collective's failure (the other ranks may still be training; torchrun stops them once this rank exits).

    DDP sits in a reference cycle, so its Reducer is freed by some later garbage collection; if that comes after
    ``destroy_process_group`` the Reducer holds the group's last reference and destroys it with the GIL held,
    joining gloo's worker threads while one of them may wait for the GIL to free a finished all-reduce: a hang at
    exit (torch 2.13; seen in 1 of 9 two-rank DDP runs). Collecting first frees it while the group is registered.
    """
    if d.world > 1 and dist.is_initialized():
        gc.collect()
        if finished:
            dist.barrier()
        dist.destroy_process_group()
