"""Dense-prediction metrics accumulated as sums over every valid pixel of a data set (never means of means).

- depth RMSE (metres) and MAE over pixels with valid ground-truth depth;
- normal RMSE: sqrt(mean over valid pixels of ||n_pred - n_true||^2) with both vectors unit length, and the
  mean angular error in degrees, plus the fraction of pixels within 11.25, 22.5 and 30 degrees;
- segmentation mIoU from a confusion matrix: IoU_c = TP / (TP + FP + FN) over labelled pixels, averaged over
  the classes present in the prediction or the target (a class absent from both is excluded), and pixel accuracy.
"""
from __future__ import annotations

import math

import torch

ANGLE_THRESHOLDS = (11.25, 22.5, 30.0)


class DenseMetrics:
    """Running sums for depth, normal and segmentation metrics; ``update`` per batch, ``summary`` at the end.

    Args:
        num_classes: segmentation classes (labels outside [0, num_classes) are ignored).
    """

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.depth_sq = self.depth_abs = self.depth_count = 0.0
        self.normal_sq = self.angle_sum = self.normal_count = 0.0
        self.within = [0.0] * len(ANGLE_THRESHOLDS)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> None:
        """Add one batch: ``pred`` as the model returns it, ``batch`` as the data set yields it."""
        self.update_depth(pred["depth"], batch["depth"], batch["depth_valid"])
        self.update_normal(pred["normal"], batch["normal"], batch["normal_valid"])
        self.update_semantic(pred["semantic"].argmax(1), batch["semantic"])

    def update_depth(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> None:
        """pred/target (B, 1, H, W) metres, valid (B, H, W) bool."""
        err = (pred.detach().float() - target.float())[:, 0][valid]
        self.depth_sq += float((err * err).sum())
        self.depth_abs += float(err.abs().sum())
        self.depth_count += float(valid.sum())

    def update_normal(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> None:
        """pred/target (B, 3, H, W) unit vectors (pred is renormalised here), valid (B, H, W) bool."""
        p = torch.nn.functional.normalize(pred.detach().float(), dim=1).permute(0, 2, 3, 1)[valid]
        t = target.float().permute(0, 2, 3, 1)[valid]
        self.normal_sq += float(((p - t) ** 2).sum())
        angles = torch.rad2deg(torch.acos((p * t).sum(-1).clamp(-1.0, 1.0)))
        self.angle_sum += float(angles.sum())
        self.within = [w + float((angles < a).sum()) for w, a in zip(self.within, ANGLE_THRESHOLDS)]
        self.normal_count += float(valid.sum())

    def update_semantic(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred/target (B, H, W) class ids; target pixels outside [0, num_classes) are ignored."""
        keep = (target >= 0) & (target < self.num_classes)
        index = target[keep] * self.num_classes + pred[keep].clamp(0, self.num_classes - 1)
        self.confusion += torch.bincount(index.flatten(), minlength=self.num_classes ** 2).view(
            self.num_classes, self.num_classes).cpu()

    def sums(self) -> list[float]:
        """Every running sum as one flat list (for summing over ranks); ``from_sums`` is the inverse."""
        return [self.depth_sq, self.depth_abs, self.depth_count, self.normal_sq, self.angle_sum,
                self.normal_count, *self.within, *self.confusion.flatten().tolist()]

    def load_sums(self, values: list[float]) -> "DenseMetrics":
        """Replace the running sums by ``values`` (as ``sums`` lists them); returns self."""
        (self.depth_sq, self.depth_abs, self.depth_count, self.normal_sq, self.angle_sum,
         self.normal_count) = values[:6]
        k = 6 + len(ANGLE_THRESHOLDS)
        self.within = list(values[6:k])
        self.confusion = torch.tensor([round(v) for v in values[k:]], dtype=torch.int64).view(
            self.num_classes, self.num_classes)
        return self

    def summary(self) -> dict[str, float]:
        """depth_rmse, depth_mae (m); normal_rmse, normal_angle (deg), normal_within_* ; miou, pixel_acc."""
        nan = float("nan")
        d, n = self.depth_count, self.normal_count
        out = {"depth_rmse": math.sqrt(self.depth_sq / d) if d else nan,
               "depth_mae": self.depth_abs / d if d else nan,
               "normal_rmse": math.sqrt(self.normal_sq / n) if n else nan,
               "normal_angle": self.angle_sum / n if n else nan}
        out.update({f"normal_within_{a:g}": w / n if n else nan for a, w in zip(ANGLE_THRESHOLDS, self.within)})
        out.update(segmentation_scores(self.confusion))
        return out


def segmentation_scores(confusion: torch.Tensor) -> dict[str, float]:
    """mIoU over classes present in prediction or target, and pixel accuracy, from a (true, pred) confusion."""
    confusion = confusion.double()
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    total = confusion.sum()
    return {"miou": float((tp[present] / union[present]).mean()) if present.any() else float("nan"),
            "pixel_acc": float(tp.sum() / total) if total else float("nan")}
