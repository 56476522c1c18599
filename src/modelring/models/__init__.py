"""Model zoo: a name -> builder registry and the ResNet families of He et al. 2016
(arXiv 1512.03385).

Importing this package registers every family, so ``create_model("resnet20")``
and ``list_models("resnet*")`` work right away.
"""

from .registry import ModelInfo, create_model, list_models, model_info, register_model
from . import cifar_resnet, imagenet_resnet  # noqa: F401  (import registers the models)
from . import multitask  # noqa: F401
from . import pose  # noqa: F401  (pose_cpm, issue 5)
from . import gpt  # noqa: F401  (gpt_tiny, gpt_small, gpt_medium: the lm task, issue 24)

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]
