"""The training loop for classification, and the task dispatch (``task.name``) to the pose and multitask loops.

One readable module, top to bottom: ``run(config)`` builds everything from a plain config dict (see
``modelring.config``), trains epoch by epoch, evaluates after each epoch (loss, top-1, top-5), writes
``last.pt`` (model, optimizer, scheduler, RNG state, epoch, config; atomic) and the best model as a
self-describing ``best.safetensors``, logs ``metrics.csv`` / ``metrics.jsonl`` (and TensorBoard when
installed), and returns a final report.

Determinism: the data order of epoch e and the augmentation of sample i in epoch e come from integer keys of
(seed, e[, i]), not from a running random stream, so a run resumed from ``last.pt`` replays exactly the same
batches; on CPU the final ring is bitwise equal to an uninterrupted run.
"""
from __future__ import annotations

import importlib
import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import data as D
from .config import check_values, dump_config
from .convert import convert, ring_names, rings_per_stage
from .distributed import (Dist, GradientBytes, all_sum, check_same_wiring, cleanup, count_and_allreduce,
                          parameters_agree, setup, shard)
from .count import count_params
from .io import write_atomic
from .runfiles import MetricsLog, restore, run_folder, save_best, save_checkpoint, save_final_model
from .models import create_model
from .prune import MagnitudePruner
from .wiring import derive_key

NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "imagefolder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
DEFAULT_ROOTS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}
SCHEDULES = ("cosine", "paper", "step", "constant")


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


def _transforms(name: str, image_size: int, augment: bool):
    """(train transform, eval transform), both (uint8 CHW, generator) -> normalised float CHW."""
    mean, std = NORMALIZATION[name]
    if name == "imagefolder":
        def train_tf(img, g):
            img = D.random_resized_crop(img, size=image_size, generator=g) if augment else \
                D.resize_center_crop(img, resize=round(image_size / 0.875), crop=image_size)
            return D.normalize(D.random_hflip(img, generator=g) if augment else img, mean=mean, std=std)

        def eval_tf(img, g):
            return D.normalize(D.resize_center_crop(img, resize=round(image_size / 0.875), crop=image_size),
                               mean=mean, std=std)
        return train_tf, eval_tf
    flip = name != "mnist"  # mirrored digits are other digits

    def train_tf(img, g):
        if augment:
            img = D.random_crop(img, size=img.shape[-1], padding=4 if img.shape[-1] >= 32 else 2, generator=g)
            img = D.random_hflip(img, generator=g) if flip else img
        return D.normalize(img, mean=mean, std=std)

    def eval_tf(img, g):
        return D.normalize(img, mean=mean, std=std)
    return train_tf, eval_tf


def _limit(dataset: Dataset, limit: int | None) -> Dataset:
    return dataset if not limit else torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))


def build_data(cfg: dict) -> tuple[AugmentedDataset, AugmentedDataset, int, int]:
    """Train and test datasets (augmentation attached), number of classes, input channels."""
    dc = cfg["data"]
    root = dc["root"] or DEFAULT_ROOTS.get(dc["name"])
    if root is None:
        raise ValueError(f"data.root is required for data set {dc['name']!r}: set data.root=/path/to/data")
    train = D.build_dataset(dc["name"], root, train=True, pad_to=dc["pad_to"], channels=dc["channels"])
    test = D.build_dataset(dc["name"], root, train=False, pad_to=dc["pad_to"], channels=dc["channels"])
    classes = len(train.classes)
    channels = train[0][0].shape[0]
    train_tf, eval_tf = _transforms(dc["name"], dc["image_size"], dc["augment"])
    seed = cfg["train"]["seed"]
    return (AugmentedDataset(_limit(train, dc["train_limit"]), train_tf, seed=seed),
            AugmentedDataset(_limit(test, dc["test_limit"]), eval_tf, seed=seed), classes, channels)


