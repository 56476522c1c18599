"""Shared ResNet building blocks and the generic ResNet trunk.

Implements the residual blocks of He et al. 2016, "Deep Residual Learning for
Image Recognition" (arXiv 1512.03385): the two-conv ``BasicBlock`` and the
``Bottleneck`` block (stride on the 3x3 conv, i.e. torchvision's "v1.5"), the
two shortcut options of §3.3 (A: parameter-free subsample + zero-pad,
B: 1x1 conv + BN projection) and one ``ResNet`` trunk that every ResNet family
in :mod:`modelring.models` is built from.

Module and parameter names follow torchvision (``conv1``, ``bn1``, ``relu``,
``maxpool``, ``layer1``.., ``downsample``, ``fc``) so that torchvision
state_dicts load into the ImageNet models.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Norm = Callable[[int], nn.Module]  # channels -> normalisation layer (BatchNorm2d, or one without affine parameters)

__all__ = [
    "BasicBlock",
    "Block",
    "Bottleneck",
    "PadShortcut",
    "ResNet",
    "conv1x1",
    "conv3x3",
    "make_shortcut",
    "make_stage",
]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding 1 and no bias."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class PadShortcut(nn.Module):
    """Option-A shortcut: parameter-free stride subsampling plus zero channel padding.

    Args:
        in_planes: Channels of the input.
        out_planes: Channels of the output (``>= in_planes``); the extra channels
            are zeros, split evenly before and after the input channels.
        stride: Spatial subsampling factor.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"PadShortcut cannot reduce channels ({in_planes} -> {out_planes})")
        self.in_planes = in_planes
        self.out_planes = out_planes
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_planes - self.in_planes
        front = extra // 2
        return F.pad(x, (0, 0, 0, 0, front, extra - front))

    def extra_repr(self) -> str:
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"


def _projection(in_planes: int, out_planes: int, stride: int, norm: Norm = nn.BatchNorm2d) -> nn.Sequential:
    """Option-B shortcut: 1x1 conv + BN (torchvision's ``downsample``)."""
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), norm(out_planes))


_SHORTCUTS = ("A", "B")


