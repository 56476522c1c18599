"""The run loop: one ``fit(config)`` trains every task (``modelring.tasks``) with every method
(``modelring.methods``).

Top to bottom, ``fit`` owns the run: the run folder and its lock, device and DDP (``torchrun``), the task's data
and model, the method (RPG conversion or a pruning schedule), optimizer and schedule (``modelring.optim``), AMP and
the gradient scaler, restore from ``last.pt``, the epoch loop, per-epoch metrics (``metrics.csv`` /
``metrics.jsonl``, TensorBoard when installed), ``last.pt`` (atomic), ``best.safetensors`` (by the task's selection
metric), ``model.safetensors`` and ``report.json``.

Determinism: the data order of epoch e and the augmentation of sample i in epoch e come from integer keys of
(seed, e[, i]), not from a running random stream, so a run resumed from ``last.pt`` replays exactly the same
batches; on CPU the final ring is bitwise equal to an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .config import check_values, dump_config
from .bank import get_state
from .count import count_params
from .distributed import (Dist, GradientBytes, all_sum, check_same_wiring, cleanup, count_and_allreduce,
                          parameters_agree, setup, shard)
from .io import write_atomic
from .keys import derive_key
from .methods import get_method
from .optim import build_optimizer
from .plan import rings_per_stage
from .runfiles import (MetricsLog, append_jsonl, keep_jsonl_until, machine_record, restore, run_folder, save_best,
                       save_checkpoint, save_final_model)
from .tasks import Task, get_task


def fit(cfg: dict, *, resume: bool = False, overwrite: bool = False, log=print) -> dict:
    """Train and evaluate as ``cfg`` says; returns the final report (also written to ``report.json``).

    A run folder (``out.dir``) that already holds a run is refused unless ``resume`` (continue from its
    ``last.pt``) or ``overwrite`` (delete it first); one training at a time holds its lock. Under ``torchrun``
    (WORLD_SIZE > 1) every rank trains its shard of each batch sequence with DDP; rank 0 alone logs and writes
    files, and only rank 0 returns the report.
    """
    check_values(cfg)
    tc, out = cfg["train"], Path(cfg["out"]["dir"])
    task, method = get_task(cfg["task"]["name"]), get_method(cfg["method"])
    task.check(cfg)
    method.check(cfg)
    if tc["threads"]:
        torch.set_num_threads(tc["threads"])
    d = setup(tc["device"])
    log = log if d.main else (lambda *a: None)
    try:
        folder = run_folder(out, resume=resume, overwrite=overwrite, log=log) if d.main else nullcontext(out)
        with folder:
            report = _fit(task, cfg, out, d, resume, log)
    except BaseException as err:
        if d.world > 1:  # the traceback would keep DDP alive past the group (see cleanup); its text stays whole
            traceback.clear_frames(err.__traceback__)
        cleanup(d, finished=False)  # no barrier: the other ranks are still training
        raise
    cleanup(d)
    return report


def build_model(task: Task, cfg: dict, train: Dataset) -> nn.Module:
    """The task's model, seeded by ``train.seed``, as ``method`` trains it (converted, or as it is)."""
    torch.manual_seed(cfg["train"]["seed"])
    return get_method(cfg["method"]).apply(task.build_model(cfg, train), cfg)


