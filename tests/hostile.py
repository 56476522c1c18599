"""A corpus of hostile inputs: one generator per family (configs, model files, training checkpoints, data folders,
API calls), each case with the outcome modelring must give it.

Outcomes: ``clear error`` (an input error, ValueError / TypeError / OSError / RuntimeError / FloatingPointError,
whose message matches ``expect``; through the CLI: exit code 2 and one line ``modelring: error: ...``), or
``handled`` (the input is legitimate or harmless and ``check`` asserts the correct result).
``tests/test_hostile.py`` runs every case and checks that no earlier run's files changed; ``docs/bad_inputs.md`` is
written from this corpus (``python tests/hostile.py``), and a test asserts it is up to date, so the table and the
tests cannot disagree.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RECIPE = str(HERE.parent / "configs" / "fmnist_resnet20_rpg.yaml")
DOC = HERE.parent / "docs" / "bad_inputs.md"
TINY = ["model.name=resnet8", "model.kwargs={width: 4}", "data.pad_to=32", "train.epochs=1", "train.progress=false",
        "out.tensorboard=false", "train.batch_size=64"]


@dataclass
class Case:
    family: str
    what: str  # the bad input, for the table
    run: Callable  # (ctx) -> result; raises for an error, or returns (rc, stderr) from the CLI
    expect: str = ""  # regex the error message must match (clear error)
    outcome: str = "clear error"
    check: Callable | None = None  # (result, ctx) -> None asserts the handling (handled)
    touches_run: bool = False  # writes into ctx.run (a finished run): its files must not change
    planted: tuple[str, ...] = ()  # files of ctx.run the case itself replaces (excluded from that check)


def cli(*args: str) -> tuple[int, str]:
    """Run the ``modelring`` command in this process; (exit code, stderr)."""
    from modelring.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, err.getvalue()


def train(ctx, *overrides: str, resume: bool = False, out=None) -> tuple[int, str]:
    out = ctx.run if out is None else out
    return cli("train", RECIPE, f"data.root={ctx.data}", f"out.dir={out}", *TINY, *overrides,
               *(["--resume"] if resume else []))


# ---------------------------------------------------------------- configs
def _bad_value(key: str, rule) -> tuple[str, str] | None:
    """A value the schema must refuse for ``key`` (as override text), and the phrase of the refusal."""
    kinds = set(rule.kinds)
    if rule.choices is not None:
        return "bogus", "expected one of"
    if kinds == {"bool"}:
        return "maybe", "expected true/false"
    if key in ("ring.size", "prune.keep"):
        return "-3", "must be >= 1"
    if "number" in kinds:
        return ".nan", r"nan: expected"
    if "int" in kinds:
        return ("0" if (rule.low or 0) >= 1 else "-1"), "expected"
    if kinds & {"list"}:
        return "{a: 1}", "expected a list"
    if kinds == {"dict"}:
        return "3", "expected a mapping"
    if "str" in kinds:
        return "[1, 2]", "expected"
    return None


def config_cases() -> list[Case]:
    from modelring.config import SCHEMA

    cases = []
    for key, rule in SCHEMA.items():
        bad = _bad_value(key, rule)
        if bad is None:
            continue
        text, phrase = bad
        cases.append(Case("config", f"`{key}={text}`", lambda ctx, k=key, t=text: train(ctx, f"{k}={t}"),
                          expect=re.escape(key) + ".*" + phrase, touches_run=True))
    hand = [
        ("`trian.epochs=1` (unknown section)", ["trian.epochs=1"], "unknown key 'trian'; did you mean train"),
        ("`train.epohcs=1` (typo)", ["train.epohcs=1"], "did you mean epochs"),
        ("`train=3` (a section set to a value)", ["train=3"], "is a section"),
        ("`train.epochs` without `=`", ["train.epochs"], "must look like section.key=value"),
        ("`train.epochs=[1` (unparsable)", ["train.epochs=[1"], "cannot parse the value"),
        ("nested YAML aliases in `model.kwargs` (billion laughs)",
         ["model.kwargs={a: &a [1, 1], b: [*a, *a]}"], "aliases .* are not allowed"),
        ("`train.device=cuda` on a CPU build" if not torch.cuda.is_available() else "`train.device=tpu`",
         ["train.device=cuda" if not torch.cuda.is_available() else "train.device=tpu"], "train.device="),
        ("`train.device=gpu0`", ["train.device=gpu0"], "expected cpu, cuda"),
        ("`ring.size=2 GBx` (unreadable byte size)", ["ring.size=2 GBx"], "byte budget such as"),
        ("`ring.size=1.5` (a fraction above 1)", ["ring.size=1.5"], r"in \(0, 1\]"),
        ("`pose.heatmap_size` larger than `pose.input_size`", ["pose.heatmap_size=128"], "must not exceed"),
        ("12 bad values at once", ["train.lr=.nan", "train.epochs=1.5", "train.batch_size=0", "data.train_limit=-5",
                                   "train.decay_epochs=0", "train.label_smoothing=2", "train.threads=-1",
                                   "method=pruning", "ring.scale=kaiming", "ring.size=-3", "train.schedule=linear",
                                   "train.momentum=1"], r"invalid config \(12 problems\)"),
        ("`method=cpm`", ["method=cpm"], "method='cpm': expected one of dense"),
        ("`task.name=detection`", ["task.name=detection"], "task.name must be one of classification"),
        ("`model.name=resnet21`", ["model.name=resnet21"], "unknown model 'resnet21'.*Did you mean"),
        ("`model.kwargs.num_classes=3` on 10-class data", ["model.kwargs.num_classes=3"], "has 10; drop"),
        ("`data.name=svhn`", ["data.name=svhn"], "unknown classification data set 'svhn'"),
        ("`data.name=mpii` for classification", ["data.name=mpii"], "it is a pose data set"),
        ("`ring.size=5` meaning 5% (ResNet-20)", ["ring.size=5", "model.name=resnet20", "model.kwargs={}"],
         "pass 0.05"),
        ("`ring.size=2MB` on ResNet-20 (270k weights)", ["ring.size=2MB", "model.name=resnet20", "model.kwargs={}"],
         "would never be read"),
        ("`ring.exclude=[fcc.*]` (a typo in a glob)", ["ring.exclude=[fcc.*]"], "match no parameter"),
        ("`ring.rings=per_block`", ["ring.rings=per_block"],
         "ring.rings='per_block': expected null, per_stage, per_layer or a mapping"),
        ("`data.val_size=0.0`", ["data.val_size=0.0"], r"data.val_size=0.0: expected"),
        ("`data.val_size=100000` (more than the training set)", ["data.val_size=100000"], "data.val_size must be"),
    ]
    for what, items, expect in hand:
        fresh = what.startswith(("`ring.size=5`", "`ring.size=2MB`", "`ring.exclude", "`ring.rings",
                                 "`model.", "`data.name", "`task.", "`data.val_size=1"))
        cases.append(Case("config", what, lambda ctx, i=items, f=fresh: train(ctx, *i, out=ctx.tmp / "fresh" if f
                                                                                else None),
                          expect=expect, touches_run=not fresh))
    cases.append(Case("config", "a recipe that does not exist", lambda ctx: cli("train", ctx.tmp / "none.yaml"),
                      expect="no config file at"))
    cases.append(Case("config", "a recipe that is not YAML", lambda ctx: cli("train", _write(ctx.tmp / "r.yaml",
                                                                                             "a: [1, 2")),
                      expect="is not valid YAML"))
    cases.append(Case("config", "a recipe that is a list", lambda ctx: cli("train", _write(ctx.tmp / "l.yaml", "- 1")),
                      expect="must hold a mapping of sections"))
    cases.append(Case("config", "`ring.size=1e-2` (YAML 1.1 reads it as text)", outcome="handled",
                      run=lambda ctx: __import__("modelring.config", fromlist=["x"]).load_config(None, ["ring.size=1e-2"]),
                      check=lambda cfg, ctx: _assert(_problems(cfg) == [] and cfg["ring"]["size"] == 0.01)))
    cases.append(Case("config", "`ring.enabled: false` (a key of an earlier release)", outcome="handled",
                      run=lambda ctx: __import__("modelring.config", fromlist=["x"]).load_config(None,
                                                                                         ["ring.enabled=false"]),
                      check=lambda cfg, ctx: _assert(cfg["method"] == "dense" and "enabled" not in cfg["ring"])))
    return cases


def _problems(cfg):
    from modelring.config import config_problems

    return config_problems(cfg)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _assert(condition: bool, message: str = "") -> None:
    if not condition:
        raise AssertionError(message or "the input was not handled correctly")


# ---------------------------------------------------------------- model files
def _saved(ctx) -> Path:
    import modelring as mr

    torch.manual_seed(0)
    model = mr.convert(mr.create_model("resnet20", num_classes=7), 0.05, seed=3)
    return mr.save(model, ctx.tmp / "m.safetensors")


def _edit_file(ctx, spec_edit=None, model=None, tensors=None, raw_spec=None) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = _saved(ctx)
    with safe_open(str(path), framework="pt") as f:
        meta, stored = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    if spec_edit is not None:
        spec = json.loads(meta["spec"])
        spec_edit(spec)
        meta["spec"] = json.dumps(spec)
    if raw_spec is not None:
        meta["spec"] = raw_spec
    if model is not None:
        meta["model"] = json.dumps(model)
    stored.update(tensors(stored) if tensors else {})
    save_file(stored, str(path), metadata=meta)
    return path


def _load(path):
    import modelring as mr

    return mr.load(path)


class _Payload:
    """Unpickling it would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _pickle_file(ctx, name: str) -> Path:
    path = ctx.tmp / name
    torch.save(_Payload(ctx.tmp / "pwned"), path)
    return path


