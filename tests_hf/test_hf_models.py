"""convert on unmodified Hugging Face transformers models (optional extra `modelring[hf]`; run by scripts/test_hf.sh).

Every model is built tiny from a config (no weights are downloaded) for the three families README documents:
GPT-2 (`Conv1D` layers, weights stored transposed, tied embeddings), Llama (`nn.Linear`, RoPE, grouped KV heads)
and BERT (an encoder with a classification head). Each case checks the converted model against its
materialized dense twin: outputs, gradients (ring gradient = the dense weight gradients gathered through the
wiring), greedy `generate()` with and without the KV cache, `save_pretrained` / `from_pretrained` with transformers
alone, `modelring.save` / `modelring.load`, tied embeddings, gradient checkpointing, SDPA and eager attention, and
a short training loop.
"""
import copy
import os

import pytest
import torch

import modelring as mr
from modelring.wiring import entries_and_signs

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")
from transformers.pytorch_utils import Conv1D  # noqa: E402

VOCAB, LAYERS = 97, 2
ATTENTION = ("sdpa", "eager")


def gpt2(attn="sdpa", **overrides):
    config = transformers.GPT2Config(n_layer=LAYERS, n_embd=32, n_head=2, n_positions=64, vocab_size=VOCAB,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                                     eos_token_id=0, pad_token_id=0, attn_implementation=attn, **overrides)
    return transformers.GPT2LMHeadModel(config)


def llama(attn="sdpa", **overrides):
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                                      attn_implementation=attn, **overrides)
    return transformers.LlamaForCausalLM(config)


def bert(attn="sdpa", **overrides):
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=LAYERS,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                     num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                     pad_token_id=0, attn_implementation=attn, **overrides)
    return transformers.BertForSequenceClassification(config)


# What README's table documents: the convert options per family, and what they generate in every block.
CONVERT = {
    "gpt2": dict(include=[Conv1D]),
    "llama": dict(exclude=["lm_head.weight"]),
    "bert": dict(exclude=["classifier.weight"]),
}
GPT2_GLOBS = ["*.c_attn.weight", "*.c_proj.weight", "*.c_fc.weight"]  # the same targets, by name
PER_BLOCK = {
    "gpt2": ["transformer.h.{i}.attn.c_attn.weight", "transformer.h.{i}.attn.c_proj.weight",
             "transformer.h.{i}.mlp.c_fc.weight", "transformer.h.{i}.mlp.c_proj.weight"],
    "llama": [f"model.layers.{{i}}.self_attn.{p}_proj.weight" for p in "qkvo"]
             + [f"model.layers.{{i}}.mlp.{p}_proj.weight" for p in ("gate", "up", "down")],
    "bert": [f"bert.encoder.layer.{{i}}.attention.self.{p}.weight" for p in ("query", "key", "value")]
            + ["bert.encoder.layer.{i}.attention.output.dense.weight",
               "bert.encoder.layer.{i}.intermediate.dense.weight", "bert.encoder.layer.{i}.output.dense.weight"],
}
EXTRA = {"gpt2": [], "llama": [], "bert": ["bert.pooler.dense.weight"]}
STAYS_FREE = {
    "gpt2": ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight",
             "transformer.h.0.attn.c_attn.bias", "transformer.ln_f.weight"],
    "llama": ["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight", "model.norm.weight",
              "lm_head.weight"],
    "bert": ["bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
             "bert.embeddings.LayerNorm.weight", "bert.encoder.layer.0.attention.self.query.bias",
             "classifier.weight", "classifier.bias"],
}
BUILD = {"gpt2": gpt2, "llama": llama, "bert": bert}
FAMILIES = list(BUILD)
CAUSAL = ["gpt2", "llama"]


def build(family, attn="sdpa", dtype=torch.float32, **overrides):
    torch.manual_seed(0)
    return BUILD[family](attn, **overrides).to(dtype)


def converted(family, attn="sdpa", dtype=torch.float32, ring_size=0.1, **overrides):
    return mr.convert(build(family, attn, dtype, **overrides), ring_size, **CONVERT[family])


def batch(family, size=2, length=8):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (size, length), generator=generator)
    if family == "bert":
        return dict(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 2])[:size])
    return dict(input_ids=ids, labels=ids)


def generated_names(model):
    return [seg.name for ring in model.modelring.rings for seg in ring.spec.segments]