def _fit(task: Task, cfg: dict, out: Path, d: Dist, resume: bool, log) -> dict:
    tc, device, started_run = cfg["train"], d.device, time.perf_counter()
    train_ds, test_ds = task.build_data(cfg)
    model = build_model(task, cfg, train_ds).to(device)
    if tc["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    check_same_wiring(model, d)
    steps_per_epoch = math.ceil(len(train_ds) // d.world / tc["batch_size"])
    optimizer = _dotted(cfg, task.optimizer_key) if task.optimizer_key else "sgd"
    opt, sched = build_optimizer(model, cfg, steps_per_epoch, optimizer, setting=task.optimizer_key or "optimizer")
    scaler = torch.amp.GradScaler(device.type, enabled=tc["amp"] and device.type == "cuda")
    select, higher = task.selection(cfg)
    sign = 1.0 if higher else -1.0
    start_epoch, best = restore(out, resume, cfg, model, opt, sched, scaler, log, best=-math.inf)
    method = get_method(cfg["method"])
    attached = method.attach(model, opt, cfg, steps_per_epoch=steps_per_epoch,
                             start_step=start_epoch * steps_per_epoch)  # e.g. the pruner, as a step hook
    net, traffic = model, GradientBytes()
    if d.world > 1:  # after loading: DDP broadcasts rank 0's state to every rank at construction
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        net.register_comm_hook(traffic, count_and_allreduce)
    split = task.eval_split(cfg)  # "test", or "val" for a split held out of the training data
    fields = ("epoch", "lr", "train_loss", *(f"train_{k}" for k in task.train_fields), f"{split}_loss",
              *(f"{split}_{k}" for k in task.test_fields), "images_per_s", "epoch_s")
    metrics = MetricsLog(out, cfg["out"]["tensorboard"], fields) if d.main else None
    if d.main:
        if start_epoch < tc["epochs"] or not (out / "config.yaml").is_file():  # a finished run keeps its own
            write_atomic(out / "config.yaml", lambda tmp: Path(tmp).write_text(dump_config(cfg)))
        metrics.keep_until(start_epoch)  # drops rows of epochs after the checkpoint, and torn lines
    test_loader = make_loader(test_ds, tc["eval_batch_size"], shuffle_key=None, d=d)
    log(f"{task.name}, {cfg['method']}: " + str(count_params(model)).split("\n")[0]
        + (f"; {d.world} processes" if d.world > 1 else ""))
    bank = get_state(model) if tc["grad_energy"] else None
    if bank is not None and d.main and (out / "grad_energy.jsonl").is_file():  # rows after the checkpoint go
        keep_jsonl_until(out / "grad_energy.jsonl", start_epoch)
    steps, test = 0, None
    for epoch in range(start_epoch, tc["epochs"]):
        if bank is not None:
            bank.track_gradient_energy()  # a fresh tally for this epoch
        started = time.perf_counter()
        train_ds.epoch = epoch
        loader = make_loader(train_ds, tc["batch_size"], shuffle_key=derive_key(tc["seed"], epoch, 0x5EED), d=d)
        stats = train_one_epoch(net, task, loader, opt, sched, scaler, epoch, cfg, device, d)
        steps += len(loader)
        test = evaluate(task, model, test_loader, cfg, device, d)
        row = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"],
               **{f"train_{k}": stats[k] for k in ("loss", *task.train_fields)},
               **{f"{split}_{k}": test[k] for k in ("loss", *task.test_fields)},
               "images_per_s": stats["images_per_s"], "epoch_s": time.perf_counter() - started}
        score = sign * test[select]
        if d.main:
            metrics.write(row)
            if score > best:
                save_best(model, out)
            save_checkpoint(out / "last.pt", model, opt, sched, scaler, epoch, max(best, score), cfg,
                            selection=("" if higher else "-") + f"{split}_{select}")
        best = max(best, score)
        if bank is not None and d.main:
            append_jsonl(out / "grad_energy.jsonl", {"epoch": epoch + 1, **stage_energy(model, bank.energy)})
        log(f"epoch {epoch + 1}/{tc['epochs']}: train loss {stats['loss']:.4f} {task.epoch_line(row)} | "
            f"{stats['images_per_s']:.0f} {task.unit}/s, {row['epoch_s']:.0f} s")
    if test is None and d.world == 1 and (out / "report.json").is_file() and (out / "model.safetensors").is_file():
        # a finished run resumed: nothing was trained, so its final model and report stay as they are (with several
        # processes every rank evaluates below instead, so that their collectives stay matched; the rewritten
        # model is last.pt's, the same one)
        log(f"{out} holds a finished run; nothing to train (its model.safetensors and report.json are kept)")
        return json.loads((out / "report.json").read_text())
    if test is None:  # resumed after the last epoch, killed before the final files
        test = evaluate(task, model, test_loader, cfg, device, d)
    extra = method.report(model, attached)
    if "pruned_keep" in extra:
        log(f"pruned: {extra['dof']:,} trainable non-zeros ({extra['pruned_keep']:,} kept of the prunable weights)")
    if d.world > 1:
        extra |= {"processes": d.world, "ranks_agree": parameters_agree(model, d),
                  "ddp_gradient_bytes_per_step": traffic.bytes / max(steps, 1)}
    if not d.main:
        return {}
    extra |= {f"best_{split}_{select}": sign * best, "train_seconds": time.perf_counter() - started_run}
    return final_report(task, model, cfg, out, test, log, extra)


def stage_energy(model: nn.Module, energy: dict[str, float]) -> dict:
    """Per stage (the model's ``stage_names()``, else its top-level children; the rest as "other"): the energy its
    generated weights sent into the rings and its share of the total."""
    stage_of, totals = rings_per_stage(model, rest="other"), {}
    for name, value in energy.items():
        stage = stage_of(name, None)
        totals[stage] = totals.get(stage, 0.0) + value
    whole = sum(totals.values()) or 1.0
    return {"energy": totals, "share": {k: v / whole for k, v in totals.items()}}


def _dotted(cfg: dict, key: str):
    section, _, name = key.partition(".")
    return cfg[section][name]


def train_one_epoch(net: nn.Module, task: Task, loader, opt, sched, scaler, epoch: int, cfg: dict,
                    device: torch.device, d: Dist = Dist()) -> dict:
    """One pass over the training batches: the loss and the task's training fields (means over every rank's
    samples) and images (``task.unit``: tokens for lm) per second (all ranks). A method's per-step work rides on
    ``opt`` as a step hook."""
    tc, start = cfg["train"], time.perf_counter()
    sums, count = dict.fromkeys(("loss", *task.train_fields), 0.0), 0
    net.train()
    bar = _progress(loader, len(loader), tc["progress"] and d.main, f"epoch {epoch + 1}/{tc['epochs']}")
    for batch in bar:
        batch = task.to_device(batch, device, tc["channels_last"])
        with autocast(device, tc["amp"]):
            loss, parts = task.training_loss(net, batch, cfg)
        check_finite(loss, epoch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        n = task.batch_size(batch)
        for key, value in {"loss": loss.item(), **parts}.items():
            sums[key] += value * n
        count += n
        if hasattr(bar, "set_postfix"):  # this rank's view: no collective inside the loop
            bar.set_postfix(**{k: f"{v / count:.3f}" for k, v in sums.items()}, lr=f"{opt.param_groups[0]['lr']:.4f}",
                            **{f"{task.unit}_s": f"{d.world * count / (time.perf_counter() - start):.0f}"})
    totals = all_sum([*sums.values(), count], d)
    n = max(totals[-1], 1)
    return {**{k: v / n for k, v in zip(sums, totals)}, "count": int(totals[-1]),
            "images_per_s": totals[-1] / (time.perf_counter() - start)}


@torch.no_grad()
def evaluate(task: Task, model: nn.Module, loader, cfg: dict, device: torch.device, d: Dist = Dist()) -> dict:
    """The task's metrics of ``model`` (eval mode, AMP as ``train.amp``) over ``loader``, summed over ranks."""
    model.eval()
    with autocast(device, cfg["train"]["amp"]):
        return task.evaluate(model, loader, cfg, device, d)


def evaluate_on_split(cfg: dict, model: nn.Module) -> dict:
    """``model``'s metrics on the config's evaluation split (the test set, or the validation images with
    ``data.val_size``), computed by its task over the whole split."""
    check_values(cfg)
    task = get_task(cfg["task"]["name"])
    task.check(cfg)
    _, test_ds = task.build_data(cfg)
    device = torch.device(cfg["train"]["device"])
    model = model.to(device)
    if cfg["train"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return evaluate(task, model, make_loader(test_ds, cfg["train"]["eval_batch_size"], shuffle_key=None), cfg, device)


def evaluate_model(cfg: dict, model: nn.Module) -> str:
    """``model`` evaluated on the config's evaluation split with its task's metrics, as printable text."""
    return get_task(cfg["task"]["name"]).describe(evaluate_on_split(cfg, model), cfg)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle_key: int | None, d: Dist = Dist()) -> DataLoader:
    """Batches of this rank's shard; the order is a keyed permutation (the same on every rank) or in order."""
    n = len(dataset)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(shuffle_key)) if shuffle_key is not None \
        else torch.arange(n)
    return DataLoader(dataset, batch_size=batch_size, sampler=shard(order, d, even=shuffle_key is not None),
                      num_workers=0, drop_last=False)


def autocast(device: torch.device, enabled: bool):
    """Mixed precision when ``enabled``: float16 on CUDA, bfloat16 on CPU."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


def check_finite(loss: torch.Tensor, epoch: int) -> None:
    """Stop training on a NaN/inf loss with an error that says what to do (the last checkpoint is kept)."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} in epoch {epoch + 1}; training stopped, the last "
                                 "good checkpoint is kept. Lower train.lr or check the data.")


