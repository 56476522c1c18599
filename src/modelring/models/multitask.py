"""Multi-task dense regression network: one shared encoder, one decoder per task (depth, surface normals,
semantic segmentation), as in the dense-regression experiment of RPG (Wang et al., arXiv 2107.07110).

Layout (every conv 3x3 with BatchNorm + ReLU; ``width`` channels everywhere so that blocks can be reused)::

    encoder.stem                  conv in_chans -> width, full resolution
    encoder.down.{0..levels-1}    stride-2 conv + conv       (H/2, H/4, ..., H/2^levels)
    decoders.<task>.up            `levels` upsampling blocks: x2 nearest upsample, add the encoder skip, conv + conv
    heads.<task>                  1x1 conv to the task's channels (depth 1, normal 3, semantic num_classes)

With ``share_decoder=True`` one decoder body (``decoder``) serves all three tasks, applied once per task, with a
new set of BatchNorms per task when ``new_norm`` (only the 1x1 heads stay per task).

Sub-network reuse: with ``reuse=True`` each decoder holds ONE upsampling block applied ``levels`` times
(``modelring.reuse.Reused``), with ``new_norm=True`` each application gets its own BatchNorm. With
``reuse=False`` a decoder holds ``levels`` separate blocks. Under RPG a reused block is generated once per
forward, so reuse halves-to-thirds the virtual weights at the same ring size.

``forward`` returns ``{"depth": (B,1,H,W) metres, "normal": (B,3,H,W) unit vectors, "semantic": (B,C,H,W)
logits}``. ``stage_names()`` lists ``encoder`` and each ``decoders.<task>`` (local rings, ``ring.rings:
per_stage``); the stem and the 1x1 heads are usually kept free (``ring.exclude: [encoder.stem.*, heads.*]``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..reuse import Reused
from .registry import register_model

TASK_CHANNELS = {"depth": 1, "normal": 3}
TASKS = ("depth", "normal", "semantic")


def conv_bn_relu(cin: int, cout: int, *, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias) + BatchNorm + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class UpBlock(nn.Module):
    """x2 nearest upsample, add the skip feature map, then two conv-BN-ReLU."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1, self.conv2 = conv_bn_relu(width, width), conv_bn_relu(width, width)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest") + skip
        return self.conv2(self.conv1(x))


class Encoder(nn.Module):
    """Stem at full resolution, then ``levels`` stride-2 stages; returns every resolution's feature map."""

    def __init__(self, in_chans: int, width: int, levels: int):
        super().__init__()
        self.stem = conv_bn_relu(in_chans, width)
        self.down = nn.ModuleList(nn.Sequential(conv_bn_relu(width, width, stride=2), conv_bn_relu(width, width))
                                  for _ in range(levels))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.stem(x)]
        for stage in self.down:
            features.append(stage(features[-1]))
        return features  # full resolution first, coarsest last


class Decoder(nn.Module):
    """``levels`` upsampling blocks from the coarsest feature map back to full resolution.

    Args:
        width: channels.
        levels: number of upsampling steps.
        reuse: one block applied ``levels`` times (shared conv weights) instead of ``levels`` blocks.
        new_norm: with ``reuse``, a new BatchNorm per application.
    """

    def __init__(self, width: int, levels: int, *, reuse: bool, new_norm: bool):
        super().__init__()
        self.reuse, self.levels = reuse, levels
        self.up = Reused(UpBlock(width), levels, new_norm=new_norm) if reuse else \
            nn.ModuleList(UpBlock(width) for _ in range(levels))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for step in range(self.levels):
            skip = features[-2 - step]
            x = self.up(x, skip, step=step) if self.reuse else self.up[step](x, skip)
        return x


class MultiTaskNet(nn.Module):
    """Shared encoder + per-task decoders and 1x1 heads (see the module docstring).

    Args:
        num_classes: semantic classes (the auxiliary task).
        in_chans: input channels.
        width: channels of every conv.
        levels: downsampling steps (input side must be divisible by 2**levels).
        reuse: decoders reuse one upsampling block (sub-network reuse).
        new_norm: each reuse (of a block, and of the shared decoder) gets its own BatchNorm.
        share_decoder: one decoder body for all tasks (reused per task) instead of one per task.
    """

    def __init__(self, *, num_classes: int = 13, in_chans: int = 3, width: int = 16, levels: int = 3,
                 reuse: bool = False, new_norm: bool = True, share_decoder: bool = False):
        super().__init__()
        if num_classes < 1 or width < 1 or levels < 1:
            raise ValueError(f"num_classes, width and levels must be >= 1, got {num_classes}, {width}, {levels}")
        self.num_classes, self.levels, self.share_decoder = num_classes, levels, share_decoder
        self.encoder = Encoder(in_chans, width, levels)
        block_norms = new_norm and reuse  # without reuse every block already has its own norms
        if share_decoder:
            self.decoder = Reused(Decoder(width, levels, reuse=reuse, new_norm=block_norms), len(TASKS),
                                  new_norm=new_norm)
        else:
            self.decoders = nn.ModuleDict({t: Decoder(width, levels, reuse=reuse, new_norm=block_norms)
                                           for t in TASKS})
        channels = {**TASK_CHANNELS, "semantic": num_classes}
        self.heads = nn.ModuleDict({t: nn.Conv2d(width, channels[t], 1) for t in TASKS})
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stage_names(self) -> list[str]:
        """Module-name prefixes of the stages: the encoder and each task's decoder (one local ring each)."""
        return ["encoder"] + (["decoder"] if self.share_decoder else [f"decoders.{t}" for t in TASKS])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        side = 2 ** self.levels
        if x.shape[-1] % side or x.shape[-2] % side:
            raise ValueError(f"input height and width must be multiples of {side} (levels={self.levels}), got "
                             f"{tuple(x.shape[-2:])}; resize the input (data.image_size)")
        features = self.encoder(x)
        out = {t: self.heads[t](self.decoder(features, step=i) if self.share_decoder else self.decoders[t](features))
               for i, t in enumerate(TASKS)}
        out["normal"] = F.normalize(out["normal"], dim=1, eps=1e-6)
        return out


@register_model(task="multitask", input_size=(3, 48, 48))
def multitask_net(*, num_classes: int = 13, in_chans: int = 3, width: int = 16, levels: int = 3,
                  reuse: bool = False, new_norm: bool = True, share_decoder: bool = False) -> MultiTaskNet:
    """Multi-task dense regression network (depth, normals, segmentation); see :class:`MultiTaskNet`."""
    return MultiTaskNet(num_classes=num_classes, in_chans=in_chans, width=width, levels=levels, reuse=reuse,
                        new_norm=new_norm, share_decoder=share_decoder)
