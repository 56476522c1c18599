"""The ``modelring`` command: one small function per subcommand (argparse)."""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch

from .config import load_config, parse_value
from .convert import convert, materialize
from .count import count_params
from .diagnose import wiring_report
from .io import save
from .models import create_model, list_models
from .tasks import TASKS


def cmd_list_models(args) -> int:
    print("\n".join(list_models(args.pattern)))
    return 0


def cmd_count(args) -> int:
    from .models import model_info

    # a language model has no classes (its vocabulary is a builder argument)
    classes = {} if model_info(args.model).task == "lm" else {"num_classes": args.num_classes}
    model = create_model(args.model, **classes)
    if args.ring_size is not None:
        convert(model, parse_value(args.ring_size), seed=args.seed, exclude=args.exclude or None, block=args.block)
    elif args.wiring:
        raise ValueError("--wiring describes a ring: pass --ring-size too")
    print(count_params(model))
    if args.ring_size is not None:
        from .io import saved_size

        sizes = {bits: saved_size(model, ring_bits=bits) for bits in (None, 8, 4)}
        print(f"checkpoint (modelring.save): {sizes[None]:,} B with float32 rings; rings at 8 bits {sizes[8]:,} B, "
              f"at 4 bits {sizes[4]:,} B (modelring compress)")
    if args.wiring:
        print("\nwiring:\n" + "\n".join(str(r) for r in wiring_report(model)))
    return 0


def cmd_demo(args) -> int:
    """Convert a ResNet-20, show its accounting, check a training step, the checkpoint and materialize."""
    torch.manual_seed(0)
    model = convert(create_model(args.model), parse_value(args.ring_size), seed=args.seed,
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


def cmd_train(args) -> int:
    """Train from a YAML recipe with dotted overrides."""
    from .loop import fit

    cfg = load_config(args.config, args.overrides)
    fit(cfg, resume=args.resume, overwrite=args.overwrite)
    return 0


def cmd_sweep(args) -> int:
    """Train a recipe (any task) over a grid of overrides and seeds; write sweep.csv, sweep.json and summary.md."""
    from .sweep import parse_grid, run_sweep

    run_sweep(args.config, parse_grid(args.grid or []), seeds=args.seeds, overrides=args.overrides, out=args.out,
              dense=args.dense)
    print((Path(args.out) / "summary.md").read_text())
    return 0


def cmd_eval(args) -> int:
    """Evaluate a run's model (or any model file) on the test split of the run's data, with the task's metrics."""
    from .loop import evaluate_model
    from .io import load

    run_dir = Path(args.run)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml); pass the out.dir of a run")
    cfg = load_config(run_dir / "config.yaml", args.overrides)
    cfg["out"]["dir"] = str(run_dir)  # where the run is now (a moved run still finds its BPE tokenizer)
    model = load(Path(args.model) if args.model else run_dir / "best.safetensors")
    print(evaluate_model(cfg, model))
    return 0


def cmd_sample(args) -> int:
    """Print what a language-model run's model writes after a prompt (the run's tokenizer and final model)."""
    from .data.text import load_tokenizer
    from .io import load
    from .tasks.lm import generate

    run_dir = Path(args.run)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml); pass the out.dir of an lm run")
    cfg = load_config(run_dir / "config.yaml")
    if cfg["task"]["name"] != "lm":
        raise ValueError(f"{run_dir} is a {cfg['task']['name']} run; modelring sample reads language-model runs "
                         "(task.name: lm)")
    path = Path(args.model) if args.model else run_dir / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (a run writes model.safetensors when it ends); pass "
                                f"--model {run_dir / 'best.safetensors'} to sample the best model so far")
    model = load(path)
    model = materialize(model) if count_params(model).ring else model  # plain weights: no generation per token
    tokenizer = load_tokenizer(cfg["lm"]["tokenizer"], run_dir)
    prompt = tokenizer.encode(args.prompt or "\n")
    ids = generate(model, prompt, tokens=args.tokens, context=cfg["lm"]["context"], temperature=args.temperature,
                   top_k=args.top_k, seed=args.seed)
    print(tokenizer.decode(prompt + ids))
    return 0


def cmd_make_data(args) -> int:
    """Render a procedural data set in the real on-disk layout of its task (MPII JSON, 2D-3D-S folders)."""
    write = TASKS[args.task].write_synthetic
    print(write(Path(args.out), train=args.train, test=args.test, seed=args.seed, image_size=args.image_size))
    return 0


def cmd_export(args) -> int:
    """Materialize a model file into a plain one (no ring), and ONNX when ``onnx`` is installed."""
    from .io import load

    model = load(args.model)
    dense = materialize(model) if count_params(model).ring else model
    path = save(dense, args.out)
    print(f"wrote {path} ({path.stat().st_size:,} B, plain {type(dense).__name__} weights)")
    if args.onnx:
        if importlib.util.find_spec("onnx") is None:
            raise ValueError("--onnx needs the onnx package: pip install onnx onnxscript")
        dense.eval()
        example, axes, what = example_input(dense, args.input_shape)
        if not args.input_shape:
            print(f"ONNX example input {what} read from the model; pass --input-shape for another size")
        torch.onnx.export(dense, (example,), args.onnx, input_names=["input"], output_names=["output"],
                          dynamic_shapes=(axes,))
        print(f"wrote {args.onnx}: input {what} with dynamic {' and '.join(a.__name__ for a in axes.values())} axes "
              f"(weights may sit beside it in {args.onnx}.data)")
    return 0


