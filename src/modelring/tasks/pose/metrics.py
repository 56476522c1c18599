"""Heatmap decoding and the MPII metrics: PCKh@0.5 (head-normalised) and PCK@0.5 (torso-normalised).

Decoding: the arg-max of each heatmap, moved a quarter pixel toward the higher of its two neighbours along
x and along y (the usual sub-pixel refinement; none on the heatmap's border), then mapped from heatmap to crop
coordinates (pixel-centre convention of ``modelring.data.mpii``) and through the inverse crop affine to image
coordinates.

PCKh@t: a joint is correct when its error is at most t × head size (``head_size`` of the record).
PCK@t: the same with the torso diameter, the distance from the left shoulder (13) to the right hip (2);
persons whose torso joints are not both annotated do not count for PCK.
Only annotated joints (``joints_vis`` = 1) count. The mean follows the usual MPII evaluation (HRNet's
``evaluate``): over all joints but pelvis and thorax, weighted by how many of each are annotated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ...data.mpii import JOINT_NAMES, flip_permutation, from_heatmap_coords, invert_affine, transform_points

PELVIS, THORAX, L_SHOULDER, R_HIP = 6, 7, 13, 2
MEAN_EXCLUDES = (PELVIS, THORAX)


def decode_heatmaps(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel peak of each heatmap.

    Args:
        heatmaps: (B, J, H, W).

    Returns:
        coords (B, J, 2) as (x, y) in heatmap pixels, and the peak values (B, J).
    """
    b, j, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, j, -1)
    peak, index = flat.max(-1)
    x, y = (index % w).long(), torch.div(index, w, rounding_mode="floor").long()
    padded = torch.nn.functional.pad(heatmaps, (1, 1, 1, 1), mode="replicate").reshape(b, j, -1)

    def at(dx: int, dy: int) -> torch.Tensor:
        return padded.gather(-1, ((y + 1 + dy) * (w + 2) + (x + 1 + dx))[..., None])[..., 0]

    # no shift on the border, where one neighbour is missing
    shift_x = 0.25 * torch.sign(at(1, 0) - at(-1, 0)) * ((x > 0) & (x < w - 1))
    shift_y = 0.25 * torch.sign(at(0, 1) - at(0, -1)) * ((y > 0) & (y < h - 1))
    coords = torch.stack([x + shift_x, y + shift_y], -1).float()
    return coords, peak


def flip_back(heatmaps: torch.Tensor) -> torch.Tensor:
    """Heatmaps of a mirrored crop -> heatmaps of the original crop (mirror x, swap left/right joints)."""
    return heatmaps.flip(-1)[:, flip_permutation()]


def image_coordinates(coords: torch.Tensor, matrices: torch.Tensor, *, stride: float) -> np.ndarray:
    """Heatmap coordinates (B, J, 2) -> image coordinates through each sample's inverse crop matrix."""
    crop = from_heatmap_coords(coords.double().cpu().numpy(), stride)
    return np.stack([transform_points(c, invert_affine(m)) for c, m in zip(crop, matrices.cpu().numpy())])


