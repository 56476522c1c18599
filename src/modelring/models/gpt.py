"""GPT: a pre-LN decoder-only transformer for causal language modelling (Radford et al. 2019, "Language Models are
Unsupervised Multitask Learners"; the layout of karpathy/nanoGPT).

Token and learned position embeddings, ``depth`` blocks of (LayerNorm, causal multi-head self-attention through
``scaled_dot_product_attention(is_causal=True)``, residual) and (LayerNorm, GELU MLP of 4x width, residual), a final
LayerNorm and a linear head to ``vocab_size`` logits; the head is the token embedding's matrix when
``tie_embeddings`` (one tensor, no ``head`` module). ``depth``, ``heads``, ``width``, ``context`` and ``vocab_size``
are keyword arguments, so a width sweep is one key (``model.kwargs.width``).

What ``convert`` generates here with its default targets (``plan.DEFAULT_TYPES``: the weight of every conv and
``nn.Linear``): every block's attention ``qkv`` and ``proj`` and MLP ``fc`` and ``proj`` weights, and the untied
``head.weight``; the embeddings (``nn.Embedding``), LayerNorms and biases stay free, and so does a tied head (it
is the embedding's tensor). ``ring.exclude=[head.weight]`` keeps an untied head free. Which targets and which scale
rule (``ring.scale``) train best on transformers is not yet measured: the defaults work, they are not tuned.

``stage_names()`` lists the blocks (``blocks.0`` ...), one stage each, for local rings (``ring.rings=per_stage``);
a generated untied head falls in the ring of the rest.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

__all__ = ["GPT", "gpt_tiny", "gpt_small", "gpt_medium"]


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t only."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(batch, length, width))


class MLP(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(width, 4 * width)
        self.proj = nn.Linear(4 * width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln1(x)), then + mlp(ln2(x))."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = MLP(width, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer: token ids (batch, length <= context) -> logits (batch, length, vocab_size).

    Args:
        vocab_size: tokens (256 for bytes).
        context: the longest input (learned positions).
        depth, heads, width: blocks, attention heads (``width`` divisible by them), residual width.
        dropout: dropout after attention and MLP (0: none).
        tie_embeddings: the head reuses the token embedding's matrix (one tensor).
    """

    def __init__(self, *, vocab_size: int = 256, context: int = 256, depth: int = 4, heads: int = 6,
                 width: int = 192, dropout: float = 0.0, tie_embeddings: bool = True):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("context", context), ("depth", depth), ("heads", heads),
                            ("width", width)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPT {name} must be an int >= 1, got {value!r}")
        if width % heads:
            raise ValueError(f"GPT width ({width}) must be divisible by heads ({heads})")
        self.vocab_size, self.context, self.depth, self.width = vocab_size, context, depth, width
        self.tok_emb = nn.Embedding(vocab_size, width)
        self.pos_emb = nn.Embedding(context, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = None if tie_embeddings else nn.Linear(width, vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) weights, zero biases, residual projections scaled by
        1/sqrt(2 * depth) (each block adds two of them to the residual stream)."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * self.depth) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def stage_names(self) -> list[str]:
        """One stage per block (local rings: ``ring.rings=per_stage``)."""
        return [f"blocks.{i}" for i in range(self.depth)]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        length = idx.shape[1]
        if length > self.context:
            raise ValueError(f"input of {length} tokens is longer than the model's context ({self.context})")
        positions = torch.arange(length, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(positions))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return self.head(x) if self.head is not None else F.linear(x, self.tok_emb.weight)


def _gpt(defaults: dict, kwargs: dict) -> GPT:
    return GPT(**{**defaults, **kwargs})


@register_model(task="lm", input_size=(1, 1, 256))
def gpt_tiny(**kwargs) -> GPT:
    """Char-level GPT of 1.88 M parameters (bytes, tied): depth 4, 6 heads, width 192, context 256.

    Args:
        **kwargs: any ``GPT`` argument (``vocab_size``, ``context``, ``depth``, ``heads``, ``width``, ``dropout``,
            ``tie_embeddings``).
    """
    return _gpt({"depth": 4, "heads": 6, "width": 192}, kwargs)


@register_model(task="lm", input_size=(1, 1, 256))
def gpt_small(**kwargs) -> GPT:
    """GPT of 10.8 M parameters (bytes, tied): depth 6, 6 heads, width 384, context 256 (nanoGPT's
    Shakespeare-char model).

    Args:
        **kwargs: any ``GPT`` argument.
    """
    return _gpt({"depth": 6, "heads": 6, "width": 384}, kwargs)


@register_model(task="lm", input_size=(1, 1, 256))
def gpt_medium(**kwargs) -> GPT:
    """GPT of 85.3 M parameters in its blocks (bytes, tied): depth 12, 12 heads, width 768, context 256 (GPT-2
    small's blocks): the weight-dominated model of the memory benchmarks.

    Args:
        **kwargs: any ``GPT`` argument.
    """
    return _gpt({"depth": 12, "heads": 12, "width": 768}, kwargs)