def make_shortcut(kind: str, in_planes: int, out_planes: int, stride: int, norm: Norm = nn.BatchNorm2d) -> nn.Module:
    """Build a shortcut of ``kind`` ``"A"`` (zero-pad) or ``"B"`` (projection).

    Args:
        kind: ``"A"`` or ``"B"`` (He et al. 2016, §3.3).
        in_planes: Input channels.
        out_planes: Output channels.
        stride: Spatial stride.
        norm: the normalisation layer of a projection shortcut (``BatchNorm2d`` by default).

    Returns:
        The shortcut module.
    """
    if kind not in _SHORTCUTS:
        raise ValueError(f"unknown shortcut kind {kind!r}; expected one of {sorted(_SHORTCUTS)}")
    if kind == "A":
        return PadShortcut(in_planes, out_planes, stride)
    return _projection(in_planes, out_planes, stride, norm)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (expansion 1)."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
        norm: Norm = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm(planes)
        self.downsample = downsample
        self.stride = stride

    def zero_init_last(self) -> None:
        """Zero the last BN's scale so the block starts as the identity (nothing to zero without affine BN)."""
        if self.bn2.weight is not None:
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand, with a residual connection (expansion 4)."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
        norm: Norm = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = norm(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def zero_init_last(self) -> None:
        """Zero the last BN's scale so the block starts as the identity (nothing to zero without affine BN)."""
        if self.bn3.weight is not None:
            nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


def make_stage(
    block: Block, inplanes: int, planes: int, num_blocks: int, stride: int, shortcut: str,
    norm: Norm = nn.BatchNorm2d,
) -> nn.Sequential:
    """Stack ``num_blocks`` blocks; only the first may change stride or width.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        inplanes: Channels entering the stage.
        planes: Block width (output channels are ``planes * block.expansion``).
        num_blocks: Number of blocks.
        stride: Stride of the first block.
        shortcut: Shortcut kind used where the shape changes (see :func:`make_shortcut`).
        norm: the normalisation layer factory (channels -> module).

    Returns:
        The stage as an ``nn.Sequential`` (children named ``0``, ``1``, ..).
    """
    outplanes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != outplanes:
        downsample = make_shortcut(shortcut, inplanes, outplanes, stride, norm)
    layers = [block(inplanes, planes, stride, downsample, norm)]
    layers += [block(outplanes, planes, norm=norm) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """Generic ResNet trunk: stem, stages ``layer1``.., global average pool, ``fc``.

    Follows the model contract shared by all :mod:`modelring.models` models:
    ``num_classes``, ``num_features``, ``forward_features``, ``forward_head``,
    ``reset_classifier`` and ``stage_names``.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: Number of blocks per stage.
        widths: Block width (``planes``) per stage; stage ``i > 0`` has stride 2.
        num_classes: Classifier outputs; ``0`` gives an ``nn.Identity`` head.
        in_chans: Input image channels.
        stem_width: Output channels of the stem conv.
        stem_kernel_size: Stem conv kernel size (padding is ``k // 2``).
        stem_stride: Stem conv stride.
        stem_pool: Whether the stem ends with a 3x3 stride-2 max pool.
        shortcut: ``"A"`` (zero-pad) or ``"B"`` (projection) shortcuts.
        zero_init_residual: Zero the last BN scale of each block.
        norm_affine: BatchNorm with a trainable scale and shift (default). ``False`` leaves every BatchNorm
            without parameters (its running statistics stay), so that with the stem, the classifier and its bias
            generated too a converted model's DoF are exactly its ring entries.
    """

    def __init__(
        self,
        *,
        block: Block,
        layers: list[int],
        widths: list[int],
        num_classes: int,
        in_chans: int = 3,
        stem_width: int = 64,
        stem_kernel_size: int = 7,
        stem_stride: int = 2,
        stem_pool: bool = True,
        shortcut: str = "B",
        zero_init_residual: bool = False,
        norm_affine: bool = True,
    ) -> None:
        super().__init__()
        norm = nn.BatchNorm2d if norm_affine else functools.partial(nn.BatchNorm2d, affine=False)
        if len(layers) != len(widths):
            raise ValueError(f"layers {layers} and widths {widths} differ in length")
        self.conv1 = nn.Conv2d(
            in_chans, stem_width, stem_kernel_size, stride=stem_stride,
            padding=stem_kernel_size // 2, bias=False,
        )
        self.bn1 = norm(stem_width)
        self.relu = nn.ReLU(inplace=True)
        pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem_pool else nn.Identity()
        self.maxpool = pool
        inplanes = stem_width
        for i, (depth, width) in enumerate(zip(layers, widths)):
            stage = make_stage(block, inplanes, width, depth, 1 if i == 0 else 2, shortcut, norm)
            self.add_module(f"layer{i + 1}", stage)
            inplanes = width * block.expansion
        self.num_stages = len(layers)
        self.num_features = inplanes
        self.num_classes = num_classes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = self._make_classifier(num_classes)
        self._init_weights(zero_init_residual)

    def _make_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _init_weights(self, zero_init_residual: bool) -> None:
        """torchvision init: Kaiming-normal (fan_out, relu) convs, BN weight 1 / bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    m.zero_init_last()

    def stage_names(self) -> list[str]:
        """Return the module-name prefixes of the stages, e.g. ``["layer1", "layer2"]``."""
        return [f"layer{i + 1}" for i in range(self.num_stages)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and stages; returns the feature map before global pooling."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names():
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, flatten and classify (or return pooled features)."""
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` with a fresh ``num_classes``-way head (``0``: identity).

        Also updates ``modelring_model_spec`` (if set by ``create_model``) so the
        recorded spec still rebuilds a model that matches this one's state_dict.
        """
        self.num_classes = num_classes
        self.fc = self._make_classifier(num_classes)
        spec = getattr(self, "modelring_model_spec", None)
        if isinstance(spec, dict) and isinstance(spec.get("kwargs"), dict):
            spec["kwargs"]["num_classes"] = num_classes
