"""Multi-task dense regression (``task.name: multitask``): depth, surface normals and semantic segmentation on
the 2D-3D-S layout, one encoder-decoder with three heads.

Loss = depth_weight * masked depth loss (L1 or L2, metres, valid pixels only)
     + normal_weight * normal loss (1 - cosine or squared L2, valid pixels only)
     + semantic_weight * cross-entropy (unlabelled pixels ignored).
The best model is chosen by ``multitask.select`` (depth/normal errors: lower is better; mIoU: higher).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...data.datasets import dataset_info
from ...data.s2d3ds import CLASSES, IGNORE_INDEX, S2D3DS, s2d3ds_splits
from ...distributed import all_sum
from ...models import create_model
from ..base import Task
from .metrics import DenseMetrics
from .synth import write_dataset

LOSS_PARTS = ("depth", "normal", "semantic")
SELECT = {"depth_rmse": False, "normal_angle": False, "normal_rmse": False, "miou": True}  # higher is better?


def _limit(dataset, limit):
    if limit:
        dataset.samples = dataset.samples[:limit]
    return dataset


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


def format_metrics(stats: dict, title: str) -> str:
    """The metrics of ``evaluate`` as an aligned table."""
    rows = [("depth RMSE (m)", stats["depth_rmse"]), ("depth MAE (m)", stats["depth_mae"]),
            ("normal RMSE", stats["normal_rmse"]), ("normal mean angle (deg)", stats["normal_angle"]),
            *[(f"normals within {k.rpartition('_')[2]} deg", v) for k, v in stats.items()
              if k.startswith("normal_within_")],
            ("segmentation mIoU", stats["miou"]), ("pixel accuracy", stats["pixel_acc"]),
            ("loss", stats["loss"])]
    return "\n".join([title] + [f"  {name:<26}{value:>10.4f}" for name, value in rows])


class MultitaskTask(Task):
    name = "multitask"
    train_fields = LOSS_PARTS
    test_fields = ("depth_rmse", "normal_rmse", "normal_angle", "miou")
    write_synthetic = staticmethod(write_dataset)

    def check(self, cfg: dict) -> None:
        """Enough segmentation classes for 2D-3D-S (loss and selection names are checked by the config schema)."""
        mc = cfg["multitask"]
        if cfg["data"]["val_size"]:
            raise ValueError("the multitask task holds validation out by area, not by a count of scenes (scenes of one "
                             "area are alike): set multitask.val_areas (e.g. [area_6]) and data.val_size=null")
        overlap = sorted(set(mc["val_areas"]) & set(mc["test_areas"]))
        if overlap:
            raise ValueError(f"{overlap} are both validation and test areas: multitask.val_areas and "
                             "multitask.test_areas must not share an area")
        if mc["num_classes"] < len(CLASSES):
            raise ValueError(f"multitask.num_classes must be >= {len(CLASSES)} (the 2D-3D-S classes), got "
                             f"{mc['num_classes']}")

    def selection(self, cfg: dict) -> tuple[str, bool]:
        return cfg["multitask"]["select"], SELECT[cfg["multitask"]["select"]]

    def eval_split(self, cfg: dict) -> str:
        return "val" if cfg["multitask"]["val_areas"] else "test"

    def test_overrides(self) -> list[str]:
        return ["multitask.val_areas=[]"]

    def build_data(self, cfg: dict):
        """(train, evaluation) ``S2D3DS`` data sets from ``data.root``: training on every area that is neither a
        test area (``multitask.test_areas``) nor a validation area (``multitask.val_areas``); evaluation on the
        validation areas when there are any (``test_limit`` does not cut them), else on the test areas."""
        dc, mc = cfg["data"], cfg["multitask"]
        dataset_info(dc["name"], "multitask")  # a clear error for a data set of another task
        if not dc["root"]:
            raise ValueError("data.root is required: a 2D-3D-S folder (area_*/data/...), e.g. one written by "
                             "`modelring make-data multitask data/s2d3ds_synth`")
        val_areas = list(mc["val_areas"])
        train, test = s2d3ds_splits(dc["root"], test_areas=list(mc["test_areas"]), held_areas=val_areas,
                                    size=dc["image_size"], augment=dc["augment"], seed=cfg["train"]["seed"])
        if val_areas:
            return _limit(train, dc["train_limit"]), S2D3DS(dc["root"], val_areas, size=dc["image_size"],
                                                            augment=False, seed=cfg["train"]["seed"])
        return _limit(train, dc["train_limit"]), _limit(test, dc["test_limit"])

    def build_model(self, cfg: dict, train) -> nn.Module:
        """The registry model with ``multitask.num_classes`` segmentation classes."""
        return create_model(cfg["model"]["name"], num_classes=cfg["multitask"]["num_classes"],
                            **cfg["model"]["kwargs"])

    def to_device(self, batch, device, channels_last):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        return batch

    def batch_size(self, batch) -> int:
        return batch["image"].shape[0]

    def training_loss(self, model, batch, cfg):
        pred = {k: v.float() for k, v in model(batch["image"]).items()}
        return multitask_loss(pred, batch, cfg["multitask"])

    @torch.no_grad()
    def evaluate(self, model, loader, cfg, device, d):
        """Test loss and dense metrics (see ``metrics.DenseMetrics``) over a loader, summed over ranks."""
        mc = cfg["multitask"]
        metrics, loss_sum, count = DenseMetrics(mc["num_classes"]), 0.0, 0
        for batch in loader:
            batch = self.to_device(batch, device, cfg["train"]["channels_last"])
            pred = {k: v.float() for k, v in model(batch["image"]).items()}
            loss_sum += multitask_loss(pred, batch, mc)[0].item() * batch["image"].shape[0]
            count += batch["image"].shape[0]
            metrics.update(pred, batch)
        sums = all_sum([loss_sum, count] + metrics.sums(), d)
        return {"loss": sums[0] / max(sums[1], 1), "count": int(sums[1]),
                **metrics.load_sums(sums[2:]).summary()}

    def describe(self, test: dict, cfg: dict) -> str:
        return format_metrics(test, f"multitask test metrics ({test['count']:,} images, "
                                    f"{', '.join(cfg['multitask']['test_areas'])})")

    def epoch_line(self, row: dict) -> str:
        split = "val" if "val_depth_rmse" in row else "test"
        return (f"(depth {row['train_depth']:.3f} normal {row['train_normal']:.3f} seg {row['train_semantic']:.3f}) "
                f"| {split} depth RMSE {row[f'{split}_depth_rmse']:.3f} m, normal {row[f'{split}_normal_angle']:.1f} "
                f"deg, mIoU {row[f'{split}_miou']:.3f}")
