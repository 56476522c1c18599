"""The lm task: bits per byte against hand computations, and ``modelring train`` / ``sample`` end to end (resume
exact, sampling deterministic for a seed)."""
import io
import json
import math
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from modelring import loop as T
from modelring.cli import main
from modelring.data.text import EvalWindows
from modelring.loop import make_loader
from modelring.tasks import get_task

RECIPE = str(Path(__file__).parents[2] / "configs" / "shakespeare_gpt_rpg.yaml")
TINY = ["model.kwargs={depth: 1, heads: 2, width: 16}", "lm.context=16", "train.batch_size=8", "data.train_limit=24",
        "data.val_size=0.1", "train.epochs=2", "train.threads=1", "train.progress=false", "out.tensorboard=false",
        "train.eval_batch_size=16", "train.lr=0.003"]


class Fixed(nn.Module):
    """The same logits at every position."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, x):
        return self.logits.expand(*x.shape, -1)


def _evaluate(model, tokens, token_bytes=None, context=7):
    windows = EvalWindows(tokens, context=context, token_bytes=token_bytes)
    return get_task("lm").evaluate(model, make_loader(windows, 4, shuffle_key=None), {}, torch.device("cpu"))


def test_uniform_logits_score_exactly_8_bits_per_byte():
    tokens = np.arange(100, dtype=np.uint8)
    result = _evaluate(Fixed(torch.zeros(256)), tokens)
    assert result["bpb"] == pytest.approx(8.0, rel=1e-6) and result["count"] == 99 == result["bytes"]
    assert result["loss"] == pytest.approx(math.log(256), rel=1e-6)


def test_bits_per_byte_against_a_hand_computation():
    logits = torch.linspace(-2, 3, 256)
    tokens = np.array([5, 200, 7, 7, 255, 0, 13, 99, 100, 101], dtype=np.uint8)
    log_p = logits.double().log_softmax(0)
    nats = -sum(log_p[t].item() for t in tokens[1:])
    result = _evaluate(Fixed(logits), tokens, context=4)
    assert result["bpb"] == pytest.approx(nats / 9 / math.log(2), rel=1e-6)
    # tokens of several bytes (BPE): the same nats spread over the bytes the targets stand for
    lengths = torch.ones(256, dtype=torch.int64)
    lengths[7] = 3
    result = _evaluate(Fixed(logits), tokens, token_bytes=lengths, context=4)
    assert result["bytes"] == 9 + 2 * 2 and result["bpb"] == pytest.approx(nats / 13 / math.log(2), rel=1e-6)


@pytest.fixture
def corpus(tmp_path) -> Path:
    words = ["the", "king", "queen", "doth", "speak", "ere", "night", "falls", "upon", "verona", "\n"]
    rng = np.random.default_rng(0)
    path = tmp_path / "text" / "plays.txt"
    path.parent.mkdir()
    path.write_text(" ".join(rng.choice(words, 3000)))
    return path


def train(corpus, out, *extra):
    return main(["train", RECIPE, f"data.root={corpus}", f"out.dir={out}", *TINY, *extra])


def test_train_resume_and_sample_end_to_end(corpus, tmp_path, monkeypatch, capsys):
    assert train(corpus, tmp_path / "straight") == 0
    report = json.loads((tmp_path / "straight" / "report.json").read_text())
    assert report["task"] == "lm" and 0 < report["val_bpb"] < 8 and report["val_count"] > 0
    lines = (tmp_path / "straight" / "metrics.csv").read_text().splitlines()
    assert lines[0].split(",")[:5] == ["epoch", "lr", "train_loss", "val_loss", "val_bpb"] and len(lines) == 3
    real, calls = T.train_one_epoch, []

    def dies_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if killed mid-epoch
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "train_one_epoch", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(corpus, tmp_path / "interrupted")
    monkeypatch.setattr(T, "train_one_epoch", real)
    assert train(corpus, tmp_path / "interrupted", "--resume") == 0
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "interrupted" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def sample(*args):
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["sample", str(tmp_path / "straight"), "--prompt", "the king", "--tokens", "40", *args]) == 0
        return out.getvalue()

    first, again, other = sample("--seed", "3"), sample("--seed", "3"), sample("--seed", "4")
    assert first == again and first.startswith("the king") and len(first.encode()) >= len("the king") + 40
    assert first != other
    greedy = sample("--temperature", "0")
    assert greedy == sample("--temperature", "0", "--seed", "9")  # greedy ignores the seed
    assert sample("--top-k", "1", "--seed", "5") == greedy  # top-1 is greedy


def test_sample_refuses_what_is_not_a_finished_lm_run(tmp_path, capsys):
    assert main(["sample", str(tmp_path), "--prompt", "x"]) == 2
    assert "not a run folder" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text("task:\n  name: classification\n")
    assert main(["sample", str(tmp_path), "--prompt", "x"]) == 2
    assert "is a classification run" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text("task:\n  name: lm\nmodel:\n  name: gpt_tiny\n")
    assert main(["sample", str(tmp_path), "--prompt", "x"]) == 2
    assert "model.safetensors is missing" in capsys.readouterr().err


def test_lm_refuses_a_classifier_a_missing_corpus_and_a_contradicting_context(corpus, tmp_path, capsys):
    assert main(["train", RECIPE, "model.name=resnet20", f"out.dir={tmp_path / 'a'}"]) == 2
    assert "is a classification model" in capsys.readouterr().err
    assert main(["train", RECIPE, f"data.root={tmp_path / 'none'}", f"out.dir={tmp_path / 'b'}", *TINY]) == 2
    assert "fetch_text.sh" in capsys.readouterr().err
    assert main(["train", RECIPE, f"data.root={corpus}", f"out.dir={tmp_path / 'c'}", *TINY,
                 "model.kwargs={context: 8}"]) == 2
    assert "model.kwargs.context=8 but lm.context gives 16" in capsys.readouterr().err


def test_count_and_eval_read_language_models(corpus, tmp_path, capsys):
    assert main(["count", "gpt_tiny", "--ring-size", "0.05"]) == 0
    assert "DoF 197,146 of 1,878,144" in capsys.readouterr().out
    assert train(corpus, tmp_path / "run", "train.epochs=1") == 0
    moved = tmp_path / "moved"
    (tmp_path / "run").rename(moved)
    capsys.readouterr()
    assert main(["eval", str(moved)]) == 0
    report = json.loads((moved / "report.json").read_text())
    assert f"val bits per byte {report['val_bpb']:.4f}" in capsys.readouterr().out


def test_export_writes_a_language_model_to_onnx_with_token_id_input(corpus, tmp_path, capsys):
    import onnx  # in the test extra, which CI installs
    assert train(corpus, tmp_path / "run", "train.epochs=1") == 0
    model = tmp_path / "run" / "model.safetensors"
    assert main(["export", str(model), str(tmp_path / "plain.safetensors"), "--onnx", str(tmp_path / "lm.onnx")]) == 0
    assert "token ids (batch, 16)" in capsys.readouterr().out
    graph = onnx.load(str(tmp_path / "lm.onnx")).graph
    onnx.checker.check_model(str(tmp_path / "lm.onnx"))
    inputs, outputs = graph.input[0].type.tensor_type, graph.output[0].type.tensor_type
    assert inputs.elem_type == onnx.TensorProto.INT64 and all(d.dim_param for d in inputs.shape.dim)
    assert [d.dim_value for d in outputs.shape.dim][-1] == 256  # logits over bytes
    assert main(["export", str(model), str(tmp_path / "p2.safetensors"), "--onnx", str(tmp_path / "x.onnx"),
                 "--input-shape", "17"]) == 2
    assert "2 <= L <= its context (16)" in capsys.readouterr().err