def build_model(cfg: dict, num_classes: int, in_chans: int) -> nn.Module:
    """The registry model, converted to RPG when ``ring.enabled``."""
    kwargs = {"num_classes": num_classes, "in_chans": in_chans, **cfg["model"]["kwargs"]}
    torch.manual_seed(cfg["train"]["seed"])
    return apply_ring(create_model(cfg["model"]["name"], **kwargs), cfg["ring"])


def apply_ring(model: nn.Module, rc: dict) -> nn.Module:
    """Convert ``model`` to RPG as the ``ring`` config section says (nothing when ``ring.enabled`` is false).

    ``ring.rings`` may be null (one global ring), ``per_stage`` (one ring per ``stage_names()`` entry),
    ``per_layer`` (one ring per generated parameter) or a {glob: size} mapping.
    """
    if not rc["enabled"]:
        return model
    rings = rc["rings"]
    if rings == "per_stage":
        rings = rings_per_stage(model)
    elif rings == "per_layer":
        rings = lambda name, module: name  # noqa: E731 - each parameter its own group
    elif isinstance(rings, str):
        raise ValueError(f"ring.rings must be null, per_stage, per_layer or a mapping glob -> size, got {rings!r}")
    return convert(model, rc["size"], seed=rc["seed"], permute=rc["permute"], reflect=rc["reflect"],
                   sampling=rc["sampling"], scale=rc["scale"], rings=rings, include=rc["include"],
                   exclude=rc["exclude"] or None, wiring=rc["wiring"], block=rc["block"], strict=rc["strict"])


def build_pruner(model: nn.Module, cfg: dict, steps_per_epoch: int) -> MagnitudePruner | None:
    """The global magnitude pruning baseline of the ``prune`` section, or None when it is off."""
    pc, rc = cfg["prune"], cfg["ring"]
    if not pc["enabled"]:
        return None
    if rc["enabled"]:
        raise ValueError("prune.enabled=true prunes the dense model: set ring.enabled=false too")
    if not 0 <= pc["at"] <= 1:
        raise ValueError(f"prune.at is the fraction of training after which to prune, in [0, 1]; got {pc['at']!r}")
    step = round(pc["at"] * cfg["train"]["epochs"] * steps_per_epoch)
    return MagnitudePruner(model, pc["keep"], step, include=rc["include"], exclude=rc["exclude"] or None)


def param_groups(model: nn.Module, cfg: dict) -> list[dict]:
    """Explicit groups: rings (``train.ring_weight_decay``, default = weight_decay) and everything else."""
    tc = cfg["train"]
    names = ring_names(model)
    rings = [p for n, p in model.named_parameters() if n in names and p.requires_grad]
    others = [p for n, p in model.named_parameters() if n not in names and p.requires_grad]
    ring_wd = tc["weight_decay"] if tc["ring_weight_decay"] is None else tc["ring_weight_decay"]
    groups = [{"params": others, "weight_decay": tc["weight_decay"], "name": "free"}]
    return groups + ([{"params": rings, "weight_decay": ring_wd, "name": "ring"}] if rings else [])


def build_optimizer(model: nn.Module, cfg: dict, steps_per_epoch: int, name: str = "sgd", *,
                    setting: str = "the optimizer"):
    """(optimizer, per-step LambdaLR) over ``param_groups``: SGD with ``train.momentum``/``nesterov``, or Adam;
    the learning rate follows ``train.schedule`` (see ``lr_factor``) at fractional epochs."""
    tc = cfg["train"]
    if name == "sgd":
        opt = torch.optim.SGD(param_groups(model, cfg), lr=tc["lr"], momentum=tc["momentum"],
                              nesterov=tc["nesterov"] and tc["momentum"] > 0)
    elif name == "adam":
        opt = torch.optim.Adam(param_groups(model, cfg), lr=tc["lr"])
    else:
        raise ValueError(f"{setting} must be sgd or adam, got {name!r}")
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step / steps_per_epoch, tc))


