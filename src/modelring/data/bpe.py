"""Tokenizers of the lm task: bytes (the default, nothing to train or download) and a byte-level BPE trained with
the optional ``tokenizers`` package on the training split only.

Both give ``encode(text) -> ids``, ``decode(ids) -> text`` (invalid UTF-8 becomes U+FFFD on the way out),
``vocab_size`` and ``token_bytes()`` (the bytes each id stands for, for bits per byte).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..atomic import write_atomic

TOKENIZER_FILE = "tokenizer.json"  # a BPE run keeps its tokenizer here, in the run folder


class ByteTokenizer:
    """One token per byte: the UTF-8 bytes of a text; vocabulary 256."""

    kind = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self) -> torch.Tensor | None:
        return None  # every token is one byte


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the printable character a byte is written as in BPE vocabularies."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


def _require_tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("lm.tokenizer=bpe needs the tokenizers package: pip install 'modelring[text]' (or use "
                          "lm.tokenizer=bytes, which needs nothing)") from None
    return tokenizers


class BPETokenizer:
    """A byte-level BPE (``tokenizers``): every byte sequence has an encoding, no unknown token, no special tokens."""

    kind = "bpe"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()

    @classmethod
    def train(cls, texts, *, vocab_size: int) -> "BPETokenizer":
        """Train on an iterable of texts (the training split's chunks)."""
        tk = _require_tokenizers()
        model = tk.Tokenizer(tk.models.BPE())
        model.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
        model.decoder = tk.decoders.ByteLevel()
        trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                         initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
        model.train_from_iterator(texts, trainer=trainer)
        return cls(model)

    @classmethod
    def load(cls, path: Path) -> "BPETokenizer":
        return cls(_require_tokenizers().Tokenizer.from_file(str(path)))

    def save(self, path: Path) -> None:
        """Write the tokenizer's JSON atomically."""
        write_atomic(Path(path), lambda tmp: self.tokenizer.save(str(tmp)))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def token_bytes(self) -> torch.Tensor:
        alphabet = _byte_alphabet()
        lengths = torch.zeros(self.vocab_size, dtype=torch.int64)
        for token, index in self.tokenizer.get_vocab().items():
            lengths[index] = len(token) if all(c in alphabet for c in token) else len(token.encode("utf-8"))
        return lengths


def encode_to_file(tokenizer: BPETokenizer, chunks, path: Path) -> np.memmap:
    """Encode text chunks into a flat token file (uint16, or uint32 past 65,536 ids), written atomically chunk
    by chunk (bounded memory), and map it back read-only."""
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32

    def write(tmp):
        with open(tmp, "wb") as f:
            for text in chunks:
                f.write(np.asarray(tokenizer.encode(text), dtype=dtype).tobytes())
    write_atomic(Path(path), write)
    if Path(path).stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")
