"""Image classification (``task.name: classification``): the registry's classifiers on a named data set
(``modelring.data.DATASETS``), cross-entropy, top-1/top-5; the best model is the one of highest test top-1.

Augmentation is keyed by (seed, epoch, index), not drawn from a running random stream, so workers and resumed
runs see exactly the same images.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from .. import data as D
from ..distributed import Dist, all_sum
from ..keys import derive_key
from ..models import create_model
from .base import Task, held_out, to_device


class AugmentedDataset(Dataset):
    """A split with its per-sample transform; randomness keyed by (seed, epoch, index), so workers and
    resumed runs see exactly the same augmentation."""

    def __init__(self, dataset: Dataset, transform, *, seed: int):
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        generator = torch.Generator().manual_seed(derive_key(self.seed, self.epoch, index))
        return self.transform(image, generator), label


def transforms(name: str, image_size: int, augment: bool):
    """(train transform, eval transform), both (uint8 CHW, generator) -> normalised float CHW.

    ``imagefolder``: random resized crop + flip / resize and centre crop to ``image_size``; the small data sets:
    random crop with padding (+ flip where mirroring keeps the label).
    """
    info = D.dataset_info(name)
    mean, std = info.mean, info.std
    if name == "imagefolder":
        def train_tf(img, g):
            img = D.random_resized_crop(img, size=image_size, generator=g) if augment else \
                D.resize_center_crop(img, resize=round(image_size / 0.875), crop=image_size)
            return D.normalize(D.random_hflip(img, generator=g) if augment else img, mean=mean, std=std)

        def eval_tf(img, g):
            return D.normalize(D.resize_center_crop(img, resize=round(image_size / 0.875), crop=image_size),
                               mean=mean, std=std)
        return train_tf, eval_tf

    def train_tf(img, g):
        if augment:
            img = D.random_crop(img, size=img.shape[-1], padding=4 if img.shape[-1] >= 32 else 2, generator=g)
            img = D.random_hflip(img, generator=g) if info.mirror else img
        return D.normalize(img, mean=mean, std=std)

    def eval_tf(img, g):
        return D.normalize(img, mean=mean, std=std)
    return train_tf, eval_tf


def _limit(dataset: Dataset, limit: int | None) -> Dataset:
    return dataset if not limit else Subset(dataset, range(min(limit, len(dataset))))


def split_validation(dataset: Dataset, size: int | float) -> tuple[Subset, Subset]:
    """(rest, validation): ``size`` images (an int, or a fraction in (0, 1) of the split) chosen by a fixed keyed
    permutation of the indices (``held_out``); both keep the original order of their images."""
    rest, held = held_out(len(dataset), size, what="training images")
    return Subset(dataset, rest), Subset(dataset, held)


class Meter:
    """Running sums of loss and top-k hits."""

    def __init__(self):
        self.loss, self.top1, self.top5, self.count = 0.0, 0, 0, 0

    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss: float) -> None:
        k = min(5, logits.shape[1])
        hits = logits.topk(k, dim=1).indices.eq(labels[:, None])
        self.top1 += int(hits[:, 0].sum())
        self.top5 += int(hits.any(1).sum())
        self.loss += loss * labels.numel()
        self.count += labels.numel()

    def summary(self, d: Dist = Dist()) -> dict:
        """Averages over every rank's samples."""
        loss, top1, top5, count = all_sum([self.loss, self.top1, self.top5, self.count], d)
        n = max(count, 1)
        return {"loss": loss / n, "top1": top1 / n, "top5": top5 / n, "count": int(count)}