def _fifo(ctx, name: str) -> Path:
    path = ctx.tmp / name
    os.mkfifo(path)
    return path


def model_file_cases() -> list[Case]:
    ring = "modelring_ring0"
    seg = lambda s: s["rings"][0]["segments"]  # noqa: E731
    specs = [
        ("ring size 0 in the spec", lambda s: s["rings"][0].update(size=0), "size=0 is out of range"),
        ("block 10^12 in the spec", lambda s: s["rings"][0].update(block=10 ** 12), "block=.* is out of range"),
        ("a duplicated segment", lambda s: seg(s).append(dict(seg(s)[0])), "appears twice"),
        ("a negative segment shape", lambda s: seg(s)[0].update(shape=[-3, 3]), "positive shape"),
        ("an unknown sampling", lambda s: s["rings"][0].update(sampling="random"), "sampling='random'"),
        ("two rings with one name", lambda s: s["rings"].append(dict(s["rings"][0])), "share a name"),
        ("segments deleted", lambda s: s["rings"][0].pop("segments"), "unreadable modelring spec"),
        ("a wiring version from the future", lambda s: s["rings"][0].update(wiring_version=99),
         "wiring version 99.*install the modelring release"),
        ("a seed of -1", lambda s: s["rings"][0].update(seed=-1), "seed=-1 is out of range"),
        ("an infinite layer scale", lambda s: seg(s)[0].update(scale=float("inf")), "finite scale"),
    ]
    cases = [Case("model file", f"`mr.load`: {what}", lambda ctx, e=edit: _load(_edit_file(ctx, spec_edit=e)),
                  expect=expect) for what, edit, expect in specs]
    cases += [
        Case("model file", "`mr.load`: a NaN in the ring", lambda ctx: _load(_edit_file(
            ctx, tensors=lambda t: {ring: t[ring].clone().index_fill_(0, torch.tensor([3]), float("nan"))})),
            expect="hold NaN or Inf"),
        Case("model file", "`mr.load`: the ring's bytes relabelled int32", lambda ctx: _load(_edit_file(
            ctx, tensors=lambda t: {ring: t[ring].view(torch.int32)})), expect="needs a floating-point vector"),
        Case("model file", "`mr.load`: a ring of the wrong length", lambda ctx: _load(_edit_file(
            ctx, tensors=lambda t: {ring: t[ring][:-1].clone()})), expect="needs a floating-point vector"),
        Case("model file", "`mr.load`: metadata declaring `num_classes=10**7` (2.8 GB) in a small file",
             lambda ctx: _load(_edit_file(ctx, model={"name": "resnet20", "kwargs": {"num_classes": 10 ** 7}})),
             expect="does not fit this model"),
        Case("model file", "`mr.load`: metadata with an option the builder lacks",
             lambda ctx: _load(_edit_file(ctx, model={"name": "resnet20", "kwargs": {"depth": 9}})),
             expect="cannot be built"),
        Case("model file", "`mr.load`: metadata naming an unknown model",
             lambda ctx: _load(_edit_file(ctx, model={"name": "resnet21", "kwargs": {}})), expect="cannot be built"),
        Case("model file", "`mr.load`: 200,000-deep JSON metadata",
             lambda ctx: _load(_edit_file(ctx, raw_spec="[" * 200_000 + "]" * 200_000)), expect="not readable JSON"),
        Case("model file", "`mr.load`: a missing file", lambda ctx: _load(ctx.tmp / "nothing.safetensors"),
             expect="no model file at"),
        Case("model file", "`mr.load`: random bytes", lambda ctx: _load(_write_bytes(ctx.tmp / "r.safetensors",
                                                                                        os.urandom(300))),
             expect="not a readable safetensors file"),
        Case("model file", "`mr.load`: a truncated file", lambda ctx: _load(_write_bytes(
            ctx.tmp / "t.safetensors", _saved(ctx).read_bytes()[:500])), expect="not a readable safetensors file"),
        Case("model file", "`mr.load`: a safetensors file not written by modelring", lambda ctx: _load(_foreign(ctx)),
             expect="not a modelring model file"),
        Case("model file", "`mr.load`: a pickle with a code-running payload named .safetensors",
             lambda ctx: _load(_pickle_file(ctx, "p.safetensors")), expect="not a readable safetensors file",
             check=None),
        Case("model file", "`mr.load`: a FIFO", lambda ctx: _load(_fifo(ctx, "f.safetensors")),
             expect="not a regular file"),
        Case("model file", "`mr.load`: a folder", lambda ctx: _load(ctx.tmp), expect="not a regular file"),
        Case("model file", "`mr.load(path, model=m)` with m of another architecture (m unchanged)",
             lambda ctx: _load_into_other(ctx), expect="does not fit this model"),
        Case("model file", "`modelring eval` of a folder that is not a run", lambda ctx: cli("eval", ctx.tmp),
             expect="is not a run folder"),
        Case("model file", "`modelring export` of a missing file", lambda ctx: cli("export", ctx.tmp / "x", ctx.tmp / "y"),
             expect="no model file at"),
        Case("model file", "`modelring export --input-shape 3,-1,32`", lambda ctx: cli(
            "export", _saved(ctx), ctx.tmp / "d.safetensors", "--onnx", ctx.tmp / "m.onnx", "--input-shape", "3,-1,32"),
            expect="must look like C,H,W|needs the onnx package"),
    ]
    return cases


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _foreign(ctx) -> Path:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(ctx.tmp / "foreign.safetensors"))
    return ctx.tmp / "foreign.safetensors"