def cmd_compress(args) -> int:
    """Prune and/or quantize the rings of a model file (post-training) and write the compact file."""
    from .io import load
    from .quantize import prune_rings, quantize_rings

    if args.bits is None and args.keep is None:
        raise ValueError("compress needs --bits (8 or 4) and/or --keep (ring entries to keep: count or fraction)")
    model, before = load(args.model), Path(args.model).stat().st_size
    reports = prune_rings(model, parse_value(args.keep)) if args.keep is not None else []
    if args.bits is not None:
        reports = quantize_rings(model, args.bits, chunk=args.chunk)
    for r in reports:
        print(f"{r['ring']}: {r['nonzero']:,} of {r['entries']:,} entries non-zero, {r['bytes']:,} B stored, "
              f"relative RMS error {r['relative_rms_error']:.4f} (max {r['max_abs_error']:.3g})")
    path = save(model, args.out)
    print(f"wrote {path}: {path.stat().st_size:,} B (was {before:,} B); evaluate it with "
          f"modelring eval RUN --model {path}")
    return 0


def _parse_shape(text: str, form: str = "C,H,W") -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise ValueError(f"--input-shape must look like {form} (positive integers, no batch), got {text!r}")
    return shape


def example_input(model: torch.nn.Module, shape_text: str | None) -> tuple[torch.Tensor, dict, str]:
    """The ONNX export's example input (a batch of 2), its dynamic axes, and how to name it.

    A language model (registry task ``lm``) takes token ids: (batch, length) int64 below its ``vocab_size``, the
    length its ``context`` (or ``--input-shape L``), dynamic up to the context. Any other model takes a float
    tensor of ``example_input_shape`` (or ``--input-shape C,H,W``) with a dynamic batch."""
    from .models import model_info

    spec = getattr(model, "modelring_model_spec", None)
    batch = torch.export.Dim("batch")
    if spec and model_info(spec["name"]).task == "lm":
        context = getattr(model, "context", model_info(spec["name"]).input_size[-1])
        shape = _parse_shape(shape_text, "L") if shape_text else (context,)
        if len(shape) != 1 or not 2 <= shape[0] <= context:
            raise ValueError(f"--input-shape of a language model is one length L, 2 <= L <= its context ({context}), "
                             f"got {shape_text!r}")
        length = shape[0]
        ids = torch.randint(0, getattr(model, "vocab_size", 256), (2, length))
        return ids, {0: batch, 1: torch.export.Dim("length", min=2, max=context)}, f"token ids (batch, {length})"
    shape = _parse_shape(shape_text) if shape_text else example_input_shape(model)
    return torch.randn(2, *shape), {0: batch}, f"(batch, {', '.join(map(str, shape))})"