def correct_within(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(B, J) booleans: error <= threshold × norm (norm per person, (B,))."""
    error = np.linalg.norm(np.asarray(pred) - np.asarray(gt), axis=-1)
    return error <= threshold * np.asarray(norm, dtype=np.float64)[:, None]


def torso_size(joints: np.ndarray) -> np.ndarray:
    """(B,) distance between left shoulder and right hip."""
    return np.linalg.norm(joints[:, L_SHOULDER] - joints[:, R_HIP], axis=-1)


@dataclass
class PoseMeter:
    """Per-joint hit and annotated counts for PCKh@0.5 and PCK@0.5, accumulated over batches."""

    threshold: float = 0.5
    pckh_hits: np.ndarray = field(default_factory=lambda: np.zeros(len(JOINT_NAMES)))
    pckh_count: np.ndarray = field(default_factory=lambda: np.zeros(len(JOINT_NAMES)))
    pck_hits: np.ndarray = field(default_factory=lambda: np.zeros(len(JOINT_NAMES)))
    pck_count: np.ndarray = field(default_factory=lambda: np.zeros(len(JOINT_NAMES)))
    no_head: float = 0.0  # persons left out of PCKh: no head size (not in the file, head joints not annotated)

    def update(self, pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, head_size: np.ndarray) -> None:
        """Add a batch: predictions and ground truth (B, J, 2) in image pixels, flags (B, J), head sizes (B,)."""
        visible = np.asarray(visible) > 0
        head_size = np.asarray(head_size, dtype=np.float64)
        has_head = np.isfinite(head_size) & (head_size > 0)
        self.no_head += float((~has_head).sum())
        head_visible = visible & has_head[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            self.pckh_hits += (correct_within(pred, gt, head_size, self.threshold) & head_visible).sum(0)
        self.pckh_count += head_visible.sum(0)
        torso_known = visible[:, L_SHOULDER] & visible[:, R_HIP]
        torso_visible = visible & torso_known[:, None]
        self.pck_hits += (correct_within(pred, gt, torso_size(gt), self.threshold) & torso_visible).sum(0)
        self.pck_count += torso_visible.sum(0)

    def state(self) -> list[float]:
        """The counts as one flat list (to sum over ranks)."""
        return np.concatenate([self.pckh_hits, self.pckh_count, self.pck_hits, self.pck_count,
                               [self.no_head]]).tolist()

    def load(self, values: list[float]) -> None:
        """Counts from ``state()`` (e.g. after summing over ranks)."""
        values = np.asarray(values)
        self.pckh_hits, self.pckh_count, self.pck_hits, self.pck_count = np.split(values[:-1], 4)
        self.no_head = float(values[-1])

    def per_joint(self, which: str = "pckh") -> np.ndarray:
        """Accuracy per joint (NaN where no joint is annotated)."""
        hits, count = (self.pckh_hits, self.pckh_count) if which == "pckh" else (self.pck_hits, self.pck_count)
        with np.errstate(invalid="ignore", divide="ignore"):
            return hits / count

    def mean(self, which: str = "pckh") -> float:
        """Annotated-count-weighted mean over all joints but pelvis and thorax (MPII convention)."""
        hits, count = (self.pckh_hits, self.pckh_count) if which == "pckh" else (self.pck_hits, self.pck_count)
        keep = [j for j in range(len(JOINT_NAMES)) if j not in MEAN_EXCLUDES]
        return float(hits[keep].sum() / max(count[keep].sum(), 1))


def joint_table(meter: PoseMeter) -> str:
    """Printable table: PCKh@t and PCK@t (percent) and the annotated count of every joint, then the means."""
    pckh, pck = meter.per_joint("pckh"), meter.per_joint("pck")
    t = meter.threshold
    lines = [f"{'joint':<12} {f'PCKh@{t}':>9} {f'PCK@{t}':>9} {'annotated':>10}"]
    for j, name in enumerate(JOINT_NAMES):
        lines.append(f"{name:<12} {100 * pckh[j]:9.2f} {100 * pck[j]:9.2f} {int(meter.pckh_count[j]):10d}")
    lines.append(f"{'mean':<12} {100 * meter.mean('pckh'):9.2f} {100 * meter.mean('pck'):9.2f} "
                 f"{int(meter.pckh_count.sum()):10d}")
    if meter.no_head:
        lines.append(f"({int(meter.no_head)} persons without a head size, left out of PCKh: no head_size in the file "
                     "and head top / upper neck not annotated)")
    lines.append("(mean: all joints but pelvis and thorax, weighted by annotated count; PCKh normalised by head "
                 "size, PCK by torso = |l_shoulder - r_hip|)")
    return "\n".join(lines)