def _load_into_other(ctx):
    import modelring as mr

    target = mr.create_model("resnet8", num_classes=7)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    try:
        mr.load(_saved(ctx), model=target)
    finally:
        _assert(not mr.is_converted(target) and all(torch.equal(before[k], v) for k, v in target.state_dict().items()),
                "the given model changed")


# ---------------------------------------------------------------- training checkpoints (--resume)
def _resume_with(ctx, make) -> tuple[int, str]:
    make(ctx.run / "last.pt")
    return train(ctx, resume=True)


def _damaged(edit):
    def make(path: Path):
        state = torch.load(path, weights_only=True)
        edit(state)
        torch.save(state, path)
    return make


def checkpoint_cases() -> list[Case]:
    def replace(data):
        return lambda path: (path.unlink(), path.write_bytes(data))

    def fifo(path):
        path.unlink()
        os.mkfifo(path)

    def payload(path):
        torch.save(_Payload(path.parent / "pwned"), path)

    items = [
        ("garbage bytes", replace(b"garbage"), "not a readable modelring checkpoint"),
        ("a truncated file", lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3]),
         "not a readable modelring checkpoint"),
        ("a FIFO (used to hang `--resume`)", fifo, "not a regular file"),
        ("a code-running pickle payload", payload, "not a readable modelring checkpoint"),
        ("epoch -5", _damaged(lambda s: s.update(epoch=-5)), "epoch -5 is negative"),
        ("no `config`", _damaged(lambda s: s.pop("config")), "'config' is missing"),
        ("a 3-byte RNG state", _damaged(lambda s: s.update(torch_rng=torch.zeros(3, dtype=torch.uint8))),
         "random-generator state has the wrong size"),
        ("`model` that is not a dict", _damaged(lambda s: s.update(model=[1, 2])), "'model' is missing or not a dict"),
        ("a config of another run (ring size changed)", _damaged(lambda s: s["config"]["ring"].update(size=0.3)),
         r"cannot resume with a different config .*ring.size: 0.3 -> 0.05"),
        ("a list instead of a dict", lambda p: torch.save([1, 2, 3], p), "holds a list, not a dict"),
    ]
    cases = [Case("checkpoint", f"`--resume` with `last.pt` = {what}", lambda ctx, m=make: _resume_with(ctx, m),
                  expect=expect, touches_run=True, planted=("last.pt",)) for what, make, expect in items]
    cases.append(Case("checkpoint", "`train` into a finished run without `--resume` / `--overwrite`",
                      lambda ctx: train(ctx), expect="already holds a run.*--resume.*--overwrite", touches_run=True))
    cases.append(Case("checkpoint", "`--resume` and `--overwrite` together",
                      lambda ctx: cli("train", RECIPE, f"data.root={ctx.data}", f"out.dir={ctx.run}", *TINY,
                                      "--resume", "--overwrite"), expect="pass one of them", touches_run=True))
    cases.append(Case("checkpoint", "`out.dir` that is a file",
                      lambda ctx: train(ctx, out=_write(ctx.tmp / "file", "x")), expect="is a file, not a folder"))
    cases.append(Case("checkpoint", "a finished run resumed (nothing left to train)", outcome="handled",
                      run=lambda ctx: train(ctx, resume=True), touches_run=True,
                      check=lambda r, ctx: _assert(r[0] == 0)))
    return cases


