"""The ``modelring`` command: one small function per subcommand (argparse)."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from .convert import convert, materialize
from .count import count_params
from .io import save
from .models import create_model, list_models


def _ring_size(text: str):
    """CLI ring size: '1234' entries, '0.05' fraction, '2MB' bytes."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def cmd_list_models(args) -> int:
    print("\n".join(list_models(args.pattern)))
    return 0


def cmd_count(args) -> int:
    model = create_model(args.model, num_classes=args.num_classes)
    if args.ring_size is not None:
        convert(model, _ring_size(args.ring_size), seed=args.seed, exclude=args.exclude or None)
    print(count_params(model))
    return 0


def cmd_demo(args) -> int:
    """Convert a ResNet-20, show its accounting, check a training step, the checkpoint and materialize."""
    torch.manual_seed(0)
    model = convert(create_model(args.model), _ring_size(args.ring_size), seed=args.seed,
                    exclude=args.exclude or None)
    counts = count_params(model)
    print(counts)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(args.steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"\n{args.steps} SGD steps on one random batch: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        rpg_file = save(model, Path(tmp) / "rpg.safetensors").stat().st_size
        dense = materialize(model)
        dense_file = save(dense, Path(tmp) / "dense.safetensors").stat().st_size
    model.eval(), dense.eval()
    with torch.no_grad():
        same = torch.equal(model(x), dense(x))
    print(f"checkpoint {rpg_file:,} B vs dense {dense_file:,} B ({rpg_file / dense_file:.1%}); "
          f"materialized model gives {'identical' if same else 'DIFFERENT'} outputs")
    return 0 if same else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelring", description="Recurrent Parameter Generators for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list-models", help="list registered model names")
    p.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'resnet*'")
    p.set_defaults(func=cmd_list_models)
    p = sub.add_parser("count", help="DoF table of a registry model, dense or converted (no training)")
    p.add_argument("model", help="registry name (see list-models)")
    p.add_argument("--ring-size", help="entries (1234), fraction (0.05) or bytes (2MB); omit for dense")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exclude", nargs="*", help="parameter-name globs to keep free, e.g. conv1.weight 'fc.*'")
    p.set_defaults(func=cmd_count)
    p = sub.add_parser("demo", help="convert + count + a few training steps + checkpoint vs dense")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--ring-size", default="0.05")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--exclude", nargs="*", default=["conv1.weight", "fc.*"],
                   help="parameter-name globs to keep free (default: stem conv and classifier, as in the paper)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"modelring: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
