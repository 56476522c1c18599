"""The `peft` method (issue 25's baselines): peft's LoRA, VeRA, Uni-LoRA, FourierFT and VB-LoRA, unmodified,
fine-tune a pretrained registry model through `fit`, exactly as the ring adapter does (optional extra, run by
scripts/test_hf.sh)."""
import json

import numpy as np
import pytest
import torch

import modelring as mr
from modelring.cli import main
from modelring.config import load_config
from modelring.methods import apply_method

peft = pytest.importorskip("peft", reason="the hf extra is not installed")

RECIPE = "configs/shakespeare_gpt_rpg.yaml"
TINY = ["model.kwargs={depth: 1, heads: 2, width: 16}", "lm.context=16", "train.batch_size=8", "data.train_limit=24",
        "data.val_size=0.1", "train.epochs=1", "train.threads=1", "train.progress=false", "out.tensorboard=false",
        "train.eval_batch_size=16", "train.lr=0.003"]
LINEAR = {"blocks.0.attn.qkv": (16, 48), "blocks.0.attn.proj": (16, 16), "blocks.0.mlp.fc": (16, 64),
          "blocks.0.mlp.proj": (64, 16)}  # (in, out) of every nn.Linear of the tiny GPT


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny char-level GPT trained densely for one epoch: its model file is the base every method fine-tunes."""
    root = tmp_path_factory.mktemp("lm")
    words = ["the", "king", "queen", "doth", "speak", "ere", "night", "falls", "upon", "verona", "\n"]
    (root / "text").mkdir()
    (root / "text" / "plays.txt").write_text(" ".join(np.random.default_rng(0).choice(words, 3000)))
    assert main(["train", RECIPE, f"data.root={root / 'text'}", f"out.dir={root / 'dense'}", "method=dense",
                 *TINY]) == 0
    return root


def config(root, *extra):
    return load_config(RECIPE, [f"data.root={root / 'text'}", *TINY, "method=peft",
                                f"adapter.base={root / 'dense' / 'model.safetensors'}", *extra])


def tiny_gpt():
    return mr.create_model("gpt_tiny", depth=1, heads=2, width=16, context=16)


@pytest.mark.parametrize("kind, options, trainable", [
    ("lora", "{r: 2}", sum(2 * (i + o) for i, o in LINEAR.values())),
    ("unilora", "{r: 2, theta_d_length: 100}", 100),
    ("vera", "{r: 4}", None),
    ("fourierft", "{n_frequency: 10}", 10 * len(LINEAR)),
    ("vblora", "{r: 2, num_vectors: 8, vector_length: 8}", None),
])
def test_a_peft_method_adapts_the_base_and_freezes_the_rest(pretrained, kind, options, trainable):
    cfg = config(pretrained, f"peft.type={kind}", f"peft.options={options}")
    base = mr.load(pretrained / "dense" / "model.safetensors", model=tiny_gpt())
    model = apply_method(tiny_gpt(), cfg)
    names = [n.removeprefix("base_model.model.") for n, p in model.named_parameters() if p.requires_grad]
    assert names and not set(names) & {n for n, _ in base.named_parameters()}  # only the adapter trains
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable is not None:
        assert count == trainable
    x = torch.randint(0, 256, (2, 16))
    if kind in ("lora", "vera"):  # these start as the base exactly (Uni-LoRA starts B·A away from zero)
        torch.testing.assert_close(model(x), base(x))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x)[:, :-1].reshape(-1, 256), x[:, 1:].reshape(-1)).backward()
        opt.step()
    assert not torch.allclose(model(x), base(x))  # the adapter moved
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if not p.requires_grad)


def test_fit_fine_tunes_with_peft_and_the_ring_adapter_alike(pretrained, tmp_path):
    common = [f"data.root={pretrained / 'text'}", *TINY, f"adapter.base={pretrained / 'dense' / 'model.safetensors'}"]
    assert main(["train", RECIPE, *common, "method=peft", "peft.type=unilora",
                 "peft.options={r: 2, theta_d_length: 500}", f"out.dir={tmp_path / 'unilora'}"]) == 0
    assert main(["train", RECIPE, *common, "method=adapter", "ring.size=500", "ring.exclude=null",
                 f"out.dir={tmp_path / 'ring'}"]) == 0
    uni = json.loads((tmp_path / "unilora" / "report.json").read_text())
    ring = json.loads((tmp_path / "ring" / "report.json").read_text())
    assert uni["dof"] == ring["dof"] == 500 and uni["peft_type"] == "unilora" and uni["adapter_bytes"] == 2000
    assert 0 < uni["val_bpb"] < 8 and 0 < ring["val_bpb"] < 8


def test_peft_refuses_a_pattern_that_matches_nothing_and_a_missing_base(pretrained):
    with pytest.raises(ValueError, match=r"adapter.train pattern\(s\) \['nope.\*'\]"):
        apply_method(tiny_gpt(), config(pretrained, "adapter.train=[nope.*]"))
    with pytest.raises(ValueError, match="set adapter.base"):
        apply_method(tiny_gpt(), load_config(RECIPE, ["method=peft"]))


def test_finetune_text_runner_compares_methods_at_equal_budgets_and_measures_forgetting(tmp_path, monkeypatch):
    import csv
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "experiments"))
    import finetune_text as ft

    rng = np.random.default_rng(0)
    for corpus, words in {"old": ["the", "king", "doth", "speak", "ere", "night", "\n"],
                          "new": ["and", "god", "said", "let", "there", "be", "light", "\n"]}.items():
        (tmp_path / corpus).mkdir()
        (tmp_path / corpus / "t.txt").write_text(" ".join(rng.choice(words, 3000)))
    monkeypatch.chdir(repo)
    monkeypatch.setattr(ft, "BUDGETS", (256,))
    monkeypatch.setattr(ft, "LADDER", (1e-3, 1e-2))
    monkeypatch.setattr(ft, "ADAPTER_LRS", (1e-3, 1e-2))
    monkeypatch.setattr(ft, "BASE_LRS", {"full": (1e-3, 1e-2)})
    monkeypatch.setattr(ft, "SEEDS", (0, 1))
    common = ["--old", str(tmp_path / "old"), "--new", str(tmp_path / "new"), "--runs", str(tmp_path / "runs"),
              "--results", str(tmp_path / "res"), "--pretrain-tokens", "2048", "--tokens", "512", "--epochs", "1",
              "--context", "16", "--set", "model.kwargs={depth: 1, heads: 2, width: 16}", "train.batch_size=8",
              "train.eval_batch_size=16", "data.val_size=0.1"]
    with pytest.raises(SystemExit, match="base is not trained"):
        ft.main(["lr", *common])
    assert ft.main(["pretrain", *common]) == 0
    schedule = ft.schedule(ft.argparse.Namespace(epochs=1, context=16, threads=1,
                                                 set=["model.kwargs={depth: 1, heads: 2, width: 16}"]), "x", 512)
    labels = set(ft.arms(schedule, "base"))
    ablations = {f"ring 256 {name}" for name in (*ft.ABLATIONS, "trainable-c")}
    assert labels == {"full", "bias", "norms", "ring 256", "unilora 256", "fourierft 256", "lora 256", "vera 256",
                      *ablations}
    assert ft.arms(schedule, "base")["ring 256 trainable-c"]["ring.size"] == 256 - 4  # one c_i per adapted layer
    arms = ["full", "ring 256", "unilora 256", "lora 256", "vera 256", "fourierft 256", "ring 256 per-layer",
            "ring 256 trainable-c"]
    assert ft.main(["lr", *common, "--arms", *arms]) == 0
    rows = list(csv.DictReader((tmp_path / "res" / "lr" / "lr.csv").open()))
    dof = {r["label"].rsplit("_lr", 1)[0]: int(r["dof"]) for r in rows}
    assert {k: v for k, v in dof.items() if k != "full"} == {slug: 256 for slug in
                                                             ("ring-256", "unilora-256", "lora-256", "vera-256",
                                                              "fourierft-256", "ring-256-per-layer",
                                                              "ring-256-trainable-c")}
    forgetting = list(csv.DictReader((tmp_path / "res" / "lr" / "forgetting.csv").open()))
    assert len(forgetting) == len(rows) == 16 and all(0 < float(r["old_bpb"]) < 9 for r in forgetting)
    assert ft.main(["seeds", *common, "--arms", "ring 256", "lora 256"]) == 0
    seeds = list(csv.DictReader((tmp_path / "res" / "seeds" / "seeds.csv").open()))
    assert sorted(r["seed"] for r in seeds) == ["0", "0", "1", "1"]


@pytest.mark.parametrize("kind, options", [("unilora", {"r": 2, "theta_d_length": 100}), ("vera", {"r": 4}),
                                           ("fourierft", {"n_frequency": 10}),
                                           ("vblora", {"r": 2, "num_vectors": 8, "vector_length": 8})])
def test_peft_methods_other_than_lora_refuse_convolutions(kind, options):
    """What README and finetune_vision.py say: on a convnet only LoRA of these peft methods can be compared."""
    from modelring.methods.peft_baselines import PEFT_CONFIGS

    model = mr.create_model("resnet8", num_classes=10, width=4)
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    with pytest.raises((TypeError, ValueError), match="not supported|No layers types compatible"):
        peft.get_peft_model(model, getattr(peft, PEFT_CONFIGS[kind])(target_modules=convs, **options))


def test_finetune_vision_runner_puts_ring_and_lora_at_equal_dof_on_convolutions(tmp_path, monkeypatch):
    import csv
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "experiments"))
    sys.path.insert(0, str(repo / "tests"))
    import finetune_vision as fv
    from conftest import write_tiny_fmnist

    old, new = write_tiny_fmnist(tmp_path / "fmnist"), write_tiny_fmnist(tmp_path / "mnist")
    monkeypatch.chdir(repo)
    monkeypatch.setattr(fv, "RANKS", (1,))
    monkeypatch.setattr(fv, "LADDER", (0.03, 0.1))
    monkeypatch.setattr(fv, "ADAPTER_LRS", (0.03, 0.1))
    common = ["--old", str(old), "--new", str(new), "--runs", str(tmp_path / "runs"), "--results",
              str(tmp_path / "res"), "--pretrain-images", "200", "--pretrain-epochs", "1", "--images", "200",
              "--epochs", "1", "--val", "40", "--set", "model.name=resnet8", "model.kwargs={in_chans: 1, width: 4}",
              "train.batch_size=64"]
    assert fv.main(["pretrain", *common]) == 0
    assert fv.main(["lr", *common, "--arms", "ring 1", "lora 1", "head"]) == 0
    rows = list(csv.DictReader((tmp_path / "res" / "lr" / "lr.csv").open()))
    dof = {r["label"].rsplit("_lr", 1)[0]: int(r["dof"]) for r in rows}
    head = sum(p.numel() for p in mr.create_model("resnet8", num_classes=10, width=4, in_chans=1).fc.parameters())
    assert dof["ring-1"] == dof["lora-1"] > dof["head"] == head  # adapter + classifier, and the classifier alone
    forgetting = list(csv.DictReader((tmp_path / "res" / "lr" / "forgetting.csv").open()))
    assert len(forgetting) == 6 and all(0 <= float(r["old_top1"]) <= 1 for r in forgetting)
