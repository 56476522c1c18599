"""Pose training and evaluation: MPII-layout data, multi-stage heatmap network, PCKh@0.5.

``modelring train configs/pose_*.yaml`` (``task.name: pose``) lands in ``run_pose``; ``modelring eval RUN``
in ``evaluate_pose``. The ``pose`` config section holds what is specific to the task; ``pose.variant`` picks
the model: ``independent`` (every stage its own dense module), ``reuse`` (one refinement module applied
S-1 times, ``pose.new_norm`` for a BatchNorm per application), ``rpg`` and ``reuse_rpg`` (the same two,
generated from model rings as the ``ring`` section says). The variant decides whether the model is converted:
it overrides ``ring.enabled``.

Loss: intermediate supervision, the sum over stages of the target-weighted heatmap MSE (× 0.5, as HRNet's
JointsMSELoss). Metric: PCKh@0.5 of the last stage's heatmaps (``modelring.tasks.pose.metrics``), optionally
averaged with the mirrored crop's heatmaps (``pose.flip_test``). Files and resume behave as in
``modelring.train``: config.yaml, metrics.csv/jsonl, last.pt, best.safetensors, model.safetensors,
report.json.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from ...config import dump_config
from ...count import count_params
from ...data.mpii import JOINT_NAMES, NUM_JOINTS, MPIIDataset
from ...distributed import Dist, all_sum, check_same_wiring
from ...io import write_atomic
from ...models import create_model
from ...runfiles import MetricsLog, restore, save_best, save_checkpoint, save_final_model
from ...train import _to, apply_ring, build_optimizer, check_finite, make_loader
from ...wiring import derive_key
from .metrics import PoseMeter, decode_heatmaps, flip_back, image_coordinates, joint_table

VARIANTS = {"independent": (False, False), "reuse": (True, False), "rpg": (False, True), "reuse_rpg": (True, True)}


class PoseMetricsLog(MetricsLog):
    """metrics.csv / metrics.jsonl with the pose columns."""

    FIELDS = ("epoch", "lr", "train_loss", "test_loss", "test_pckh", "test_pck", "images_per_s", "epoch_s")


def variant_switches(variant: str) -> tuple[bool, bool]:
    """``pose.variant`` -> (reuse the refinement stage, generate from a ring)."""
    if variant not in VARIANTS:
        raise ValueError(f"pose.variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    return VARIANTS[variant]


def build_pose_data(cfg: dict) -> tuple[MPIIDataset, MPIIDataset]:
    """Training split (augmented as ``data.augment`` and the pose section say) and the ``valid`` split."""
    dc, pc = cfg["data"], cfg["pose"]
    if dc["name"] != "mpii":
        raise ValueError(f"task.name=pose reads MPII-layout data: set data.name=mpii (got {dc['name']!r})")
    if not dc["root"]:
        raise ValueError("data.root is required for pose: the folder with annot/ and images/ "
                         "(`modelring make-data pose ROOT` writes one)")
    common = {"input_size": pc["input_size"], "heatmap_size": pc["heatmap_size"], "sigma": pc["sigma"],
              "box_margin": pc["box_margin"], "seed": cfg["train"]["seed"]}
    train = MPIIDataset(dc["root"], "train", augment=dc["augment"], rotation=pc["rotation"],
                        scale_factor=pc["scale_factor"], flip=pc["flip"], **common)
    test = MPIIDataset(dc["root"], "valid", **common)
    for ds, limit in ((train, dc["train_limit"]), (test, dc["test_limit"])):
        ds.records = ds.records[:limit] if limit else ds.records
    return train, test


def build_pose_model(cfg: dict) -> nn.Module:
    """The registry model (``model.name``, default recipe ``pose_cpm``) as ``pose.variant`` says."""
    reuse, rpg = variant_switches(cfg["pose"]["variant"])
    kwargs = {"num_joints": NUM_JOINTS, "stages": cfg["pose"]["stages"], "reuse": reuse,
              "new_norm": cfg["pose"]["new_norm"], **cfg["model"]["kwargs"]}
    torch.manual_seed(cfg["train"]["seed"])
    return apply_ring(create_model(cfg["model"]["name"], **kwargs), {**cfg["ring"], "enabled": rpg})


def pose_loss(heatmaps: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sum over stages of 0.5 × mean squared error, each joint's heatmaps scaled by its weight.

    Args:
        heatmaps: (B, S, J, H, W) predictions of every stage.
        target: (B, J, H, W); weight: (B, J).
    """
    w = weight[:, None, :, None, None]
    return 0.5 * ((heatmaps - target[:, None]) * w).square().mean(dim=(0, 2, 3, 4)).sum()