# ---------------------------------------------------------------- data folders
def _idx(path: Path, array, gz: bool = False) -> Path:
    from modelring.data import write_idx

    return write_idx(path.with_name(path.name + (".gz" if gz else "")), np.asarray(array))


def _mnist_root(ctx, images=None, labels=None, test_images=None) -> Path:
    root = ctx.tmp / "mnist"
    root.mkdir(exist_ok=True)
    n = 8
    _idx(root / "train-images-idx3-ubyte", images if images is not None else np.zeros((n, 28, 28), np.uint8))
    _idx(root / "train-labels-idx1-ubyte", labels if labels is not None else np.arange(n, dtype=np.uint8) % 10)
    _idx(root / "t10k-images-idx3-ubyte", test_images if test_images is not None else np.zeros((4, 28, 28), np.uint8))
    _idx(root / "t10k-labels-idx1-ubyte", np.arange(4, dtype=np.uint8))
    return root


def _classification_data(root: Path, name: str = "mnist", **extra):
    from modelring.config import load_config
    from modelring.tasks import get_task

    cfg = load_config(None, [f"data.root={root}", f"data.name={name}", "data.image_size=16",
                             *[f"{k}={v}" for k, v in extra.items()]])
    return get_task("classification").build_data(cfg)


def _gz_bomb(ctx) -> Path:
    root = _mnist_root(ctx)
    (root / "train-images-idx3-ubyte").unlink()
    header = bytes([0, 0, 0x08, 3]) + b"".join(d.to_bytes(4, "big") for d in (60000, 2000, 2000))
    with gzip.open(root / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + bytes(1000))
    return root


