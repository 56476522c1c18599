"""Training loop of the multi-task dense regression task (``task.name: multitask``).

Same contract and files as the classification loop in ``modelring.train``: ``config.yaml``, ``metrics.csv`` /
``metrics.jsonl`` (one row per epoch), ``last.pt`` (resumable, atomic), ``best.safetensors`` (best epoch by
``multitask.select``), ``model.safetensors`` and ``report.json``. Data order and flips are keyed by
(seed, epoch[, index]), so a resumed run replays the same batches.

Loss = depth_weight * masked depth loss (L1 or L2, metres, valid pixels only)
     + normal_weight * normal loss (1 - cosine or squared L2, valid pixels only)
     + semantic_weight * cross-entropy (unlabelled pixels ignored).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...config import dump_config
from ...count import count_params
from ...data.s2d3ds import CLASSES, IGNORE_INDEX, s2d3ds_splits
from ...distributed import Dist, all_sum, check_same_wiring
from ...io import write_atomic
from ...models import create_model
from ...runfiles import MetricsLog, restore, save_best, save_checkpoint, save_final_model
from ...train import _autocast, apply_ring, build_optimizer, check_finite, make_loader
from ...wiring import derive_key
from .metrics import DenseMetrics

LOSS_PARTS = ("depth", "normal", "semantic")
SELECT = {"depth_rmse": -1.0, "normal_angle": -1.0, "normal_rmse": -1.0, "miou": 1.0}  # sign: higher is better


class MultitaskMetricsLog(MetricsLog):
    """metrics.csv / metrics.jsonl with the multi-task columns."""

    FIELDS = ("epoch", "lr", "train_loss", "train_depth", "train_normal", "train_semantic", "test_loss",
              "test_depth_rmse", "test_normal_rmse", "test_normal_angle", "test_miou", "images_per_s", "epoch_s")


def build_data(cfg: dict):
    """(train, test) ``S2D3DS`` data sets from ``data.root``; test = ``multitask.test_areas``."""
    dc, mc = cfg["data"], cfg["multitask"]
    if dc["name"] != "s2d3ds":
        raise ValueError(f"task multitask reads data.name: s2d3ds, got {dc['name']!r}; set data.name=s2d3ds")
    if not dc["root"]:
        raise ValueError("data.root is required: a 2D-3D-S folder (area_*/data/...), e.g. one written by "
                         "`modelring make-data multitask data/s2d3ds_synth`")
    if mc["num_classes"] < len(CLASSES):
        raise ValueError(f"multitask.num_classes must be >= {len(CLASSES)} (the 2D-3D-S classes), got "
                         f"{mc['num_classes']}")
    train, test = s2d3ds_splits(dc["root"], test_areas=list(mc["test_areas"]), size=dc["image_size"],
                                augment=dc["augment"], seed=cfg["train"]["seed"])
    return _limit(train, dc["train_limit"]), _limit(test, dc["test_limit"])


def _limit(dataset, limit):
    if limit:
        dataset.samples = dataset.samples[:limit]
    return dataset


def build_model(cfg: dict) -> nn.Module:
    """The registry model (``num_classes`` from ``multitask.num_classes``), converted when ``ring.enabled``."""
    torch.manual_seed(cfg["train"]["seed"])
    model = create_model(cfg["model"]["name"], num_classes=cfg["multitask"]["num_classes"], **cfg["model"]["kwargs"])
    return apply_ring(model, cfg["ring"])


def depth_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean L1 or squared error (metres) over valid pixels; 0 (with a graph) when none is valid."""
    err = (pred - target)[:, 0][valid]
    if not err.numel():
        return pred.sum() * 0
    return err.abs().mean() if kind == "l1" else (err * err).mean()


def normal_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean 1 - cosine or squared L2 distance over valid pixels; 0 (with a graph) when none is valid."""
    p, t = pred.permute(0, 2, 3, 1)[valid], target.permute(0, 2, 3, 1)[valid]
    if not p.numel():
        return pred.sum() * 0
    return (1 - (p * t).sum(-1)).mean() if kind == "cosine" else ((p - t) ** 2).sum(-1).mean()


def multitask_loss(pred: dict, batch: dict, mc: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the three task losses (see the module docstring); also each part as a float."""
    depth = depth_loss(pred["depth"], batch["depth"], batch["depth_valid"], mc["depth_loss"])
    normal = normal_loss(pred["normal"], batch["normal"], batch["normal_valid"], mc["normal_loss"])
    # nan_to_num: a batch without one labelled pixel
    semantic = torch.nan_to_num(F.cross_entropy(pred["semantic"], batch["semantic"], ignore_index=IGNORE_INDEX))
    total = mc["depth_weight"] * depth + mc["normal_weight"] * normal + mc["semantic_weight"] * semantic
    return total, {"depth": depth.item(), "normal": normal.item(), "semantic": semantic.item()}


