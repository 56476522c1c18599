"""Pose estimation (``task.name: pose``): MPII-layout data, multi-stage heatmap network, PCKh@0.5.

The ``pose`` config section holds what is specific to the task. ``pose.reuse`` picks the architecture: every
stage its own module (false) or one refinement module applied S-1 times (true; ``pose.new_norm`` gives each
application its own BatchNorm); ``method`` (``rpg``, ``dense``, pruning, ...) applies to it as to any task, so the
paper's four variants are independent = dense, reuse = dense + reuse, rpg, reuse + rpg.

Loss: intermediate supervision, the sum over stages of the target-weighted heatmap MSE (x 0.5, as HRNet's
JointsMSELoss). Metric: PCKh@0.5 of the last stage's heatmaps (``modelring.tasks.pose.metrics``), optionally
averaged with the mirrored crop's heatmaps (``pose.flip_test``); the best model is the one of highest PCKh.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...data.datasets import dataset_info
from ...data.mpii import JOINT_NAMES, NUM_JOINTS, MPIIDataset
from ...distributed import all_sum
from ...models import create_model
from ...models.registry import accepts
from ..base import Task, held_out, to_device
from .metrics import PoseMeter, decode_heatmaps, flip_back, image_coordinates, joint_table
from .synth import write_dataset


def build_pose_data(cfg: dict) -> tuple[MPIIDataset, MPIIDataset]:
    """Training split (augmented as ``data.augment`` and the pose section say) and the evaluation split: the
    ``valid`` annotations (the test split: ``test_limit`` applies), or with ``data.val_size`` that many persons of
    the ``train`` annotations held out of training (``held_out``: the same persons for every seed and method; not
    augmented), before ``train_limit``."""
    dc, pc = cfg["data"], cfg["pose"]
    dataset_info(dc["name"], "pose")  # a clear error for a data set of another task
    if not dc["root"]:
        raise ValueError("data.root is required for pose: the folder with annot/ and images/ "
                         "(`modelring make-data pose ROOT` writes one)")
    common = {"input_size": pc["input_size"], "heatmap_size": pc["heatmap_size"], "sigma": pc["sigma"],
              "box_margin": pc["box_margin"], "seed": cfg["train"]["seed"]}
    train = MPIIDataset(dc["root"], "train", augment=dc["augment"], rotation=pc["rotation"],
                        scale_factor=pc["scale_factor"], flip=pc["flip"], **common)
    if dc["val_size"]:
        test = MPIIDataset(dc["root"], "train", **common)
        rest, held = held_out(len(train.records), dc["val_size"], what="training persons")
        train.records, test.records = [train.records[i] for i in rest], [test.records[i] for i in held]
    else:
        test = MPIIDataset(dc["root"], "valid", **common)
        test.records = test.records[:dc["test_limit"]] if dc["test_limit"] else test.records
    train.records = train.records[:dc["train_limit"]] if dc["train_limit"] else train.records
    return train, test


def pose_loss(heatmaps: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sum over stages of 0.5 x mean squared error, each joint's heatmaps scaled by its weight.

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


class PoseTask(Task):
    name = "pose"
    test_fields = ("pckh", "pck")
    optimizer_key = "pose.optimizer"
    write_synthetic = staticmethod(write_dataset)

    def selection(self, cfg: dict) -> tuple[str, bool]:
        return "pckh", True

    def eval_split(self, cfg: dict) -> str:
        return "val" if cfg["data"]["val_size"] else "test"

    def build_data(self, cfg: dict):
        return build_pose_data(cfg)

    def build_model(self, cfg: dict, train) -> nn.Module:
        """The registry model (``model.name``, recipe default ``pose_cpm``) with ``pose.reuse``; a builder that
        takes ``stride`` gets pose.input_size / pose.heatmap_size. Its heatmaps must have pose.heatmap_size (a
        clear error before training otherwise)."""
        pc, name = cfg["pose"], cfg["model"]["name"]
        kwargs = {"num_joints": NUM_JOINTS, "stages": pc["stages"], "reuse": pc["reuse"],
                  "new_norm": pc["new_norm"], **cfg["model"]["kwargs"]}
        if accepts(name, "stride") and "stride" not in kwargs and pc["input_size"] % pc["heatmap_size"] == 0:
            kwargs["stride"] = pc["input_size"] // pc["heatmap_size"]
        model = create_model(name, **kwargs)
        with torch.no_grad():
            was = model.training
            side = model.eval()(torch.zeros(1, kwargs.get("in_chans", 3), pc["input_size"], pc["input_size"])).shape[-1]
            model.train(was)
        if side != pc["heatmap_size"]:
            raise ValueError(f"{name} makes {side}x{side} heatmaps from a {pc['input_size']}px input, but "
                             f"pose.heatmap_size={pc['heatmap_size']}: set pose.heatmap_size={side}"
                             + (" or model.kwargs.stride (2 or 4)" if accepts(name, "stride") else ""))
        return model

    def to_device(self, batch, device, channels_last):
        images, target, weight, meta = batch
        return to_device(images, device, channels_last), target.to(device), weight.to(device), meta

    def batch_size(self, batch) -> int:
        return len(batch[0])

    def training_loss(self, model, batch, cfg):
        images, target, weight, _ = batch
        return pose_loss(model(images).float(), target, weight), {}

    @torch.no_grad()
    def evaluate(self, model, loader, cfg, device, d):
        """Mean loss, PCKh and PCK (annotated-count-weighted means and per joint), summed over ranks."""
        meter, loss_sum, count = PoseMeter(threshold=cfg["pose"]["threshold"]), 0.0, 0
        stride = cfg["pose"]["input_size"] / cfg["pose"]["heatmap_size"]
        for batch in loader:
            images, target, weight, meta = self.to_device(batch, device, cfg["train"]["channels_last"])
            heatmaps, final = predict(model, images, flip_test=cfg["pose"]["flip_test"])
            loss_sum += pose_loss(heatmaps.float(), target, weight).item() * len(images)
            count += len(images)
            coords, _ = decode_heatmaps(final.float().cpu())
            pred = image_coordinates(coords, meta["matrix"], stride=stride)
            meter.update(pred, meta["joints"].numpy(), meta["joints_vis"].numpy(), meta["head_size"].numpy())
        totals = all_sum([loss_sum, count] + meter.state(), d)
        meter.load(totals[2:])
        per_joint = {n: None if math.isnan(v) else float(v) for n, v in zip(JOINT_NAMES, meter.per_joint("pckh"))}
        return {"loss": totals[0] / max(totals[1], 1), "count": int(totals[1]), "pckh": meter.mean("pckh"),
                "pck": meter.mean("pck"), "pckh_per_joint": per_joint, "_meter": meter}

    def describe(self, test: dict, cfg: dict) -> str:
        flip = " (flip test)" if cfg["pose"]["flip_test"] else ""
        return f"{test['count']:,} persons, test loss {test['loss']:.5f}{flip}\n{joint_table(test['_meter'])}"

    def epoch_line(self, row: dict) -> str:
        split = "val" if "val_pckh" in row else "test"
        return (f"{split} loss {row[f'{split}_loss']:.5f} PCKh {row[f'{split}_pckh']:.4f} "
                f"PCK {row[f'{split}_pck']:.4f}")
