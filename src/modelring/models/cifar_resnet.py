"""CIFAR ResNets.

* ``resnet8/14/20/32/44/56/110`` (any width via ``width=``): the CIFAR-10 networks of He et al. 2016, "Deep
  Residual Learning for Image Recognition" (arXiv 1512.03385), §4.2: a 3x3
  16-channel stem, three stages of ``n`` BasicBlocks with 16/32/64 channels
  (depth ``6n + 2``) and parameter-free option-A shortcuts (stride-2 subsample
  + zero-padded channels). resnet20 with 10 classes has 269,722 parameters
  (272,474 would be option B, 1x1 projection shortcuts).
* ``cifar_resnet18/34``: the common "CIFAR ResNet-18/34" variant (as in
  kuangliu/pytorch-cifar): the ImageNet ResNet-18/34 stages with a 3x3
  stride-1 stem, no max pool and 1x1 conv + BN projection shortcuts.
"""

from __future__ import annotations

from typing import Any

from .blocks import BasicBlock, ResNet
from .registry import register_model

__all__ = ["cifar_resnet18", "cifar_resnet34", "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]


def _he_cifar_resnet(depth: int, num_classes: int, in_chans: int, width: int = 16, **kwargs: Any) -> ResNet:
    """ResNet-``depth`` (``depth = 6n + 2``) of He et al. 2016 §4.2 with option-A shortcuts.

    ``width`` is the stem and first-stage channel count (16 in the paper; stages use width, 2·width, 4·width):
    the thinner dense baselines of equal DoF use it.
    """
    if (depth - 2) % 6 != 0:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an int >= 1 (16 in the paper), got {width!r}")
    n = (depth - 2) // 6
    return ResNet(
        block=BasicBlock, layers=[n, n, n], widths=[width, 2 * width, 4 * width], num_classes=num_classes,
        in_chans=in_chans, stem_width=width, stem_kernel_size=3, stem_stride=1,
        stem_pool=False, shortcut="A", **kwargs,
    )


def _kuangliu_resnet(layers: list[int], num_classes: int, in_chans: int, **kwargs: Any) -> ResNet:
    """ImageNet-style BasicBlock ResNet with a 3x3 stride-1 stem and no max pool."""
    return ResNet(
        block=BasicBlock, layers=layers, widths=[64, 128, 256, 512], num_classes=num_classes,
        in_chans=in_chans, stem_width=64, stem_kernel_size=3, stem_stride=1,
        stem_pool=False, shortcut="B", **kwargs,
    )


@register_model
def resnet8(*, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-8 (the 6n + 2 family with n=1, 0.08M params): the shallow baseline.

    Args:
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        **kwargs: ``width`` (default 16) and extra :class:`~modelring.models.blocks.ResNet` options.

    Returns:
        The model.
    """
    return _he_cifar_resnet(8, num_classes, in_chans, **kwargs)


@register_model
def resnet14(*, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-14 (the 6n + 2 family with n=2, 0.17M params).

    Args:
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        **kwargs: ``width`` (default 16) and extra :class:`~modelring.models.blocks.ResNet` options.

    Returns:
        The model.
    """
    return _he_cifar_resnet(14, num_classes, in_chans, **kwargs)


@register_model
def resnet20(*, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-20 (He et al. 2016 §4.2, n=3, 0.27M params).

    Args:
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        **kwargs: Extra :class:`~modelring.models.blocks.ResNet` options (e.g. ``zero_init_residual``).

    Returns:
        The model.
    """
    return _he_cifar_resnet(20, num_classes, in_chans, **kwargs)


@register_model
def resnet32(*, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-32 (He et al. 2016 §4.2, n=5, 0.46M params).

    Args:
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        **kwargs: Extra :class:`~modelring.models.blocks.ResNet` options.

    Returns:
        The model.
    """
    return _he_cifar_resnet(32, num_classes, in_chans, **kwargs)


@register_model
def resnet44(*, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-44 (He et al. 2016 §4.2, n=7, 0.66M params).

    Args:
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        **kwargs: Extra :class:`~modelring.models.blocks.ResNet` options.

    Returns:
        The model.
    """
    return _he_cifar_resnet(44, num_classes, in_chans, **kwargs)


@register_model
def resnet56(*, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-56 (He et al. 2016 §4.2, n=9, 0.85M params).

    Args:
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        **kwargs: Extra :class:`~modelring.models.blocks.ResNet` options.

    Returns:
        The model.
    """
    return _he_cifar_resnet(56, num_classes, in_chans, **kwargs)


@register_model
def resnet110(*, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-110 (He et al. 2016 §4.2, n=18, 1.7M params).

    Args:
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        **kwargs: Extra :class:`~modelring.models.blocks.ResNet` options.

    Returns:
        The model.
    """
    return _he_cifar_resnet(110, num_classes, in_chans, **kwargs)


@register_model
def cifar_resnet18(*, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-18: [2, 2, 2, 2] BasicBlocks, 3x3 stem, no max pool (11.2M params).

    Args:
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        **kwargs: Extra :class:`~modelring.models.blocks.ResNet` options.

    Returns:
        The model.
    """
    return _kuangliu_resnet([2, 2, 2, 2], num_classes, in_chans, **kwargs)


@register_model
def cifar_resnet34(*, num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> ResNet:
    """CIFAR ResNet-34: [3, 4, 6, 3] BasicBlocks, 3x3 stem, no max pool (21.3M params).

    Args:
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        **kwargs: Extra :class:`~modelring.models.blocks.ResNet` options.

    Returns:
        The model.
    """
    return _kuangliu_resnet([3, 4, 6, 3], num_classes, in_chans, **kwargs)