def check_options(mc: dict) -> None:
    """Clear errors for misspelt loss or selection names."""
    if mc["depth_loss"] not in ("l1", "l2"):
        raise ValueError(f"multitask.depth_loss must be l1 or l2, got {mc['depth_loss']!r}")
    if mc["normal_loss"] not in ("cosine", "l2"):
        raise ValueError(f"multitask.normal_loss must be cosine or l2, got {mc['normal_loss']!r}")
    if mc["select"] not in SELECT:
        raise ValueError(f"multitask.select must be one of {sorted(SELECT)}, got {mc['select']!r}")


def _batch_to(batch: dict, device, channels_last: bool) -> dict:
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if channels_last:
        batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    return batch


def train_one_epoch(net, loader, opt, sched, epoch: int, cfg: dict, device, d: Dist = Dist()) -> dict:
    """One pass over the training split: mean total and per-task losses (per batch), images per second."""
    tc, mc = cfg["train"], cfg["multitask"]
    net.train()
    sums, count, start = [0.0] * 4, 0, time.perf_counter()
    for batch in loader:
        batch = _batch_to(batch, device, tc["channels_last"])
        with _autocast(device, tc["amp"]):
            pred = net(batch["image"])
        loss, parts = multitask_loss({k: v.float() for k, v in pred.items()}, batch, mc)
        check_finite(loss, epoch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        n = batch["image"].shape[0]
        sums = [s + v * n for s, v in zip(sums, [loss.item(), *parts.values()])]
        count += n
    sums = all_sum(sums + [count], d)
    n = max(sums[-1], 1)
    return {"loss": sums[0] / n, **{k: v / n for k, v in zip(LOSS_PARTS, sums[1:4])},
            "images_per_s": sums[-1] / (time.perf_counter() - start)}


@torch.no_grad()
def evaluate(model: nn.Module, loader, cfg: dict, device, d: Dist = Dist()) -> dict:
    """Test loss and dense metrics (see ``metrics.DenseMetrics``) over a loader, summed over ranks."""
    tc, mc = cfg["train"], cfg["multitask"]
    model.eval()
    metrics, loss_sum, count = DenseMetrics(mc["num_classes"]), 0.0, 0
    for batch in loader:
        batch = _batch_to(batch, device, tc["channels_last"])
        with _autocast(device, tc["amp"]):
            pred = {k: v.float() for k, v in model(batch["image"]).items()}
        loss_sum += multitask_loss(pred, batch, mc)[0].item() * batch["image"].shape[0]
        count += batch["image"].shape[0]
        metrics.update(pred, batch)
    sums = all_sum([loss_sum, count] + metrics.sums(), d)
    return {"loss": sums[0] / max(sums[1], 1), "count": int(sums[1]), **metrics.load_sums(sums[2:]).summary()}


def format_metrics(stats: dict, title: str) -> str:
    """The metrics of ``evaluate`` as an aligned table."""
    rows = [("depth RMSE (m)", stats["depth_rmse"]), ("depth MAE (m)", stats["depth_mae"]),
            ("normal RMSE", stats["normal_rmse"]), ("normal mean angle (deg)", stats["normal_angle"]),
            *[(f"normals within {k.rpartition('_')[2]} deg", v) for k, v in stats.items()
              if k.startswith("normal_within_")],
            ("segmentation mIoU", stats["miou"]), ("pixel accuracy", stats["pixel_acc"]),
            ("loss", stats["loss"])]
    return "\n".join([title] + [f"  {name:<26}{value:>10.4f}" for name, value in rows])


def evaluate_multitask(cfg: dict, model: nn.Module) -> str:
    """Dense metrics of ``model`` on the config's test areas, as a printable table."""
    _, test = build_data(cfg)
    device = torch.device(cfg["train"]["device"])
    model = model.to(device)
    if cfg["train"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    stats = evaluate(model, make_loader(test, cfg["train"]["eval_batch_size"], shuffle_key=None), cfg, device)
    return format_metrics(stats, f"multitask test metrics ({stats['count']:,} images, "
                                 f"{', '.join(cfg['multitask']['test_areas'])})")


def run_multitask(cfg: dict, tc: dict, out: Path, d: Dist, resume: bool, log) -> dict:
    """Train and evaluate as ``cfg`` says (the ``modelring.train.run`` task contract); returns the report."""
    mc, device, started_run = cfg["multitask"], d.device, time.perf_counter()
    check_options(mc)
    train_ds, test_ds = build_data(cfg)
    model = build_model(cfg).to(device)
    if tc["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    check_same_wiring(model, d)
    steps_per_epoch = math.ceil(len(train_ds) // d.world / tc["batch_size"])
    opt, sched = build_optimizer(model, cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # kept for the shared checkpoint format
    out.mkdir(parents=True, exist_ok=True)
    start_epoch, best = restore(out, resume, cfg, model, opt, sched, scaler, log, best=-math.inf)
    net = model if d.world == 1 else nn.parallel.DistributedDataParallel(model)
    if d.main:
        write_atomic(out / "config.yaml", lambda tmp: Path(tmp).write_text(dump_config(cfg)))
    metrics = MultitaskMetricsLog(out, cfg["out"]["tensorboard"]) if d.main else None
    if metrics is not None:
        metrics.keep_until(start_epoch)
    test_loader = make_loader(test_ds, tc["eval_batch_size"], shuffle_key=None, d=d)
    log(str(count_params(model)).split("\n")[0])
    for epoch in range(start_epoch, tc["epochs"]):
        started = time.perf_counter()
        train_ds.epoch = epoch
        loader = make_loader(train_ds, tc["batch_size"], shuffle_key=derive_key(tc["seed"], epoch, 0x5EED), d=d)
        stats = train_one_epoch(net, loader, opt, sched, epoch, cfg, device, d)
        test = evaluate(model, test_loader, cfg, device, d)
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": stats["loss"],
               **{f"train_{k}": stats[k] for k in LOSS_PARTS}, "test_loss": test["loss"],
               **{f"test_{k}": test[k] for k in ("depth_rmse", "normal_rmse", "normal_angle", "miou")},
               "images_per_s": stats["images_per_s"], "epoch_s": time.perf_counter() - started}
        score = SELECT[mc["select"]] * test[mc["select"]]
        if d.main:
            metrics.write(row)
            if score > best:
                save_best(model, out)
            save_checkpoint(out / "last.pt", model, opt, sched, scaler, epoch, max(best, score), cfg,
                            selection=("" if SELECT[mc["select"]] > 0 else "-") + f"test_{mc['select']}")
        best = max(best, score)
        log(f"epoch {epoch + 1}/{tc['epochs']}: train loss {stats['loss']:.4f} (depth {stats['depth']:.3f} "
            f"normal {stats['normal']:.3f} seg {stats['semantic']:.3f}) | test depth RMSE {test['depth_rmse']:.3f} m, "
            f"normal {test['normal_angle']:.1f} deg, mIoU {test['miou']:.3f} | {stats['images_per_s']:.0f} img/s, "
            f"{row['epoch_s']:.0f} s")
    test = evaluate(model, test_loader, cfg, device, d)  # every rank: its shard, summed over the ranks
    return final_report(model, cfg, out, test, time.perf_counter() - started_run, log) if d.main else {}


def final_report(model: nn.Module, cfg: dict, out: Path, test: dict, seconds: float, log=print) -> dict:
    """Final test metrics (of the whole test split), DoF vs dense, checkpoint bytes vs dense; written to
    ``report.json``."""
    checkpoint_bytes, dense_bytes = save_final_model(model, out)
    counts = count_params(model)
    report = {**{f"test_{k}": v for k, v in test.items() if k != "count"}, "test_images": test["count"],
              "dof": counts.dof, "ring": counts.ring, "free": counts.free, "dense_params": counts.virtual,
              "dof_fraction": counts.dof_fraction, "checkpoint_bytes": checkpoint_bytes,
              "dense_checkpoint_bytes": dense_bytes, "train_seconds": seconds, "run_dir": str(out)}
    write_atomic(out / "report.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
    log(format_metrics(test, f"final test metrics ({test['count']:,} images)"))
    log(f"DoF {counts.dof:,} (ring {counts.ring:,}, free {counts.free:,}) of {counts.virtual:,} dense parameters "
        f"({100 * counts.dof_fraction:.2f}%); checkpoint {report['checkpoint_bytes']:,} B vs dense {dense_bytes:,} B")
    log(f"logs: {out / 'metrics.csv'}; model: {out / 'model.safetensors'}; best: {out / 'best.safetensors'}; "
        f"resume state: {out / 'last.pt'}")
    return report