def ring_gradient_from_dense(model, dense):
    """The ring gradient implied by the dense twin's weight gradients: dL/dW[e] = sum over the virtual weights j
    reading entry e of sign_j * c_j * dL/dK_j, with the wiring taken from ``entries_and_signs``."""
    grads = []
    dense_params = dict(dense.named_parameters())
    for ring in model.modelring.rings:
        spec = ring.spec
        entries, negative = entries_and_signs(spec)
        flat = torch.cat([dense_params[s.name].grad.reshape(-1) * s.scale for s in spec.segments])
        flat = torch.where(negative, -flat, flat)
        grads.append(torch.zeros(spec.size, dtype=flat.dtype).index_add_(0, entries, flat))
    return grads


def assert_same_outputs(a, b, inputs, **tolerance):
    with torch.no_grad():
        out_a, out_b = a(**inputs), b(**inputs)
    torch.testing.assert_close(out_a.logits, out_b.logits, **tolerance)
    torch.testing.assert_close(out_a.loss, out_b.loss, **tolerance)


# --- what convert generates ------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_documented_targets(family):
    model = converted(family)
    expected = [name.format(i=i) for i in range(LAYERS) for name in PER_BLOCK[family]] + EXTRA[family]
    assert generated_names(model) == expected
    free = {n for n, _ in model.named_parameters()}
    assert set(STAYS_FREE[family]) <= free  # embeddings, norms, biases and the head stay trainable parameters
    assert not free & set(expected)
    counts = mr.count_params(model)
    assert counts.generated == sum(p.numel() for n, p in build(family).named_parameters() if n in expected)
    assert counts.dof == counts.ring + counts.free


def test_gpt2_conv1d_by_type_or_by_globs():
    """Module-type include works for a non-Linear type (Conv1D stores its weight (in, out)); globs pick the same."""
    by_type = generated_names(converted("gpt2"))
    by_glob = generated_names(mr.convert(build("gpt2"), 0.1, include=GPT2_GLOBS))
    assert by_type == by_glob
    with pytest.raises(ValueError, match="nothing to generate"):  # the default (conv/linear) finds no GPT-2 weight
        mr.convert(build("gpt2"), 0.1)


# --- outputs and gradients equal the materialized dense model ----------------------------------------------------

@pytest.mark.parametrize("attn", ATTENTION)
@pytest.mark.parametrize("family", FAMILIES)
def test_outputs_and_gradients_equal_materialized(family, attn):
    model = converted(family, attn, dtype=torch.float64)
    assert model.config._attn_implementation == attn
    dense = mr.materialize(model)
    inputs = batch(family)
    assert_same_outputs(model, dense, inputs, rtol=0, atol=0)
    model(**inputs).loss.backward()
    dense(**inputs).loss.backward()
    for ring, expected in zip(model.modelring.rings, ring_gradient_from_dense(model, dense)):
        assert ring.weight.grad.abs().sum() > 0
        torch.testing.assert_close(ring.weight.grad, expected, rtol=1e-10, atol=1e-12)
    dense_params = dict(dense.named_parameters())
    for name, param in model.named_parameters():
        if not name.startswith("modelring."):
            torch.testing.assert_close(param.grad, dense_params[name].grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_sdpa_and_eager_agree(family):
    sdpa, eager = converted(family, "sdpa"), converted(family, "eager")
    eager.load_state_dict(sdpa.state_dict())
    assert_same_outputs(sdpa, eager, batch(family), rtol=1e-5, atol=1e-5)


# --- generate() ---------------------------------------------------------------------------------------------------

def greedy(model, prompt, use_cache):
    with torch.no_grad():
        return model.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=use_cache, pad_token_id=0)


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("family", CAUSAL)
def test_generate_matches_materialized(family, use_cache):
    model = converted(family).eval()
    prompt = batch(family)["input_ids"][:, :4]
    tokens = greedy(model, prompt, use_cache)
    assert tokens.shape == (2, 10)
    torch.testing.assert_close(tokens, greedy(mr.materialize(model), prompt, use_cache), rtol=0, atol=0)
    torch.testing.assert_close(tokens, greedy(model, prompt, not use_cache), rtol=0, atol=0)


@pytest.mark.parametrize("family", CAUSAL)
def test_generate_after_a_training_step_uses_the_new_ring(family):
    """generate() runs under no_grad, where generated weights are reused while the ring is unchanged: an optimizer
    step (an in-place update) must make the next generate() see the new weights."""
    model = converted(family)
    inputs = batch(family)
    before = greedy(model, inputs["input_ids"][:, :4], True)
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    model(**inputs).loss.backward()
    opt.step()
    after = greedy(model, inputs["input_ids"][:, :4], True)
    torch.testing.assert_close(after, greedy(mr.materialize(model), inputs["input_ids"][:, :4], True),
                               rtol=0, atol=0)
    assert not torch.equal(before, after)