def _progress(iterable, total: int, enabled: bool, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are a nicety, never a requirement
        return iterable
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=False)


def final_report(task: Task, model: nn.Module, cfg: dict, out: Path, test: dict, log=print,
                 extra: dict | None = None) -> dict:
    """Write ``model.safetensors`` and ``report.json``: the final test metrics (whole split), DoF vs dense,
    checkpoint bytes vs dense, and where everything is; print the same."""
    checkpoint_bytes, dense_bytes = save_final_model(model, out)
    counts = count_params(model)
    split = task.eval_split(cfg)
    report = {**{f"{split}_{k}": v for k, v in test.items() if not k.startswith("_")}, "task": task.name,
              "method": cfg["method"], "dof": counts.dof, "ring": counts.ring, "free": counts.free,
              "dense_params": counts.virtual, "dof_fraction": counts.dof_fraction,
              "checkpoint_bytes": checkpoint_bytes, "dense_checkpoint_bytes": dense_bytes, "run_dir": str(out),
              **{f"machine_{k}": v for k, v in machine_record(cfg).items()}, **(extra or {})}
    write_atomic(out / "report.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))
    log(f"\n{counts}\n")
    log(task.describe(test, cfg))
    best = {k: v for k, v in report.items() if k.startswith("best_")}
    if best:
        log(", ".join(f"{k.replace('_', ' ')} over the epochs {v:.4f}" for k, v in best.items()))
    log(f"DoF {report['dof']:,} of {counts.virtual:,} dense parameters ({100 * report['dof_fraction']:.2f}%)")
    log(f"checkpoint {checkpoint_bytes:,} B vs dense {dense_bytes:,} B ({checkpoint_bytes / dense_bytes:.1%})")
    if "ddp_gradient_bytes_per_step" in report:
        log(f"DDP: {report['processes']} processes, ranks agree: {report['ranks_agree']}, gradient all-reduce "
            f"{report['ddp_gradient_bytes_per_step']:,.0f} B/step (dense model: {4 * counts.virtual:,} B)")
    log(f"logs: {out / 'metrics.csv'}, {out / 'metrics.jsonl'}; model: {out / 'model.safetensors'}; "
        f"best: {out / 'best.safetensors'}; resume state: {out / 'last.pt'}")
    return report