def lr_factor(epoch: float, tc: dict) -> float:
    """Multiplier of the base lr at a (fractional) epoch: linear warm-up, then the schedule."""
    if epoch < tc["warmup_epochs"]:
        return (epoch + 1e-8) / tc["warmup_epochs"]
    schedule = tc["schedule"]
    if schedule == "paper":  # lr_t = lr_0 * 0.1^(epoch / 45) in the official RPG code
        return 0.1 ** (epoch / tc["decay_epochs"])
    if schedule == "step":
        return tc["gamma"] ** math.floor(epoch / tc["step_epochs"])
    if schedule == "cosine":
        span = max(tc["epochs"] - tc["warmup_epochs"], 1e-8)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (epoch - tc["warmup_epochs"]) / span)))
    if schedule == "constant":
        return 1.0
    raise ValueError(f"train.schedule must be one of {SCHEDULES}, got {schedule!r}")


@dataclass
class Meter:
    """Running sums of loss and top-k hits."""

    loss: float = 0.0
    top1: int = 0
    top5: int = 0
    count: int = 0

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


def _progress(iterable, total: int, enabled: bool, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are a nicety, never a requirement
        return iterable
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=False)


def _autocast(device: torch.device, enabled: bool):
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


def check_finite(loss: torch.Tensor, epoch: int) -> None:
    """Stop training on a NaN/inf loss with an error that says what to do (the last checkpoint is kept)."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} in epoch {epoch + 1}; training stopped, the last "
                                 "good checkpoint is kept. Lower train.lr or check the data.")


def train_one_epoch(model, loader, opt, sched, epoch: int, cfg: dict, device, scaler, d: Dist = Dist(),
                    after_step=None) -> dict:
    """One pass over the training split; returns loss/top1/top5 over all ranks and images per second.

    ``after_step()`` (optional) runs after every optimizer step (the pruning baseline re-applies its masks).
    """
    tc, meter, start = cfg["train"], Meter(), time.perf_counter()
    model.train()
    bar = _progress(loader, len(loader), tc["progress"] and d.main, f"epoch {epoch + 1}/{tc['epochs']}")
    for images, labels in bar:
        images, labels = _to(images, device, tc["channels_last"]), labels.to(device)
        with _autocast(device, tc["amp"]):
            logits = model(images)
            loss = F.cross_entropy(logits, labels, label_smoothing=tc["label_smoothing"])
        check_finite(loss, epoch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        if after_step is not None:
            after_step()
        meter.update(logits.detach().float(), labels, loss.item())
        if hasattr(bar, "set_postfix"):
            stats = meter.summary()  # this rank's view: no collective inside the loop
            bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['top1']:.3f}",
                            lr=f"{opt.param_groups[0]['lr']:.4f}",
                            img_s=f"{d.world * meter.count / (time.perf_counter() - start):.0f}")
    stats = meter.summary(d)
    return {**stats, "images_per_s": stats["count"] / (time.perf_counter() - start)}


@torch.no_grad()
def evaluate(model: nn.Module, loader, device, *, channels_last: bool = False, amp: bool = False,
             d: Dist = Dist()) -> dict:
    """Loss, top-1 and top-5 accuracy over a loader (summed over ranks when each holds a shard)."""
    model.eval()
    meter = Meter()
    for images, labels in loader:
        images, labels = _to(images, device, channels_last), labels.to(device)
        with _autocast(device, amp):
            logits = model(images).float()
        meter.update(logits, labels, F.cross_entropy(logits, labels).item())
    return meter.summary(d)


def _to(images: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last and images.dim() == 4 else images


def make_loader(dataset: AugmentedDataset, batch_size: int, *, shuffle_key: int | None,
                d: Dist = Dist()) -> DataLoader:
    """Batches of this rank's shard; the order is a keyed permutation (the same on every rank) or in order."""
    n = len(dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(shuffle_key)) if shuffle_key is not None \
        else torch.arange(n)
    return DataLoader(dataset, batch_size=batch_size, sampler=shard(order, d, even=shuffle_key is not None),
                      num_workers=0, drop_last=False)