def _gz_overflow(ctx) -> Path:
    """A label file whose header declares 8 labels but whose stream inflates to 64 MB more: reading must stop at
    the declared size (it used to inflate everything before checking)."""
    root = _mnist_root(ctx)
    (root / "train-labels-idx1-ubyte").unlink()
    with gzip.open(root / "train-labels-idx1-ubyte.gz", "wb", compresslevel=1) as f:
        f.write(bytes([0, 0, 0x08, 1]) + (8).to_bytes(4, "big") + bytes(range(8)))
        chunk = bytes(1 << 20)
        for _ in range(64):
            f.write(chunk)
    return root


def _corrupt_gz(ctx) -> Path:
    root = _mnist_root(ctx)
    path = root / "train-labels-idx1-ubyte"
    data = gzip.compress(path.read_bytes() + bytes(4000))
    path.unlink()
    damaged = bytearray(data)
    damaged[20:40] = bytes(20)
    (root / "train-labels-idx1-ubyte.gz").write_bytes(bytes(damaged))
    return root


def _image_tree(ctx, splits: dict[str, tuple[str, ...]], image=None) -> Path:
    from PIL import Image

    root = ctx.tmp / "imagefolder"
    for split, classes in splits.items():
        for cls in classes:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image if image is not None else np.full((8, 8, 3), 99, np.uint8)).save(
                root / split / cls / "0.png")
    return root


def _mpii_root(ctx, entries: list[dict], image_size=(100, 90)) -> Path:
    from PIL import Image

    root = ctx.tmp / "mpii"
    (root / "annot").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    (root / "annot" / "valid.json").write_text(json.dumps(entries))
    for e in entries:
        if isinstance(e.get("image"), str) and "/" not in e["image"] and "\\" not in e["image"]:
            Image.new("RGB", image_size).save(root / "images" / e["image"])
    return root


def _person(**changes) -> dict:
    joints = [[31 + 2 * j, 21 + 3 * j] for j in range(16)]
    person = {"image": "a.png", "center": [42.0, 47.0], "scale": 0.3, "joints": joints, "joints_vis": [1] * 16}
    person.update(changes)
    return person


def _mpii(ctx, entries):
    from modelring.data import MPIIDataset

    return MPIIDataset(_mpii_root(ctx, entries), "valid")