# --- files: save_pretrained of the materialized model, modelring.save / load --------------------------------------

AUTO = {"gpt2": "AutoModelForCausalLM", "llama": "AutoModelForCausalLM", "bert": "AutoModelForSequenceClassification"}


@pytest.mark.parametrize("family", FAMILIES)
def test_materialized_save_pretrained_reloads_with_transformers_alone(family, tmp_path):
    model = converted(family)
    with torch.no_grad():  # move the ring off its start so the file cannot pass by holding initial values
        model.modelring.ring0.weight.mul_(1.5)
    dense = mr.materialize(model).eval()
    dense.save_pretrained(tmp_path)
    plain, info = getattr(transformers, AUTO[family]).from_pretrained(tmp_path, output_loading_info=True)
    assert type(plain) is type(dense)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")), info
    assert_same_outputs(plain.eval(), model, batch(family), rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_pretrained_of_a_converted_model_is_loudly_incomplete(family, tmp_path):
    """README: save_pretrained a converted model writes the rings, not the weights (materialize first). Its reload
    through transformers reports every generated weight as missing; it is never silently taken for the model."""
    model = converted(family)
    model.save_pretrained(tmp_path)
    _, info = getattr(transformers, AUTO[family]).from_pretrained(tmp_path, output_loading_info=True)
    assert set(generated_names(model)) <= set(info["missing_keys"])
    assert "modelring.ring0.weight" in info["unexpected_keys"]


@pytest.mark.parametrize("family", FAMILIES)
def test_modelring_save_load_into_a_fresh_unconverted_model(family, tmp_path):
    model = converted(family)
    with torch.no_grad():
        model.modelring.ring0.weight.mul_(1.5)
    path = mr.save(model, tmp_path / "model.safetensors")
    dense_bytes = sum(p.numel() * p.element_size() for p in build(family).parameters())
    assert path.stat().st_size < dense_bytes
    fresh = mr.load(path, model=build(family))
    assert generated_names(fresh) == generated_names(model)
    assert_same_outputs(fresh, model, batch(family), rtol=0, atol=0)


# --- tied embeddings ----------------------------------------------------------------------------------------------

def test_gpt2_tied_embedding_is_generated_once_and_stays_tied(tmp_path):
    """GPT-2 ties lm_head.weight to transformer.wte.weight (one tensor, listed once by named_parameters under its
    first name): generating it writes one generated tensor into both modules, and every copy keeps the tie."""
    model = mr.convert(build("gpt2", dtype=torch.float64), 0.1, include=[Conv1D, "transformer.wte.weight"])
    names = generated_names(model)
    assert names.count("transformer.wte.weight") == 1 and "lm_head.weight" not in names
    inputs = batch("gpt2")
    model(**inputs).loss.backward()
    assert model.lm_head.weight is model.transformer.wte.weight
    dense = mr.materialize(model)
    assert dense.lm_head.weight is dense.transformer.wte.weight
    dense(**inputs).loss.backward()  # the tied dense weight's gradient holds both uses, as the ring's must
    expected, = ring_gradient_from_dense(model, dense)
    torch.testing.assert_close(model.modelring.ring0.weight.grad, expected, rtol=1e-10, atol=1e-12)
    path = mr.save(model, tmp_path / "tied.safetensors")
    fresh = mr.convert(build("gpt2", dtype=torch.float64), 0.1, include=[Conv1D, "transformer.wte.weight"])
    assert_same_outputs(mr.load(path, model=fresh), model, inputs, rtol=0, atol=0)
    dense.save_pretrained(tmp_path / "hf")
    plain = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float64)
    assert plain.lm_head.weight is plain.transformer.wte.weight
    assert_same_outputs(plain.eval(), model, inputs, rtol=0, atol=0)


def test_gpt2_tied_embedding_loads_into_a_fresh_unconverted_model(tmp_path):
    model = mr.convert(build("gpt2"), 0.1, include=[Conv1D, "transformer.wte.weight"])
    fresh = mr.load(mr.save(model, tmp_path / "tied.safetensors"), model=build("gpt2"))
    assert_same_outputs(fresh, model, batch("gpt2"), rtol=0, atol=0)


def test_gpt2_tied_head_named_by_its_second_name_is_a_clear_error():
    with pytest.raises(ValueError, match="'lm_head.weight', which is tied to 'transformer.wte.weight'"):
        mr.convert(build("gpt2"), 0.1, include=[Conv1D, "lm_head.weight"])