def run(cfg: dict, *, resume: bool = False, overwrite: bool = False, log=print) -> dict:
    """Train and evaluate as ``cfg`` says; returns the final report (also written to ``report.json``).

    A run folder (``out.dir``) that already holds a run is refused unless ``resume`` (continue from its
    ``last.pt``) or ``overwrite`` (delete it first); one training at a time holds its lock.
    Under ``torchrun`` (WORLD_SIZE > 1) every rank trains its shard of each batch sequence with DDP; rank 0
    alone logs and writes files, and only rank 0 returns the report.
    """
    tc, out = cfg["train"], Path(cfg["out"]["dir"])
    check_values(cfg)
    if tc["threads"]:
        torch.set_num_threads(tc["threads"])
    d = setup(tc["device"])
    log = log if d.main else (lambda *a: None)
    try:
        folder = run_folder(out, resume=resume, overwrite=overwrite, log=log) if d.main else nullcontext(out)
        with folder:
            return task_runner(cfg["task"]["name"])(cfg, tc, out, d, resume, log)
    finally:
        cleanup(d)


# task name -> (training loop, evaluator); imported lazily so a task's dependencies stay its own
TASKS = {"classification": ("modelring.train:_run", "modelring.train:evaluate_classification"),
         "pose": ("modelring.tasks.pose.train:run_pose", "modelring.tasks.pose.train:evaluate_pose"),
         "multitask": ("modelring.tasks.multitask.train:run_multitask", "modelring.tasks.multitask.train:evaluate_multitask")}


def import_entry(spec: str):
    """The object named by ``"package.module:attr"``, imported on first use."""
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def _task_entry(name: str, which: int):
    if name not in TASKS:
        raise ValueError(f"task.name must be one of {sorted(TASKS)}, got {name!r}")
    return import_entry(TASKS[name][which])


def task_runner(name: str):
    """The training loop of a task: ``(cfg, tc, out, dist, resume, log) -> report``."""
    return _task_entry(name, 0)


def task_evaluator(name: str):
    """The evaluation of a task: ``(cfg, model) -> printable report`` on the config's test split."""
    return _task_entry(name, 1)


def evaluate_classification(cfg: dict, model: nn.Module) -> str:
    """Test loss, top-1 and top-5 of ``model`` on the config's test split, as one line."""
    _, test_ds, _, _ = build_data(cfg)
    stats = evaluate(model, make_loader(test_ds, cfg["train"]["eval_batch_size"], shuffle_key=None),
                     torch.device(cfg["train"]["device"]))
    return (f"test loss {stats['loss']:.4f}  top-1 {stats['top1']:.4f}  top-5 {stats['top5']:.4f}  "
            f"({len(test_ds):,} images)")


