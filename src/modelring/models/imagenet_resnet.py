"""ImageNet ResNets of He et al. 2016, "Deep Residual Learning for Image
Recognition" (arXiv 1512.03385), Table 1.

The architecture, initialisation and parameter/buffer names match
torchvision's ``resnet18/34/50`` exactly (7x7 stride-2 stem + max pool,
projection shortcuts named ``downsample``, Bottleneck stride on the 3x3 conv,
i.e. "ResNet v1.5"), so a torchvision ``state_dict`` loads with
``load_state_dict(..., strict=True)``.
"""

from __future__ import annotations

from typing import Any

from .blocks import BasicBlock, Block, Bottleneck, ResNet
from .registry import register_model

__all__ = ["resnet18", "resnet34", "resnet50"]


def _imagenet_resnet(block: Block, layers: list[int], num_classes: int, in_chans: int,
                     **kwargs: Any) -> ResNet:
    """torchvision-layout ResNet: 64-channel 7x7/2 stem, 3x3/2 max pool, 4 stages."""
    return ResNet(
        block=block, layers=layers, widths=[64, 128, 256, 512], num_classes=num_classes,
        in_chans=in_chans, stem_width=64, stem_kernel_size=7, stem_stride=2,
        stem_pool=True, shortcut="B", **kwargs,
    )


@register_model(input_size=(3, 224, 224))
def resnet18(*, num_classes: int = 1000, in_chans: int = 3, zero_init_residual: bool = False,
             **kwargs: Any) -> ResNet:
    """ImageNet ResNet-18 ([2, 2, 2, 2] BasicBlocks, 11.7M params).

    Args:
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        zero_init_residual: Zero the last BN scale in each residual block.
        **kwargs: Extra :class:`~modelring.models.blocks.ResNet` options.

    Returns:
        The model.
    """
    return _imagenet_resnet(BasicBlock, [2, 2, 2, 2], num_classes, in_chans,
                            zero_init_residual=zero_init_residual, **kwargs)


@register_model(input_size=(3, 224, 224))
def resnet34(*, num_classes: int = 1000, in_chans: int = 3, zero_init_residual: bool = False,
             **kwargs: Any) -> ResNet:
    """ImageNet ResNet-34 ([3, 4, 6, 3] BasicBlocks, 21.8M params).

    Args:
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        zero_init_residual: Zero the last BN scale in each residual block.
        **kwargs: Extra :class:`~modelring.models.blocks.ResNet` options.

    Returns:
        The model.
    """
    return _imagenet_resnet(BasicBlock, [3, 4, 6, 3], num_classes, in_chans,
                            zero_init_residual=zero_init_residual, **kwargs)


@register_model(input_size=(3, 224, 224))
def resnet50(*, num_classes: int = 1000, in_chans: int = 3, zero_init_residual: bool = False,
             **kwargs: Any) -> ResNet:
    """ImageNet ResNet-50 ([3, 4, 6, 3] Bottlenecks, v1.5, 25.6M params).

    Args:
        num_classes: Classifier outputs.
        in_chans: Input image channels.
        zero_init_residual: Zero the last BN scale in each residual block.
        **kwargs: Extra :class:`~modelring.models.blocks.ResNet` options.

    Returns:
        The model.
    """
    return _imagenet_resnet(Bottleneck, [3, 4, 6, 3], num_classes, in_chans,
                            zero_init_residual=zero_init_residual, **kwargs)