def example_input_shape(model: torch.nn.Module) -> tuple[int, ...]:
    """One input's shape (no batch): the input channels of the model's first conv or linear layer, and for a conv
    the spatial size its registry entry declares (``model_info``; 32 per axis for a model from elsewhere)."""
    from .models import model_info

    spec = getattr(model, "modelring_model_spec", None)
    size = model_info(spec["name"]).input_size[1:] if spec else None
    for module in model.modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            dims = len(module.kernel_size)
            return (module.in_channels, *(size if size and len(size) == dims else [32] * dims))
        if isinstance(module, torch.nn.Linear):
            return (module.in_features,)
    raise ValueError("cannot tell the model's input shape (no conv or linear layer): pass --input-shape")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelring", description="Recurrent Parameter Generators for PyTorch.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train from a YAML recipe, e.g. configs/fmnist_resnet20_rpg.yaml",
                       description="Train the task of the recipe (task.name: classification, pose, multitask, lm). "
                                   "Overrides are dotted key=value pairs parsed as YAML, "
                                   "e.g. ring.size=0.05 train.epochs=3 data.root=/data/cifar; unknown keys "
                                   "are refused. Writes logs, last.pt, best/model.safetensors to out.dir.")
    p.add_argument("config", help="YAML recipe (see configs/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides: section.key=value")
    p.add_argument("--resume", action="store_true", help="continue from out.dir/last.pt (same config)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in out.dir and start again (without it, such a folder is refused)")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("sweep", help="train a recipe over a grid of overrides and seeds; one table of the task's "
                                     "score",
                       description="Train CONFIG (any task) for every combination of --grid values and every seed "
                                   "(runs that already have a report.json are reused, killed ones resume), then "
                                   "write OUT/sweep.csv, sweep.json and summary.md with mean ± std per setting of "
                                   "the task's selection metric on its evaluation split (e.g. top-1, PCKh, depth "
                                   "RMSE). A fit and figure against DoF: python experiments/sweep_fit.py OUT.")
    p.add_argument("config", help="YAML recipe")
    p.add_argument("overrides", nargs="*", help="dotted overrides applied to every run")
    p.add_argument("--grid", action="append", help="section.key=v1,v2,... (repeatable: the product is swept)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--dense", action="store_true", help="also train the dense model (method=dense)")
    p.add_argument("--out", required=True, help="folder for the runs and the tables")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("eval", help="evaluate a run's best model on its test split")
    p.add_argument("run", help="the run folder (out.dir of a training run)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.root=/elsewhere")
    p.add_argument("--model", help="model file to evaluate instead of RUN/best.safetensors")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("sample", help="print what a language-model run's model writes after a prompt",
                       description="Continue --prompt with the final model of an lm run (RUN/model.safetensors) "
                                   "and the run's tokenizer; the same --seed gives the same text. Invalid UTF-8 in "
                                   "what the model writes is printed as U+FFFD.")
    p.add_argument("run", help="the run folder (out.dir of an lm run)")
    p.add_argument("--prompt", default="", help="text to continue (default: a newline)")
    p.add_argument("--tokens", type=int, default=200, help="tokens to sample (bytes for a byte-level run)")
    p.add_argument("--temperature", type=float, default=0.8, help="softmax temperature; 0 picks the likeliest")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest tokens only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="model file to sample instead of RUN/model.safetensors")
    p.set_defaults(func=cmd_sample)
    p = sub.add_parser("export", help="materialize a model file to plain weights (and ONNX)")
    p.add_argument("model", help="a .safetensors file written by modelring (e.g. RUN/best.safetensors)")
    p.add_argument("out", help="output .safetensors with plain (dense) weights")
    p.add_argument("--onnx", help="also write an ONNX file here (needs the onnx package)")
    p.add_argument("--input-shape", help="C,H,W of one ONNX input (default: channels from the model's first "
                                          "layer, 32x32); the batch axis is dynamic")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("compress", help="prune and/or quantize a model file's rings (8 or 4 bits) into a smaller "
                                        "file",
                       description="Post-training compression of the rings (the paper: RPG models can themselves "
                                   "be pruned and quantized): --keep prunes each ring to its largest-magnitude "
                                   "entries (stored as a bit mask + survivors), --bits quantizes them per chunk of "
                                   "--chunk entries with one float32 scale each. modelring.load reads the file.")
    p.add_argument("model", help="a .safetensors file of a converted model (e.g. RUN/model.safetensors)")
    p.add_argument("out", help="the compressed .safetensors file to write")
    p.add_argument("--bits", type=int, choices=(8, 4), help="quantize the rings to this many bits")
    p.add_argument("--chunk", type=int, default=4096, help="entries per float32 scale (default 4096)")
    p.add_argument("--keep", help="ring entries to keep per ring: a count (5000) or a fraction (0.5)")
    p.set_defaults(func=cmd_compress)
    p = sub.add_parser("make-data", help="render a procedural data set in a real layout (pose: MPII, "
                                         "multitask: 2D-3D-S)",
                       description="Write a procedural data set in the exact on-disk layout of the real one, so "
                                   "the real reader and pipeline serve both. Deterministic for a given --seed.")
    p.add_argument("task", choices=sorted(name for name, task in TASKS.items() if task.write_synthetic))
    p.add_argument("out", help="folder to write (created; an existing non-empty folder is refused)")
    p.add_argument("--train", type=int, default=2000, help="training samples")
    p.add_argument("--test", type=int, default=500, help="test samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=128, help="side of the rendered images in pixels")
    p.set_defaults(func=cmd_make_data)
    p = sub.add_parser("list-models", help="list registered model names")
    p.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'resnet*'")
    p.set_defaults(func=cmd_list_models)
    p = sub.add_parser("count", help="DoF table of a registry model, dense or converted (no training)")
    p.add_argument("model", help="registry name (see list-models)")
    p.add_argument("--ring-size", help="entries (1234), fraction (0.05) or bytes (2MB); omit for dense")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exclude", nargs="*", help="parameter-name globs to keep free, e.g. conv1.weight 'fc.*'")
    p.add_argument("--block", type=int, default=1, help="1: element-wise wiring (default, the paper's); >1: blocks")
    p.add_argument("--wiring", action="store_true",
                   help="also describe each ring's wiring: entry use, signs, adjacency, kernels sharing entries")
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


INPUT_ERRORS = (ValueError, TypeError, OSError, FloatingPointError)  # bad configs, files, data, values


def main(argv=None) -> int:
    """Run one subcommand. An input error (bad config, file, data or value) is one line on stderr and exit code 2,
    anything else one line and exit code 1; ``--debug`` shows the traceback instead."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001 - every error becomes one clear line unless --debug
        if args.debug:
            raise
        if isinstance(err, INPUT_ERRORS):
            print(f"modelring: error: {err}", file=sys.stderr)
            return 2
        print(f"modelring: error: {type(err).__name__}: {err} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