def _run(cfg: dict, tc: dict, out: Path, d: Dist, resume: bool, log) -> dict:
    device = d.device
    train_ds, test_ds, classes, channels = build_data(cfg)
    model = build_model(cfg, classes, channels).to(device)
    if tc["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    check_same_wiring(model, d)
    steps_per_epoch = math.ceil(len(train_ds) // d.world / tc["batch_size"])
    opt, sched = build_optimizer(model, cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=tc["amp"] and device.type == "cuda")
    pruner = build_pruner(model, cfg, steps_per_epoch)
    out.mkdir(parents=True, exist_ok=True)
    start_epoch, best = restore(out, resume, cfg, model, opt, sched, scaler, log, best=-1.0)
    if pruner is not None:
        pruner.start_at(start_epoch * steps_per_epoch)
    net, traffic = model, GradientBytes()
    if d.world > 1:  # after loading: DDP broadcasts rank 0's state to every rank at construction
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        net.register_comm_hook(traffic, count_and_allreduce)
    if d.main:
        write_atomic(out / "config.yaml", lambda tmp: Path(tmp).write_text(dump_config(cfg)))
    metrics = MetricsLog(out, cfg["out"]["tensorboard"]) if d.main else None
    if metrics is not None:
        metrics.keep_until(start_epoch)
    test_loader = make_loader(test_ds, tc["eval_batch_size"], shuffle_key=None, d=d)
    log(str(count_params(model)).split("\n")[0] + (f"; {d.world} processes" if d.world > 1 else ""))
    steps = 0
    for epoch in range(start_epoch, tc["epochs"]):
        started = time.perf_counter()
        train_ds.epoch = epoch
        loader = make_loader(train_ds, tc["batch_size"], shuffle_key=derive_key(tc["seed"], epoch, 0x5EED), d=d)
        stats = train_one_epoch(net, loader, opt, sched, epoch, cfg, device, scaler, d,
                                after_step=pruner.after_step if pruner else None)
        steps += len(loader)
        test = evaluate(model, test_loader, device, channels_last=tc["channels_last"], amp=tc["amp"], d=d)
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": stats["loss"],
               "train_top1": stats["top1"], "test_loss": test["loss"], "test_top1": test["top1"],
               "test_top5": test["top5"], "images_per_s": stats["images_per_s"],
               "epoch_s": time.perf_counter() - started}
        if d.main:
            metrics.write(row)
            if test["top1"] > best:
                save_best(model, out)
            save_checkpoint(out / "last.pt", model, opt, sched, scaler, epoch, max(best, test["top1"]), cfg)
        best = max(best, test["top1"])
        log(f"epoch {epoch + 1}/{tc['epochs']}: train loss {stats['loss']:.4f} acc {stats['top1']:.4f} | "
            f"test loss {test['loss']:.4f} top1 {test['top1']:.4f} top5 {test['top5']:.4f} | "
            f"{stats['images_per_s']:.0f} img/s, {row['epoch_s']:.0f} s")
    extra = {}
    if pruner is not None:  # DoF of a pruned model = its trainable non-zeros
        nonzero = pruner.nonzero(model)
        extra = {"dof": nonzero, "dof_fraction": nonzero / count_params(model).virtual, "pruned_keep": pruner.keep}
        log(f"pruned: {nonzero:,} trainable non-zeros ({pruner.keep:,} kept of the prunable weights)")
    if d.world > 1:
        extra |= {"processes": d.world, "ranks_agree": parameters_agree(model, d),
                 "ddp_gradient_bytes_per_step": traffic.bytes / max(steps, 1)}
    return final_report(model, cfg, out, best, log, extra) if d.main else {}


def final_report(model: nn.Module, cfg: dict, out: Path, best: float, log=print, extra: dict | None = None) -> dict:
    """Test accuracy, DoF vs dense, checkpoint bytes vs dense, and where everything is."""
    checkpoint_bytes, dense_bytes = save_final_model(model, out)
    counts = count_params(model)
    last = json.loads((out / "metrics.jsonl").read_text().strip().splitlines()[-1])
    report = {"test_top1": last["test_top1"], "test_top5": last["test_top5"], "best_test_top1": best,
              "dof": counts.dof, "dense_params": counts.virtual, "dof_fraction": counts.dof_fraction,
              "checkpoint_bytes": checkpoint_bytes, "dense_checkpoint_bytes": dense_bytes,
              "run_dir": str(out), **(extra or {})}
    write_atomic(out / "report.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
    log(f"\n{counts}\n")
    log(f"test top-1 {report['test_top1']:.4f} (best {best:.4f}), top-5 {report['test_top5']:.4f}")
    log(f"DoF {counts.dof:,} of {counts.virtual:,} dense parameters ({100 * counts.dof_fraction:.2f}%)")
    log(f"checkpoint {report['checkpoint_bytes']:,} B vs dense {dense_bytes:,} B "
        f"({report['checkpoint_bytes'] / dense_bytes:.1%})")
    if extra and "ddp_gradient_bytes_per_step" in extra:
        log(f"DDP: {extra['processes']} processes, ranks agree: {extra['ranks_agree']}, gradient all-reduce "
            f"{extra['ddp_gradient_bytes_per_step']:,.0f} B/step (dense model: {4 * counts.virtual:,} B)")
    log(f"logs: {out / 'metrics.csv'}, {out / 'metrics.jsonl'}; model: {out / 'model.safetensors'}; "
        f"best: {out / 'best.safetensors'}; resume state: {out / 'last.pt'}")
    return report