def data_cases() -> list[Case]:
    from modelring.data import cifar, decode_image, image_folder, mnist

    cases = [
        Case("data (IDX)", "a missing MNIST folder", lambda ctx: mnist(ctx.tmp / "none", train=True),
             expect="not found; get MNIST"),
        Case("data (IDX)", "bad magic number", lambda ctx: mnist(_with(ctx, _mnist_root(ctx),
                                                                      "train-images-idx3-ubyte", b"\x01\x02\x03\x04"),
                                                                  train=True), expect="not an IDX file"),
        Case("data (IDX)", "a truncated image file", lambda ctx: mnist(_truncate(_mnist_root(ctx) /
                                                                                 "train-images-idx3-ubyte"), train=True),
             expect="truncated or corrupt"),
        Case("data (IDX)", "trailing bytes after the payload", lambda ctx: mnist(_append(_mnist_root(ctx) /
                                                                                         "train-labels-idx1-ubyte"),
                                                                                  train=True),
             expect="holds more payload bytes"),
        Case("data (IDX)", "a 2 kB .gz whose header declares 240 GB", lambda ctx: mnist(_gz_bomb(ctx), train=True),
             expect="more than the file can hold"),
        Case("data (IDX)", "a .gz inflating 64 MB past the size its header declares",
             lambda ctx: mnist(_gz_overflow(ctx), train=True), expect="holds more payload bytes"),
        Case("data (IDX)", "a corrupt deflate stream", lambda ctx: mnist(_corrupt_gz(ctx), train=True),
             expect="cannot be read|truncated or corrupt"),
        Case("data (IDX)", "0x0 images", lambda ctx: mnist(_mnist_root(ctx, images=np.zeros((8, 0, 0), np.uint8)),
                                                          train=True), expect="at least 8x8"),
        Case("data (IDX)", "1x1 images", lambda ctx: mnist(_mnist_root(ctx, images=np.zeros((8, 1, 1), np.uint8)),
                                                          train=True), expect="at least 8x8"),
        Case("data (IDX)", "label 12", lambda ctx: mnist(_mnist_root(ctx, labels=np.full(8, 12, np.uint8)),
                                                        train=True), expect="MNIST labels are 0..9"),
        Case("data (IDX)", "fewer labels than images", lambda ctx: mnist(_mnist_root(ctx, labels=np.zeros(5, np.uint8)),
                                                                        train=True), expect="must hold 8 uint8 labels"),
        Case("data (IDX)", "int32 images", lambda ctx: mnist(_mnist_root(ctx, images=np.zeros((8, 28, 28), np.int32)),
                                                            train=True), expect="must hold uint8 images"),
        Case("data (IDX)", "train 28x28 but test 20x20", lambda ctx: _classification_data(
            _mnist_root(ctx, test_images=np.zeros((4, 20, 20), np.uint8))), expect="do not belong together"),
        Case("data (ImageFolder)", "no class folders", lambda ctx: image_folder(_mkdir(ctx.tmp / "empty")),
             expect="no class folders"),
        Case("data (ImageFolder)", "a class folder without images", lambda ctx: image_folder(_mkdir(
            _image_tree(ctx, {"train": ("a",)}) / "train" / "b").parent), expect="hold no images"),
        Case("data (ImageFolder)", "an undecodable image", lambda ctx: decode_image(_write(ctx.tmp / "x.png", "no")),
             expect="cannot be decoded"),
        Case("data (ImageFolder)", "val lacks one of train's classes", lambda ctx: _classification_data(
            _image_tree(ctx, {"train": ("a", "b", "c"), "val": ("a", "c")}), "imagefolder"),
            expect=r"missing from test: \['b'\]"),
        Case("data (ImageFolder)", "val has a class train lacks", lambda ctx: _classification_data(
            _image_tree(ctx, {"train": ("a", "b"), "val": ("a", "b", "z")}), "imagefolder"),
            expect=r"not in training: \['z'\]"),
        Case("data (ImageFolder)", "a hidden `train/.ipynb_checkpoints/`", outcome="handled",
             run=lambda ctx: image_folder(_mkdir(_image_tree(ctx, {"train": ("a", "b")}) / "train" /
                                                 ".ipynb_checkpoints").parent),
             check=lambda ds, ctx: _assert(ds.classes == ["a", "b"])),
        Case("data (ImageFolder)", "a symlink loop", lambda ctx: image_folder(_loop(_image_tree(ctx, {"train": ("a",)})
                                                                                  / "train")),
             expect="reached twice"),
        Case("data (ImageFolder)", "a 16-bit PNG (0..63,819 gradient)", outcome="handled",
             run=lambda ctx: decode_image(_png16(ctx)),
             check=lambda img, ctx: _assert(int(img.max()) == 248 and int((img == 255).sum()) == 0)),
        Case("data (ImageFolder)", "a float TIFF", lambda ctx: decode_image(_float_tiff(ctx)),
             expect="floating-point image"),
        Case("data (ImageFolder)", "a 32-bit integer image", lambda ctx: decode_image(_int32_png(ctx)),
             expect="32-bit integer image|floating-point image"),
        Case("data (ImageFolder)", "a decompression bomb (225 Mpx)", lambda ctx: decode_image(_bomb(ctx)),
             expect="too large|decompression bomb"),
        Case("data (CIFAR)", "a batch with a code-running pickle payload",
             lambda ctx: cifar(_cifar_with(ctx, _Payload(ctx.tmp / "pwned")), train=False),
             expect="refused to load|not a readable pickle"),
        Case("data (CIFAR)", "a truncated batch", lambda ctx: cifar(_cifar_with(ctx, None, truncate=True), train=False),
             expect="not a readable pickle"),
        Case("data (CIFAR)", "a batch of the wrong shape",
             lambda ctx: cifar(_cifar_with(ctx, {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
                               train=False), expect=r"shape \(N, 3072\)"),
        Case("data (MPII)", "image path `../annot/valid.json`", lambda ctx: _mpii(ctx, [_person(image="../annot/valid.json")]),
             expect="must be a path inside root/images"),
        Case("data (MPII)", "image path `/etc/hostname`", lambda ctx: _mpii(ctx, [_person(image="/etc/hostname")]),
             expect="must be a path inside root/images"),
        Case("data (MPII)", "a person whose centre is outside the image", outcome="handled",
             run=lambda ctx: _mpii_quiet(ctx, [_person(), _person(image="b.png", center=[500.0, 500.0])]),
             check=lambda ds, ctx: _assert(len(ds) == 1 and ds.skipped == 1)),
        Case("data (MPII)", "a person whose joints are all outside the image", outcome="handled",
             run=lambda ctx: _mpii_quiet(ctx, [_person(), _person(image="c.png", joints=[[900, 900]] * 16)]),
             check=lambda ds, ctx: _assert(len(ds) == 1 and ds.skipped == 1)),
        Case("data (MPII)", "no `head_size` and an unannotated head top", outcome="handled",
             run=lambda ctx: _mpii(ctx, [_person(joints_vis=[1] * 9 + [0] + [1] * 6)]),
             check=lambda ds, ctx: _assert(np.isnan(ds.records[0]["head_size"]))),
        Case("data (MPII)", "15 joints", lambda ctx: _mpii(ctx, [_person(joints=[[1, 1]] * 15)]),
             expect="joints must be 16"),
        Case("data (MPII)", "scale 0", lambda ctx: _mpii(ctx, [_person(scale=0)]), expect="scale must be > 0"),
        Case("data (MPII)", "`head_size` 0", lambda ctx: _mpii(ctx, [_person(head_size=0)]),
             expect="head_size must be a positive number"),
        Case("data (MPII)", "annotation file that is not JSON",
             lambda ctx: _mpii_broken_json(ctx), expect="is not valid JSON"),
        Case("data (MPII)", "a named image that does not exist", lambda ctx: _mpii_missing_image(ctx),
             expect="does not exist"),
    ]
    return cases


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _with(ctx, root: Path, name: str, data: bytes) -> Path:
    (root / name).write_bytes(data)
    return root


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:-10])
    return path.parent


