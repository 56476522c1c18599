"""Causal language modelling (``task.name: lm``): a registry language model (``gpt_tiny`` ...) reads text files
(``data.root``, ``lm.files``; ``modelring.data.text``) and predicts each next token; the metric is bits per byte on
the whole evaluation split, and the best model is the one of lowest bits per byte.

Splits are contiguous blocks of the text: training from the start, validation (``data.val_size``: a fraction of the
text or a number of bytes) just before the test block (the last ``lm.test_fraction``). With ``data.val_size`` the run
evaluates and selects on validation (``val_*`` columns), otherwise on test, as classification does.

Metrics of ``evaluate``: ``loss``, the mean cross-entropy in nats per predicted token; ``bpb``, bits per byte,
(nats summed over the split's tokens) / (bytes those tokens stand for) / ln 2, which is comparable across
tokenizers (for bytes it is ``loss / ln 2``); ``count``, predicted tokens; ``bytes``. A model whose logits are
uniform over 256 bytes scores 8 bits per byte (to float32 rounding).

Throughput: ``batch_size`` is the number of predicted tokens of a batch, so the loop's ``images_per_s`` column and
its progress bar count tokens per second here (``unit``: ``tok``); ``train.batch_size`` counts windows of
``lm.context`` tokens, and ``data.train_limit`` the windows of one epoch (null: (training tokens - 1) // context,
about one pass).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..data.text import IGNORE, EvalWindows, TrainWindows, load_corpus
from ..distributed import Dist, all_sum
from ..models import create_model, model_info
from .base import Task


class LMTask(Task):
    name = "lm"
    test_fields = ("bpb",)
    optimizer_key = "lm.optimizer"
    unit = "tok"

    def check(self, cfg: dict) -> None:
        """Refuse a model that is not a language model and a missing ``data.root`` before anything is built."""
        name = cfg["model"]["name"]
        try:
            kind = model_info(name).task
        except ValueError:
            return  # create_model names the registered models
        if kind != "lm":
            raise ValueError(f"model.name={name} is a {kind} model; the lm task trains a language model "
                             "(gpt_tiny, gpt_small, gpt_medium or one registered with task='lm')")
        if not cfg["data"]["root"]:
            raise ValueError("the lm task reads text: set data.root to a text file or a folder of *.txt files "
                             "(bash scripts/fetch_text.sh fetches data/text/shakespeare and data/text/bible)")

    def eval_split(self, cfg: dict) -> str:
        return "val" if cfg["data"]["val_size"] else "test"

    def selection(self, cfg: dict) -> tuple[str, bool]:
        return "bpb", False

    def build_data(self, cfg: dict) -> tuple[TrainWindows, EvalWindows]:
        """(keyed training windows, the whole evaluation split in non-overlapping windows); a BPE keeps its
        tokenizer and token files in the run folder (``out.dir``)."""
        dc, lc = cfg["data"], cfg["lm"]
        corpus = load_corpus(dc["root"], files=lc["files"], context=lc["context"], val=dc["val_size"],
                             test=lc["test_fraction"], tokenizer=lc["tokenizer"], vocab_size=lc["vocab_size"],
                             folder=cfg["out"]["dir"])
        train = TrainWindows(corpus.splits["train"], context=lc["context"], seed=cfg["train"]["seed"],
                             windows=dc["train_limit"])
        train.tokenizer = corpus.tokenizer
        split = self.eval_split(cfg)
        evaluation = EvalWindows(corpus.splits[split], context=lc["context"],
                                 token_bytes=corpus.tokenizer.token_bytes(), windows=dc["test_limit"])
        return train, evaluation

    def build_model(self, cfg: dict, train: TrainWindows) -> nn.Module:
        """The registry model with the tokenizer's vocabulary and ``lm.context`` (``model.kwargs`` may not
        contradict them)."""
        data = {"vocab_size": train.tokenizer.vocab_size, "context": cfg["lm"]["context"]}
        given = cfg["model"]["kwargs"]
        for key, value in data.items():
            if key in given and given[key] != value:
                source = "lm.context" if key == "context" else f"the {cfg['lm']['tokenizer']} tokenizer"
                raise ValueError(f"model.kwargs.{key}={given[key]!r} but {source} gives {value}; drop "
                                 f"model.kwargs.{key} (the lm task sets it)")
        return create_model(cfg["model"]["name"], **{**data, **given})

    def to_device(self, batch, device, channels_last):
        inputs, targets = batch
        return inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)

    def batch_size(self, batch) -> int:
        return int(batch[1].numel())  # tokens: the loop's throughput is tokens per second

    def training_loss(self, model, batch, cfg):
        inputs, targets = batch
        logits = model(inputs)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE), {}

    @torch.no_grad()
    def evaluate(self, model, loader, cfg, device, d: Dist = Dist()):
        """Nats per token and bits per byte over every predicted token of ``loader``, summed over ranks."""
        token_bytes = loader.dataset.token_bytes
        nats, tokens, nbytes = 0.0, 0, 0
        for batch in loader:
            inputs, targets = self.to_device(batch, device, False)
            logits = model(inputs).float()
            losses = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="none")
            nats += losses.double().sum().item()  # float64 sums: a split of millions of tokens loses no digits
            kept = targets[targets != IGNORE]
            tokens += kept.numel()
            nbytes += kept.numel() if token_bytes is None else int(token_bytes.to(device)[kept].sum())
        nats, tokens, nbytes = all_sum([nats, tokens, nbytes], d)
        return {"loss": nats / max(tokens, 1), "bpb": nats / max(nbytes, 1) / math.log(2), "count": int(tokens),
                "bytes": int(nbytes)}

    def describe(self, test: dict, cfg: dict) -> str:
        split = self.eval_split(cfg)
        return (f"{split} bits per byte {test['bpb']:.4f}, loss {test['loss']:.4f} nats/token ({test['count']:,} "
                f"{split} tokens, {test['bytes']:,} bytes)")

    def epoch_line(self, row: dict) -> str:
        split = "val" if "val_bpb" in row else "test"
        return f"| {split} loss {row[f'{split}_loss']:.4f} bpb {row[f'{split}_bpb']:.4f}"


@torch.no_grad()
def generate(model: nn.Module, prompt: list[int], *, tokens: int, context: int, temperature: float = 1.0,
             top_k: int | None = None, seed: int = 0) -> list[int]:
    """Sample ``tokens`` ids after ``prompt`` from a causal language model, one at a time.

    Args:
        model: maps (1, length) ids to (1, length, vocab) logits; put in eval mode here.
        prompt: the ids to continue (at least one).
        tokens: how many ids to sample.
        context: the longest input the model takes (older ids are dropped from its view).
        temperature: logits are divided by it; 0 picks the most likely id (greedy).
        top_k: sample among the k most likely ids only (None: all).
        seed: the sampling generator's seed (the same seed, model and prompt give the same text on one machine).

    Returns:
        The sampled ids (the prompt not included).
    """
    if not prompt:
        raise ValueError("the prompt must hold at least one token")
    if temperature < 0 or (top_k is not None and top_k < 1):
        raise ValueError(f"temperature must be >= 0 and top_k >= 1, got {temperature} and {top_k}")
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    ids = torch.tensor([prompt], dtype=torch.long, device=device)
    for _ in range(tokens):
        logits = model(ids[:, -context:])[0, -1].float()
        if temperature == 0:
            token = logits.argmax().view(1)
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.numel():
                logits[logits < logits.topk(top_k).values[-1]] = -math.inf
            token = torch.multinomial(logits.softmax(-1), 1, generator=generator)
        ids = torch.cat([ids, token.view(1, 1)], dim=1)
    return ids[0, len(prompt):].tolist()