def predict(model: nn.Module, images: torch.Tensor, *, flip_test: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(all stages' heatmaps, last-stage heatmaps used for decoding, averaged with the mirrored view)."""
    heatmaps = model(images)
    final = heatmaps[:, -1]
    if flip_test:
        final = 0.5 * (final + flip_back(model(images.flip(-1))[:, -1]))
    return heatmaps, final


@torch.no_grad()
def evaluate_loader(model: nn.Module, loader, cfg: dict, device, d: Dist = Dist()) -> tuple[float, PoseMeter]:
    """Mean loss and the PCKh/PCK counts over a loader (summed over ranks)."""
    model.eval()
    meter, loss_sum, count = PoseMeter(threshold=cfg["pose"]["threshold"]), 0.0, 0
    stride = cfg["pose"]["input_size"] / cfg["pose"]["heatmap_size"]
    for images, target, weight, meta in loader:
        images = _to(images, device, cfg["train"]["channels_last"])
        heatmaps, final = predict(model, images, flip_test=cfg["pose"]["flip_test"])
        loss_sum += pose_loss(heatmaps.float(), target.to(device), weight.to(device)).item() * len(images)
        count += len(images)
        coords, _ = decode_heatmaps(final.float().cpu())
        pred = image_coordinates(coords, meta["matrix"], stride=stride)
        meter.update(pred, meta["joints"].numpy(), meta["joints_vis"].numpy(), meta["head_size"].numpy())
    totals = all_sum([loss_sum, count] + meter.state(), d)
    meter.load(totals[2:])
    return totals[0] / max(totals[1], 1), meter


def train_one_epoch(net: nn.Module, loader, opt, sched, epoch: int, cfg: dict, device, d: Dist = Dist()) -> dict:
    """One pass over the training batches; mean loss over all ranks, images per second of this rank."""
    net.train()
    started, loss_sum, count = time.perf_counter(), 0.0, 0
    for images, target, weight, _ in loader:
        images = _to(images, device, cfg["train"]["channels_last"])
        loss = pose_loss(net(images), target.to(device), weight.to(device))
        check_finite(loss, epoch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum, count = loss_sum + loss.item() * len(images), count + len(images)
    seconds = time.perf_counter() - started
    total_loss, total_count = all_sum([loss_sum, count], d)
    return {"loss": total_loss / max(total_count, 1), "images_per_s": count / seconds}


def run_pose(cfg: dict, tc: dict, out: Path, d: Dist, resume: bool, log) -> dict:
    """Train and evaluate a pose model as ``cfg`` says (contract of ``modelring.train.run``'s task loops).

    Returns:
        The report written to ``out/report.json`` (rank 0; other ranks return {}).
    """
    device = d.device
    train_ds, test_ds = build_pose_data(cfg)
    model = build_pose_model(cfg).to(device)
    if tc["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    check_same_wiring(model, d)
    steps_per_epoch = math.ceil(len(train_ds) // d.world / tc["batch_size"])
    opt, sched = build_optimizer(model, cfg, steps_per_epoch, cfg["pose"]["optimizer"],
                                  setting="pose.optimizer")
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # kept for the shared checkpoint format
    out.mkdir(parents=True, exist_ok=True)
    start_epoch, best = restore(out, resume, cfg, model, opt, sched, scaler, log, best=-1.0)
    net = model
    if d.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    metrics = PoseMetricsLog(out, cfg["out"]["tensorboard"]) if d.main else None
    if d.main:
        write_atomic(out / "config.yaml", lambda tmp: Path(tmp).write_text(dump_config(cfg)))
        metrics.keep_until(start_epoch)
    test_loader = make_loader(test_ds, tc["eval_batch_size"], shuffle_key=None, d=d)
    log(f"pose {cfg['pose']['variant']}: " + str(count_params(model)).split("\n")[0])
    for epoch in range(start_epoch, tc["epochs"]):
        started = time.perf_counter()
        train_ds.epoch = epoch
        loader = make_loader(train_ds, tc["batch_size"], shuffle_key=derive_key(tc["seed"], epoch, 0x5EED), d=d)
        stats = train_one_epoch(net, loader, opt, sched, epoch, cfg, device, d)
        test_loss, meter = evaluate_loader(model, test_loader, cfg, device, d)
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": stats["loss"],
               "test_loss": test_loss, "test_pckh": meter.mean("pckh"), "test_pck": meter.mean("pck"),
               "images_per_s": stats["images_per_s"], "epoch_s": time.perf_counter() - started}
        if d.main:
            metrics.write(row)
            if row["test_pckh"] > best:
                save_best(model, out)
            save_checkpoint(out / "last.pt", model, opt, sched, scaler, epoch, max(best, row["test_pckh"]), cfg,
                            selection="test_pckh")
        best = max(best, row["test_pckh"])
        log(f"epoch {epoch + 1}/{tc['epochs']}: train loss {stats['loss']:.5f} | test loss {test_loss:.5f} "
            f"PCKh@{meter.threshold} {row['test_pckh']:.4f} PCK {row['test_pck']:.4f} | "
            f"{stats['images_per_s']:.0f} img/s, {row['epoch_s']:.0f} s")
    _, meter = evaluate_loader(model, test_loader, cfg, device, d)  # every rank: its shard, summed
    return pose_report(model, cfg, out, meter, best, log) if d.main else {}


def pose_report(model: nn.Module, cfg: dict, out: Path, meter: PoseMeter, best: float, log=print) -> dict:
    """Write model.safetensors and report.json (PCKh/PCK, per-joint PCKh, DoF, checkpoint bytes)."""
    checkpoint_bytes, dense_bytes = save_final_model(model, out)
    counts = count_params(model)
    per_joint = {n: None if math.isnan(v) else float(v) for n, v in zip(JOINT_NAMES, meter.per_joint("pckh"))}
    report = {"variant": cfg["pose"]["variant"], "test_pckh": meter.mean("pckh"), "test_pck": meter.mean("pck"),
              "best_test_pckh": best, "pckh_per_joint": per_joint,
              "dof": counts.dof, "ring": counts.ring, "dense_params": counts.virtual,
              "dof_fraction": counts.dof_fraction, "checkpoint_bytes": checkpoint_bytes,
              "dense_checkpoint_bytes": dense_bytes, "run_dir": str(out)}
    write_atomic(out / "report.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
    log(f"\n{joint_table(meter)}\n")
    log(f"DoF {counts.dof:,} of {counts.virtual:,} dense parameters ({100 * counts.dof_fraction:.2f}%); "
        f"checkpoint {report['checkpoint_bytes']:,} B vs dense {dense_bytes:,} B")
    log(f"logs: {out / 'metrics.csv'}; model: {out / 'model.safetensors'}; best: {out / 'best.safetensors'}; "
        f"resume state: {out / 'last.pt'}")
    return report


def evaluate_pose(cfg: dict, model: nn.Module) -> str:
    """PCKh/PCK per joint of ``model`` on the config's ``valid`` split, as a printable table."""
    _, test_ds = build_pose_data(cfg)
    device = torch.device(cfg["train"]["device"])
    model = model.to(device)
    if cfg["train"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    loader = make_loader(test_ds, cfg["train"]["eval_batch_size"], shuffle_key=None)
    loss, meter = evaluate_loader(model, loader, cfg, device)
    flip = " (flip test)" if cfg["pose"]["flip_test"] else ""
    return f"{len(test_ds):,} persons, test loss {loss:.5f}{flip}\n{joint_table(meter)}"