def test_tie_weights_on_a_converted_tied_embedding_is_refused_by_transformers():
    """transformers' tie_weights() (also run by resize_token_embeddings) looks the tied weight up as a parameter;
    a generated one is not, so it raises: README says to materialize, edit, and convert again."""
    model = mr.convert(build("gpt2"), 0.1, include=[Conv1D, "transformer.wte.weight"])
    with pytest.raises(AttributeError, match="transformer.wte.weight"):
        model.tie_weights()
    plain = mr.convert(build("gpt2"), 0.1, **CONVERT["gpt2"])
    plain.tie_weights()  # with the embedding free, the tie is untouched
    assert plain.lm_head.weight is plain.transformer.wte.weight


# --- gradient checkpointing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("reentrant", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_checkpointing_gives_the_same_step(family, reentrant):
    """Recomputing a checkpointed layer in backward runs its forward pre-hook again: the cached generation is
    reused (use_reentrant=False, transformers' default) or regenerated from the same ring (True); both give the
    gradients and the step of the model without checkpointing."""
    plain = converted(family, dtype=torch.float64).train()
    checkpointed = copy.deepcopy(plain)
    # transformers 5 name of gradient_checkpointing_enable (a deprecated alias of it)
    checkpointed.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": reentrant})
    assert checkpointed.is_activation_checkpointing
    inputs = batch(family)
    for model in (plain, checkpointed):
        # SGD, not Adam: the key bias's gradient is 0 up to rounding (softmax ignores a shift), and Adam would
        # turn that rounding noise into full-size steps
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(2):  # the second step runs on the updated ring
            opt.zero_grad()
            model(**inputs).loss.backward()
            opt.step()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")
    assert_same_outputs(plain, checkpointed, inputs, rtol=1e-10, atol=1e-12)


# --- training -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_a_short_training_loop_lowers_the_loss_and_moves_the_ring(family):
    model = converted(family).train()
    start = model.modelring.ring0.weight.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    inputs = batch(family, size=2, length=16)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert not torch.equal(model.modelring.ring0.weight.detach(), start)
    assert_same_outputs(model, mr.materialize(model), inputs, rtol=0, atol=0)


def test_readme_counts_are_these_models():
    """README's table of the tiny test models: generated of total and DoF at a 10% ring, per family."""
    from pathlib import Path
    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text[text.index("## Hugging Face transformers"):text.index("## Benchmarks")]
    rows = {line.split("|")[1].strip(" `"): line for line in section.splitlines() if line.startswith("| `")}
    for family, cls in (("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM"),
                        ("bert", "BertForSequenceClassification")):
        counts = mr.count_params(converted(family))
        total = sum(p.numel() for p in build(family).parameters())
        assert f"{counts.generated:,} of {total:,}" in rows[cls] and f"DoF {counts.dof:,}" in rows[cls], rows[cls]
    tied = mr.count_params(mr.convert(build("gpt2"), 0.1, include=[Conv1D, "transformer.wte.weight"]))
    assert f"DoF {tied.dof:,} in the tiny model" in section


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_ring_adapter_fine_tunes_a_hugging_face_model_and_merges_exactly(family, tmp_path):
    """mr.adapt on an unmodified transformers model: starts as the base, trains only the ring, merges exactly, and
    its adapter file (ring + spec + base fingerprint) reloads onto a fresh copy of the base."""
    torch.manual_seed(0)
    base = build(family, dtype=torch.float64).eval()
    pristine = copy.deepcopy(base)
    inputs = batch(family)
    before = base(**inputs).logits
    model = mr.adapt(base, 0.05, **CONVERT[family])
    assert torch.equal(model(**inputs).logits, before)  # a zero ring is exactly the base
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["modelring_adapters.default.ring0.weight"]  # the base, embeddings and norms frozen
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(**inputs).logits.square().mean().backward()
        opt.step()
    adapted = model(**inputs).logits
    assert not torch.equal(adapted, before)
    mr.save(model, tmp_path / "adapter.safetensors")
    again = mr.load_adapter(tmp_path / "adapter.safetensors", copy.deepcopy(pristine)).eval()
    assert torch.equal(again(**inputs).logits, adapted)
    merged = mr.merge(model)
    assert not mr.is_adapted(merged) and type(merged) is type(pristine)
    torch.testing.assert_close(merged(**inputs).logits, adapted, rtol=0, atol=0)