def _append(path: Path) -> Path:
    path.write_bytes(path.read_bytes() + b"\x00")
    return path.parent


def _loop(folder: Path) -> Path:
    (folder / "a" / "again").symlink_to(folder / "a")
    return folder


def _png16(ctx) -> Path:
    from PIL import Image

    ramp = (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1013).astype(np.uint16)
    Image.fromarray(ramp).save(ctx.tmp / "wide.png")
    return ctx.tmp / "wide.png"


def _float_tiff(ctx) -> Path:
    from PIL import Image

    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(ctx.tmp / "f.tiff")
    return ctx.tmp / "f.tiff"


def _int32_png(ctx) -> Path:
    from PIL import Image

    Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8)).save(ctx.tmp / "i.tiff")
    return ctx.tmp / "i.tiff"


def _bomb(ctx) -> Path:
    from PIL import Image

    Image.new("1", (15000, 15000)).save(ctx.tmp / "bomb.png")
    return ctx.tmp / "bomb.png"


def _cifar_with(ctx, content, truncate: bool = False) -> Path:
    folder = ctx.tmp / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    if truncate:
        (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes()[:50])
    elif content is not None:
        with open(folder / "test_batch", "wb") as f:
            pickle.dump(content, f)
    return ctx.tmp / "cifar"


def _mpii_quiet(ctx, entries):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _mpii(ctx, entries)


def _mpii_broken_json(ctx):
    from modelring.data import MPIIDataset

    root = _mpii_root(ctx, [_person()])
    (root / "annot" / "valid.json").write_text("[{")
    return MPIIDataset(root, "valid")


def _mpii_missing_image(ctx):
    root = _mpii_root(ctx, [_person()])
    (root / "images" / "a.png").unlink()
    from modelring.data import MPIIDataset

    return MPIIDataset(root, "valid")


# ---------------------------------------------------------------- API calls
def _convert(size=0.05, **kwargs):
    import modelring as mr

    return mr.convert(mr.create_model("resnet20"), size, **kwargs)