class ClassificationTask(Task):
    name = "classification"
    train_fields = ("top1",)
    test_fields = ("top1", "top5")

    def eval_split(self, cfg: dict) -> str:
        return "val" if cfg["data"]["val_size"] else "test"

    def selection(self, cfg: dict) -> tuple[str, bool]:
        return "top1", True

    def build_data(self, cfg: dict) -> tuple[AugmentedDataset, AugmentedDataset]:
        """Train and evaluation splits of ``data.name`` with augmentation attached. With ``data.val_size`` the
        evaluation split is held out of the training images (``split_validation``, before ``train_limit``);
        otherwise it is the test split (``test_limit`` applied)."""
        dc = cfg["data"]
        root = dc["root"] or D.dataset_info(dc["name"], "classification").default_root
        if root is None:
            raise ValueError(f"data.root is required for data set {dc['name']!r}: set data.root=/path/to/data")
        train = D.build_dataset(dc["name"], root, train=True, pad_to=dc["pad_to"], channels=dc["channels"])
        test = D.build_dataset(dc["name"], root, train=False, pad_to=dc["pad_to"], channels=dc["channels"])
        train_tf, eval_tf = transforms(dc["name"], dc["image_size"], dc["augment"])
        seed = cfg["train"]["seed"]
        classes, channels = train.classes, train[0][0].shape[0]
        if list(test.classes) != list(classes):  # labels are indices into the class list: both must agree
            missing = sorted(set(classes) - set(test.classes))
            extra = sorted(set(test.classes) - set(classes))
            raise ValueError(f"the {dc['name']} test split's classes differ from the training split's (missing from "
                             f"test: {missing[:5] or 'none'}; not in training: {extra[:5] or 'none'}"
                             f"{'; same names, another order' if not missing and not extra else ''}): every label "
                             "would mean another class; make both splits hold the same class folders")
        if len(test) and tuple(test[0][0].shape) != tuple(train[0][0].shape) and dc["name"] != "imagefolder":
            raise ValueError(f"the {dc['name']} training images are {tuple(train[0][0].shape)} but the test images "
                             f"{tuple(test[0][0].shape)}: the two splits do not belong together (check data.root)")
        if dc["val_size"]:
            train, test = split_validation(train, dc["val_size"])
        else:
            test = _limit(test, dc["test_limit"])
        train_ds = AugmentedDataset(_limit(train, dc["train_limit"]), train_tf, seed=seed)
        train_ds.classes, train_ds.channels = classes, channels
        return train_ds, AugmentedDataset(test, eval_tf, seed=seed)

    def build_model(self, cfg: dict, train: AugmentedDataset) -> nn.Module:
        """The registry model with the data's number of classes and channels (``model.kwargs`` may not contradict
        the data: a 3-class head on 10-class data would train on labels it cannot output)."""
        data = {"num_classes": len(train.classes), "in_chans": train.channels}
        given = cfg["model"]["kwargs"]
        for key, value in data.items():
            if key in given and given[key] != value:
                raise ValueError(f"model.kwargs.{key}={given[key]!r} but the data ({cfg['data']['name']}) has {value}; "
                                 f"drop model.kwargs.{key} (it is read from the data)")
        return create_model(cfg["model"]["name"], **{**data, **given})

    def to_device(self, batch, device, channels_last):
        images, labels = batch
        return to_device(images, device, channels_last), labels.to(device)

    def batch_size(self, batch) -> int:
        return len(batch[1])

    def training_loss(self, model, batch, cfg):
        images, labels = batch
        logits = model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=cfg["train"]["label_smoothing"])
        top1 = logits.detach().argmax(1).eq(labels).float().mean().item()
        return loss, {"top1": top1}

    @torch.no_grad()
    def evaluate(self, model, loader, cfg, device, d):
        """Loss, top-1 and top-5 accuracy over ``loader``, summed over ranks."""
        meter = Meter()
        for batch in loader:
            images, labels = self.to_device(batch, device, cfg["train"]["channels_last"])
            logits = model(images).float()
            meter.update(logits, labels, F.cross_entropy(logits, labels).item())
        return meter.summary(d)

    def describe(self, test: dict, cfg: dict) -> str:
        split = self.eval_split(cfg)
        return (f"{split} top-1 {test['top1']:.4f}, top-5 {test['top5']:.4f}, loss {test['loss']:.4f} "
                f"({test['count']:,} {split} images)")

    def epoch_line(self, row: dict) -> str:
        split = "val" if "val_top1" in row else "test"
        return (f"acc {row['train_top1']:.4f} | {split} loss {row[f'{split}_loss']:.4f} top1 {row[f'{split}_top1']:.4f} "
                f"top5 {row[f'{split}_top5']:.4f}")
