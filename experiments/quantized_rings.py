"""Issue 22, block 6: what quantizing and pruning the trained parameters costs, RPG rings against dense weights.

For every finished run given (its ``model.safetensors`` and ``config.yaml``), each treatment is applied to the final
model and scored once on the full test set (its task's test overrides); the file bytes come from ``modelring.save``
(RPG) or from the same per-chunk codec applied to every weight ``convert`` would generate (dense, pruned):

- ``float``: as trained;
- ``q8`` / ``q4``: symmetric per-chunk quantization (4096 entries per float32 scale) of the rings (RPG) or of the
  generated-weight tensors (dense and pruned baselines: the same codec, tensor by tensor);
- ``keep 50%``: magnitude pruning of half the ring entries (RPG) or of half the weights RPG would generate
  (dense), then ``keep 50% + q8``.

The plan (arms, reading, what is compared) is in docs/results/quantized_rings/plan.md. Runs are read, never
trained; results are written after every run (resumable: finished runs are kept in the JSON).

    python experiments/quantized_rings.py RUN_DIR [RUN_DIR ...] [--out docs/results/quantized_rings]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from results_table import machine, pyplot, save_figure, write_markdown
from validation import test_overrides

from modelring.config import load_config
from modelring.io import load, saved_size
from modelring.loop import evaluate_on_split
from modelring.plan import select_targets
from modelring.prune import global_magnitude_masks
from modelring.quantize import (DEFAULT_CHUNK, RingEncoding, decode_ring, encode_ring, encoded_ring_bytes,
                                prune_rings, quantize_rings)

TREATMENTS = ("float", "q8", "q4", "keep 50%", "keep 50% + q8")


def _generated(model, cfg) -> dict[str, torch.Tensor]:
    """The weights RPG would generate in a dense model (the ring section's include/exclude)."""
    rc = cfg["ring"]
    return {n: p for n, (p, _) in select_targets(model, include=rc["include"], exclude=rc["exclude"] or None).items()}


@torch.no_grad()
def _dense_treatment(model, cfg, treatment: str) -> int:
    """Apply ``treatment`` to a dense model's generated weights in place; returns the file bytes it saves."""
    weights = _generated(model, cfg)
    float_bytes = sum(4 * w.numel() for w in weights.values())
    if treatment.startswith("keep"):
        total = sum(w.numel() for w in weights.values())
        masks = global_magnitude_masks(weights, total // 2)
        for name, w in weights.items():
            w.mul_(masks[name])
    bits = 8 if treatment.endswith("q8") else 4 if treatment == "q4" else None
    sparse = treatment.startswith("keep")
    encoding = RingEncoding(bits=bits, chunk=DEFAULT_CHUNK, sparse=sparse) if bits or sparse else None
    stored = 0
    for w in weights.values():  # each weight tensor through the rings' own codec, as a ring would be stored
        stored += encoded_ring_bytes(w.numel(), int((w != 0).sum()), encoding)  # survivors before rounding
        if bits is not None:
            w.copy_(decode_ring(encode_ring(w, encoding), encoding, w.numel()).view(w.shape))
    return float_bytes - stored


def score(run: Path, treatment: str) -> dict:
    """Test top-1 and file bytes of the run's final model under ``treatment``."""
    cfg = load_config(run / "config.yaml", [*test_overrides(run), "train.progress=false"])
    model = load(run / "model.safetensors")
    rings = getattr(model, "modelring", None) is not None
    if rings:
        if treatment.startswith("keep"):
            prune_rings(model, 0.5)
        if treatment.endswith("q8") or treatment == "q4":
            quantize_rings(model, 8 if treatment.endswith("q8") else 4)
        nbytes = saved_size(model)
    else:
        nbytes = saved_size(model) - _dense_treatment(model, cfg, treatment)
    metrics = evaluate_on_split(cfg, model)
    return {"run": run.name, "method": cfg["method"], "treatment": treatment, "test_top1": metrics["top1"],
            "bytes": nbytes}


def figure(rows: list[dict], out: Path) -> list[str]:
    """quantized_rings.png: per model, each treatment's test top-1 change against the untreated model (left) and its
    file bytes against the untreated file (right). One bar per model: no intervals until every seed of block 2 is in."""
    plt = pyplot()
    if plt is None:
        return []
    runs = list(dict.fromkeys(r["run"] for r in rows))
    base = {r["run"]: r for r in rows if r["treatment"] == "float"}
    treated = [t for t in TREATMENTS if t != "float"]
    fig, (acc, size) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        got = {r["treatment"]: r for r in rows if r["run"] == run}
        xs = [k + i * width for k in range(len(treated))]
        acc.bar(xs, [got[t]["test_top1"] - base[run]["test_top1"] for t in treated], width, label=run)
        size.bar(xs, [got[t]["bytes"] / base[run]["bytes"] for t in treated], width, label=run)
    for ax, ylabel in ((acc, "test top-1 change vs untreated (10,000 images)"), (size, "file bytes / untreated file")):
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(treated))], treated, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    acc.axhline(0, color="black", linewidth=0.8)
    size.legend(fontsize=7)
    fig.suptitle("Can RPG models themselves be quantized and pruned? (one model per bar: no intervals)", fontsize=10)
    save_figure(fig, out / "quantized_rings.png")
    return ["", "![test top-1 change and file bytes per treatment](quantized_rings.png)"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/results/quantized_rings"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "quantized_rings.json"
    rows = json.loads(path.read_text()) if path.is_file() else []
    done = {(r["run"], r["treatment"]) for r in rows}
    for run in args.runs:
        for treatment in TREATMENTS:
            if (run.name, treatment) not in done:
                rows.append(score(run, treatment))
                path.write_text(json.dumps(rows, indent=1))  # small file; rewritten whole after every score
    base = {r["run"]: r for r in rows if r["treatment"] == "float"}
    lines = ["# Quantized and pruned parameters: test top-1 and file bytes (issue 22, block 6)", "",
             f"Command: `python experiments/quantized_rings.py {' '.join(str(r) for r in args.runs)}`  ",
             f"Machine: {machine()}.", "",
             "| run | method | treatment | test top-1 | change vs float | file bytes | bytes vs float |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        b = base[r["run"]]
        lines.append(f"| {r['run']} | {r['method']} | {r['treatment']} | {r['test_top1']:.4f} | "
                     f"{r['test_top1'] - b['test_top1']:+.4f} | {r['bytes']:,} | {r['bytes'] / b['bytes']:.3f} |")
    lines += figure(rows, args.out)
    write_markdown(args.out / "README.md", lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