def _optimizer_before_convert(ctx):
    import modelring as mr

    model = mr.create_model("resnet8", width=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mr.convert(model, 0.1)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()


def api_cases() -> list[Case]:
    import modelring as mr

    sizes = [(0, "at least 1 entry"), (-3, "at least 1 entry"), (1.5, r"in \(0, 1\]"), (float("nan"), r"in \(0, 1\]"),
             ("lots", "cannot read ring size"), (True, "ring size must be"), (None, "ring_size"), (5, "pass 0.05"),
             ("2MB", "would never be read")]
    cases = [Case("API", f"`convert(model, {size!r})`", lambda ctx, s=size: _convert(s), expect=expect)
             for size, expect in sizes]
    cases += [
        Case("API", "`convert(..., exclude=\"fc.*\")` (a string where a list is expected)",
             lambda ctx: _convert(exclude="fc.*"), expect=r"exclude=\['fc.\*'\]"),
        Case("API", "`convert(..., sampling=\"random\")`", lambda ctx: _convert(sampling="random"),
             expect="sampling must be"),
        Case("API", "converting a converted model", lambda ctx: mr.convert(_convert(), 0.05),
             expect="already converted"),
        Case("API", "an optimizer created before `convert`", _optimizer_before_convert,
             expect="created before modelring.convert"),
        Case("API", "`create_model(\"resnet20\", width=0)`", lambda ctx: mr.create_model("resnet20", width=0),
             expect="width must be an int >= 1"),
        Case("API", "`materialize` of a plain model", lambda ctx: mr.materialize(mr.create_model("resnet8")),
             expect="needs a model converted"),
        Case("API", "`load_state_dict` of a differently converted model", lambda ctx: _convert(seed=1).load_state_dict(
            _convert(seed=2).state_dict()), expect="modelring spec in the state_dict differs"),
    ]
    return cases


def all_cases() -> list[Case]:
    return config_cases() + model_file_cases() + checkpoint_cases() + data_cases() + api_cases()


def case_id(case: Case) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{case.family} {case.what}".lower()).strip("-")[:90]


def render(cases: list[Case]) -> str:
    """docs/bad_inputs.md from the corpus."""
    lines = [
        "# Bad inputs",
        "",
        "Generated by `python tests/hostile.py` from the corpus of hostile inputs in `tests/hostile.py`; every row is",
        "run by `tests/test_hostile.py` (`pytest tests/test_hostile.py -k <id>`), which asserts the outcome and that",
        "the files of an earlier finished run did not change; a test fails when this table is out of date.",
        "",
        "Outcomes: **clear error**: an input error whose message matches the pattern (through the CLI: exit code 2 and",
        "one line `modelring: error: ...`, no traceback; `--debug` shows one). **handled**: the input is legitimate",
        "or harmless and the correct result is asserted. Files are written atomically (temp file in the same folder,",
        "fsync, rename), so an error or a kill never leaves a half-written model, checkpoint, log or result.",
        "",
        f"{len(cases)} inputs:",
        "",
        "| # | family | bad input | outcome | message (pattern) |",
        "|---|---|---|---|---|",
    ]
    for i, case in enumerate(cases, 1):
        expect = case.expect.replace("|", "\\|") if case.outcome == "clear error" else "—"
        lines.append(f"| {i} | {case.family} | {case.what.replace('|', '/')} | {case.outcome} | `{expect}` |")
    lines += ["", "Tested elsewhere (behaviour over time or across processes, not a single input):", ""]
    lines += [f"- {text}" for text in ELSEWHERE]
    return "\n".join(lines) + "\n"


ELSEWHERE = [
    "SIGKILL at random moments during training and checkpoint writes, 1 and 2 processes: every `last.pt` readable, "
    "the resumed run bitwise equal to an uninterrupted one (`test_loop.py`, `test_distributed.py`).",
    "a loss that turns NaN stops the run and keeps the last good checkpoint; a model holding NaN/Inf never replaces "
    "`last.pt`, `best.safetensors` or `model.safetensors` (`test_safety.py`, `test_runfiles.py`).",
    "ranks that built different wiring under DDP: a clear error on every rank (`test_distributed.py`).",
    "a second training on a folder in use is refused; a stale lock and `.*.tmp` files of killed writes are cleared; "
    "a torn last line of `metrics.jsonl` is skipped with a warning (`test_runfiles.py`).",
    "files follow the umask (`test_atomic.py`); a CIFAR batch re-pickled with protocol 2 loads, other codecs are "
    "refused (`data/test_readers.py`); old model files and run folders load and resume (`test_fixtures.py`).",
]


def main() -> None:
    sys.path.insert(0, str(HERE.parent / "src"))
    cases = all_cases()
    DOC.write_text(render(cases))
    print(f"wrote {DOC} ({len(cases)} inputs)")


if __name__ == "__main__":
    main()
