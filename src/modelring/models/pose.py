"""Multi-stage heatmap networks for pose estimation, in the style of Convolutional Pose Machines
(Wei et al. 2016, arXiv 1602.00134), with the sub-network reuse of RPG (arXiv 2107.07110, §4.2).

A small backbone maps the image to features at 1/4 resolution; stage 1 predicts one heatmap per joint from
the features; each refinement stage 2..S takes the features concatenated with the previous heatmaps and
predicts new ones. Every stage's heatmaps are returned (intermediate supervision).

``reuse=False``: every refinement stage is its own module. ``reuse=True``: one refinement module is applied
S-1 times (CPM-style sharing) through ``modelring.reuse.Reused``; ``new_norm`` gives each application its
own BatchNorm. RPG variants are these models converted with a ring (``modelring.convert``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..reuse import Reused
from .registry import register_model

__all__ = ["PoseMachine", "pose_cpm"]


def conv_bn_relu(in_chans: int, out_chans: int, *, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU, 'same' padding."""
    return nn.Sequential(nn.Conv2d(in_chans, out_chans, kernel_size, stride, kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_chans), nn.ReLU(inplace=True))


class Backbone(nn.Module):
    """Image -> features at 1/``stride`` resolution: stride-2 stem, then three conv-BN-ReLU (the second strided
    when ``stride`` is 4)."""

    def __init__(self, in_chans: int, width: int, stride: int = 4):
        super().__init__()
        if stride not in (2, 4):
            raise ValueError(f"stride must be 2 or 4 (the heatmaps' resolution: input / stride), got {stride!r}")
        self.stem = nn.Conv2d(in_chans, width, 3, 2, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        self.body = nn.Sequential(conv_bn_relu(width, width), conv_bn_relu(width, width, stride=stride // 2),
                                  conv_bn_relu(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(torch.relu(self.stem_bn(self.stem(x))))


class Stage(nn.Module):
    """``depth`` conv-BN-ReLU layers then a 1×1 conv to one heatmap per joint."""

    def __init__(self, in_chans: int, width: int, num_joints: int, *, depth: int, kernel_size: int):
        super().__init__()
        self.layers = nn.Sequential(*[conv_bn_relu(in_chans if i == 0 else width, width, kernel_size=kernel_size)
                                      for i in range(depth)])
        self.out = nn.Conv2d(width, num_joints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.layers(x))


class PoseMachine(nn.Module):
    """Backbone + stage 1 + S-1 refinement stages; ``forward`` returns (B, S, J, H/stride, W/stride) heatmaps.

    Args:
        num_joints: heatmaps per stage.
        stages: S >= 1.
        width: channels of the backbone and of every stage.
        reuse: one refinement module applied S-1 times instead of S-1 modules.
        new_norm: with ``reuse``, each application gets its own BatchNorm layers.
        in_chans: image channels.
        stage_depth: conv-BN-ReLU layers per stage.
        kernel_size: kernel of the stage convs.
        stride: 4 or 2, the heatmaps' resolution as a fraction of the input's (2: four times the compute).
    """

    def __init__(self, *, num_joints: int = 16, stages: int = 4, width: int = 32, reuse: bool = False,
                 new_norm: bool = True, in_chans: int = 3, stage_depth: int = 3, kernel_size: int = 3,
                 stride: int = 4):
        super().__init__()
        if not isinstance(stages, int) or stages < 1:
            raise ValueError(f"stages must be an int >= 1, got {stages!r}")
        self.num_joints, self.stages, self.num_features = num_joints, stages, width
        self.reuse, self.new_norm = reuse, new_norm
        self.backbone = Backbone(in_chans, width, stride)
        self.stage1 = Stage(width, width, num_joints, depth=stage_depth, kernel_size=kernel_size)

        def refinement() -> Stage:
            return Stage(width + num_joints, width, num_joints, depth=stage_depth, kernel_size=kernel_size)
        if stages == 1:
            self.refine = nn.ModuleList()
        elif reuse:
            self.refine = Reused(refinement(), stages - 1, new_norm=new_norm)
        else:
            self.refine = nn.ModuleList(refinement() for _ in range(stages - 1))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, width, H/stride, W/stride)."""
        return self.backbone(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """All stages' heatmaps (B, S, J, h, w) from backbone features."""
        heatmaps = [self.stage1(features)]
        for k in range(self.stages - 1):
            x = torch.cat([features, heatmaps[-1]], 1)
            heatmaps.append(self.refine(x, step=k) if self.reuse else self.refine[k](x))
        return torch.stack(heatmaps, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def stage_names(self) -> list[str]:
        """Top-level parts, e.g. for one ring per part (``ring.rings=per_stage``)."""
        return ["backbone", "stage1"] + (["refine"] if self.stages > 1 else [])


@register_model(task="pose", input_size=(3, 64, 64))
def pose_cpm(*, num_joints: int = 16, stages: int = 4, width: int = 32, reuse: bool = False,
             new_norm: bool = True, in_chans: int = 3, stage_depth: int = 3, kernel_size: int = 3,
             stride: int = 4) -> PoseMachine:
    """CPM-style multi-stage heatmap network (see :class:`PoseMachine` for the arguments).

    Returns:
        The model; ``model(images)`` gives (B, stages, num_joints, H/stride, W/stride) heatmaps.
    """
    return PoseMachine(num_joints=num_joints, stages=stages, width=width, reuse=reuse, new_norm=new_norm,
                       in_chans=in_chans, stage_depth=stage_depth, kernel_size=kernel_size, stride=stride)
