"""The GPT family: shapes and gradients, causal attention against a reference, tied embeddings, stages, and what
``convert`` generates in it (gradients equal to the materialized model's)."""
import math

import pytest
import torch
import torch.nn.functional as F

import modelring as mr
from modelring.bank import get_state

TINY = {"vocab_size": 11, "context": 8, "depth": 2, "heads": 2, "width": 16}


def ids(batch=2, length=8, vocab=11, seed=0):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registered_sizes():
    sizes = {name: sum(p.numel() for p in mr.create_model(name).parameters())
             for name in ("gpt_tiny", "gpt_small")}
    assert sizes == {"gpt_tiny": 1_878_144, "gpt_small": 10_844_160}
    assert mr.models.model_info("gpt_tiny").task == "lm"


def test_forward_backward():
    model = mr.create_model("gpt_tiny", **TINY, tie_embeddings=False)
    logits = model(ids())
    assert logits.shape == (2, 8, 11) and torch.isfinite(logits).all()
    F.cross_entropy(logits.flatten(0, 1), ids(seed=1).flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    with pytest.raises(ValueError, match="longer than the model's context"):
        model(ids(length=9))
    with pytest.raises(ValueError, match="divisible by heads"):
        mr.create_model("gpt_tiny", width=10, heads=3)


def test_a_future_token_never_changes_past_logits():
    model = mr.create_model("gpt_tiny", **TINY).eval()
    x = ids(batch=1)
    y = x.clone()
    y[0, 5] = (x[0, 5] + 1) % 11
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_attention_equals_a_masked_softmax_reference():
    attn = mr.create_model("gpt_tiny", **TINY).blocks[0].attn
    x = torch.randn(2, 8, 16)
    q, k, v = attn.qkv(x).view(2, 8, 3, 2, 8).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(8)
    scores = scores.masked_fill(torch.ones(8, 8, dtype=torch.bool).triu(1), -math.inf)
    reference = attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 8, 16))
    torch.testing.assert_close(attn(x), reference, rtol=1e-5, atol=1e-6)


def test_tied_embeddings_are_one_tensor():
    tied = mr.create_model("gpt_tiny", **TINY)
    untied = mr.create_model("gpt_tiny", **TINY, tie_embeddings=False)
    assert tied.head is None and "head.weight" not in dict(tied.named_parameters())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(untied) - count(tied) == 11 * 16
    x = ids()
    torch.testing.assert_close(tied(x), tied.ln_f(tied.blocks[1](tied.blocks[0](tied.tok_emb(x) + tied.pos_emb(
        torch.arange(8))))) @ tied.tok_emb.weight.T)
    tied(x).sum().backward()  # the head's gradient lands on the embedding
    assert tied.tok_emb.weight.grad.abs().sum() > 0


def test_stages_are_the_blocks_for_local_rings():
    model = mr.create_model("gpt_tiny", **TINY)
    assert model.stage_names() == ["blocks.0", "blocks.1"]
    mr.convert(model, 0.1, rings="per_stage")
    specs = [spec for spec in (g.spec for g in get_state(model).generators)]
    assert [{s.name.split(".")[1] for s in spec.segments} for spec in specs] == [{"0"}, {"1"}]


def test_convert_generates_the_linear_weights_and_gradients_match_the_materialized_model():
    from helpers import dense_matrix

    model = mr.create_model("gpt_tiny", **TINY)
    mr.convert(model, 300, seed=2)
    spec = get_state(model).generators[0].spec
    assert [s.name for s in spec.segments] == [f"blocks.{b}.{layer}.weight" for b in range(2)
                                               for layer in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")]
    free = {n for n, _ in model.named_parameters()} - {"modelring.ring0.weight"}
    assert {"tok_emb.weight", "pos_emb.weight", "ln_f.weight", "blocks.0.attn.qkv.bias"} <= free
    dense = mr.materialize(model)
    x, y = ids(), ids(seed=1)
    for m in (model, dense):
        F.cross_entropy(m(x).flatten(0, 1), y.flatten()).backward()
    grads = torch.cat([dict(dense.named_parameters())[s.name].grad.reshape(-1) for s in spec.segments])
    R = dense_matrix(spec, torch.float32)
    torch.testing.assert_close(model.modelring.ring0.weight.grad, R.T @ grads, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(model.tok_emb.weight.grad, dense.tok_emb.weight.grad)
    untied = mr.convert(mr.create_model("gpt_tiny", **TINY, tie_embeddings=False), 300)
    assert "head.weight" in [s.name for s in get_state(untied).generators[0].spec.segments]
