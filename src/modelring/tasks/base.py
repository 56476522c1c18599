"""What a task is to the run loop (``modelring.loop``): the parts that differ between tasks, nothing else.

A task builds its data and its (dense, unconverted) model from the config, computes the training loss of a
batch, evaluates a model over a loader into named metrics and declares which of them selects the best model and
in which direction. The loop owns everything else: device and DDP, AMP and the gradient scaler, the method
(``modelring.methods``), optimizer and schedule, restore, the epoch loop, checkpoints, metrics files, the final
model and the report. Register a new task with ``modelring.tasks.register_task``.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from ..distributed import Dist
from ..keys import derive_key


VAL_KEY = 0x7A11D  # the validation split's permutation key: fixed, so every seed and method holds out the same samples


def held_out(n: int, size: int | float, *, what: str) -> tuple[list[int], list[int]]:
    """(rest, held out): indices of ``n`` samples, ``size`` of them (an int, or a fraction in (0, 1)) held out for
    validation by a fixed keyed permutation (the same samples for every seed and method); both in ascending order.
    ``what`` names the samples in the error a bad size gets."""
    count = round(size * n) if isinstance(size, float) else size
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 < count < n:
        raise ValueError(f"data.val_size must be a number of {what} in [1, {n - 1}] or a fraction in (0, 1), "
                         f"got {size!r}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_key(VAL_KEY, n)))
    held = torch.zeros(n, dtype=torch.bool)
    held[order[:count]] = True
    return (~held).nonzero().flatten().tolist(), held.nonzero().flatten().tolist()


class Task:
    """Base class of a task; subclasses set the class attributes and implement the methods that raise.

    Attributes:
        name: the ``task.name`` that selects it.
        train_fields: per-sample means reported by ``training_loss`` beside the loss (``train_<field>`` columns).
        test_fields: scalar metrics of ``evaluate`` logged every epoch (``test_<field>`` columns).
        optimizer_key: dotted config key naming the optimizer (sgd, adam or adamw), or None for SGD.
        unit: what ``batch_size`` counts, as the progress bar and the epoch line write its rate (``img/s``; the
            ``images_per_s`` column holds that rate whatever the unit: tokens per second for ``lm``).
        write_synthetic: optional ``(out, *, train, test, seed, image_size) -> summary`` writing a procedural data
            set in the task's real on-disk layout (``modelring make-data``).
    """

    name: ClassVar[str]
    train_fields: ClassVar[tuple[str, ...]] = ()
    test_fields: ClassVar[tuple[str, ...]] = ()
    optimizer_key: ClassVar[str | None] = None
    unit: ClassVar[str] = "img"
    write_synthetic: ClassVar[Callable[..., str] | None] = None

    def check(self, cfg: dict) -> None:
        """Refuse task options that cannot work, before anything is built (default: nothing to check)."""

    def eval_split(self, cfg: dict) -> str:
        """Name of the split ``build_data`` returns for evaluation: ``test``, or ``val`` when the config holds a
        validation split out of the training data (column and report prefix)."""
        return "test"

    def test_overrides(self) -> list[str]:
        """Config overrides that turn a run's evaluation split back into the test split (scoring a final model
        once on the test set after choices made on validation)."""
        return ["data.val_size=null"]

    def selection(self, cfg: dict) -> tuple[str, bool]:
        """(test metric that picks the best model, whether higher is better)."""
        raise NotImplementedError

    def build_data(self, cfg: dict) -> tuple[Dataset, Dataset]:
        """(training split, evaluation split: ``eval_split``); the training split has an ``epoch`` attribute that keys its
        augmentation."""
        raise NotImplementedError

    def build_model(self, cfg: dict, train: Dataset) -> nn.Module:
        """The dense registry model; ``modelring.methods.apply_method`` converts it afterwards."""
        raise NotImplementedError

    def to_device(self, batch: Any, device: torch.device, channels_last: bool) -> Any:
        """The batch on ``device`` (images channels-last when asked)."""
        raise NotImplementedError

    def batch_size(self, batch: Any) -> int:
        """How many samples (``unit``) a batch holds: the loss is averaged and the throughput counted in them."""
        raise NotImplementedError

    def training_loss(self, model: nn.Module, batch: Any, cfg: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """(loss to back-propagate, {train_field: mean over the batch}) for one batch already on the device."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader, cfg: dict, device: torch.device, d: Dist) -> dict:
        """Metrics over ``loader`` summed over all ranks: at least ``loss``, ``count`` and every test field."""
        raise NotImplementedError

    def describe(self, test: dict, cfg: dict) -> str:
        """``evaluate``'s metrics as printable text (``modelring eval`` and the end of a run)."""
        raise NotImplementedError

    def epoch_line(self, row: dict) -> str:
        """The metrics part of the one-line epoch summary."""
        return " ".join(f"{k} {row[k]:.4f}" for k in row if k.startswith(("test_", "val_")))


def to_device(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """Images on ``device``, channels-last when asked (4-D only)."""
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last and images.dim() == 4 else images
