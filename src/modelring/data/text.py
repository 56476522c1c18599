"""Text corpora for causal language modelling: text files read as one memory-mapped stream of bytes.

**Files.** ``text_files`` takes one file, a folder (its ``*.txt`` files, recursively) or a list of files; they are
joined end to end in sorted path order into one stream (``ByteStream``), memory-mapped (``numpy.memmap``), so a
2 GB corpus costs the pages a run touches, never a copy of the file. Empty files are skipped; a missing path, a
folder without text files, or anything that is not a regular file (a FIFO, a device) is a clear error.

**Split.** Contiguous blocks of the stream (``split_bounds``): training from the start, then validation (when
asked), then test (the last ``test`` fraction). Each boundary is moved forward to the first byte that starts a
UTF-8 character (never a continuation byte ``0b10xxxxxx``), so no character is cut in two. Every split must hold
at least one window of ``context + 1`` tokens.

**Tokens.** Byte-level (default): a token is a byte, the vocabulary is 256, and *any* bytes are valid input:
nothing is decoded, so binary data or invalid UTF-8 is read as it is (and bits per byte is exact). BPE (optional,
the ``tokenizers`` package: ``pip install modelring[text]``): a byte-level BPE trained on the training split only;
it needs text, so invalid UTF-8 is refused with the byte offset, never replaced.

**Windows.** Training windows of ``context + 1`` tokens start at positions keyed by (seed, epoch, index) through
the integer hash of ``keys.py`` (no random generator stream), so a resumed run reads exactly the same windows.
Evaluation windows do not overlap and cover the whole split: every token but the split's first is predicted once,
the tail included (a short last window is padded with ignored targets, ``IGNORE``).
"""
from __future__ import annotations

import bisect
import codecs
import math
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..keys import derive_key
from .bpe import TOKENIZER_FILE, BPETokenizer, ByteTokenizer, encode_to_file

IGNORE = -100  # target of padding positions: cross_entropy(ignore_index=IGNORE) skips them
WINDOW_KEY = 0x7E47  # purpose word of the training windows' keys (other keys of the same seed differ)
TEXT_SUFFIX = ".txt"


def text_files(root: str | Path, files: list[str] | None = None) -> list[Path]:
    """The text files a corpus is read from, in the order they are joined.

    Args:
        root: a text file, or a folder.
        files: file names or globs inside ``root`` (a folder) to use instead of every ``*.txt`` file in it.

    Returns:
        Sorted paths of regular files (empty ones included; ``ByteStream`` skips them).

    Raises:
        FileNotFoundError: ``root`` or a named file does not exist, or a folder holds no text file.
        ValueError: a path is not a regular file (a FIFO, a device, a socket).
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no text at {root}: set data.root to a text file or a folder of *.txt files "
                                "(bash scripts/fetch_text.sh fetches Shakespeare and the King James Bible)")
    if files:
        if not root.is_dir():
            raise ValueError(f"lm.files names files inside a folder, but data.root={root} is not a folder")
        found = []
        for pattern in files:
            hits = sorted(p for p in root.glob(pattern) if not p.is_dir())
            if not hits:
                raise FileNotFoundError(f"lm.files: {pattern!r} matches no file in {root}")
            found += hits
        paths = sorted(set(found))
    elif root.is_dir():
        paths = sorted(p for p in root.rglob(f"*{TEXT_SUFFIX}") if not p.is_dir())
        if not paths:
            raise FileNotFoundError(f"{root} holds no *{TEXT_SUFFIX} file; point data.root at a text file, or name "
                                    "the files with lm.files=[name,...]")
    else:
        paths = [root]
    for path in paths:
        mode = path.stat().st_mode  # follows links: a link to a text file is fine
        if not stat.S_ISREG(mode):
            raise ValueError(f"{path} is not a regular file (a FIFO, device or socket): a corpus is read by memory "
                             "mapping and must be a file; copy the text into one")
    return paths


class ByteStream:
    """Files joined end to end as one read-only byte sequence, memory-mapped; ``stream[a:b]`` is a uint8 array.

    Attributes:
        paths: the non-empty files, in order.
        offsets: where each file starts in the stream (plus the total length at the end).
    """

    def __init__(self, paths: list[Path]):
        self.paths = [p for p in paths if p.stat().st_size > 0]  # numpy cannot map an empty file
        self.maps = [np.memmap(p, dtype=np.uint8, mode="r") for p in self.paths]
        self.offsets = [0]
        for m in self.maps:
            self.offsets.append(self.offsets[-1] + len(m))

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, item: slice) -> np.ndarray:
        start, stop, step = item.indices(len(self))
        if step != 1:
            raise ValueError("a byte stream is read in contiguous slices")
        pieces, i = [], max(bisect.bisect_right(self.offsets, start) - 1, 0)
        while start < stop:
            local = start - self.offsets[i]
            take = min(stop, self.offsets[i + 1]) - start
            pieces.append(self.maps[i][local:local + take])
            start += take
            i += 1
        if not pieces:
            return np.zeros(0, dtype=np.uint8)
        return np.concatenate(pieces) if len(pieces) > 1 else np.asarray(pieces[0])


class View:
    """A contiguous part ``[start, stop)`` of a stream or token array, sliced like an array."""

    def __init__(self, base, start: int, stop: int):
        self.base, self.start, self.stop = base, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, item: slice) -> np.ndarray:
        start, stop, _ = item.indices(len(self))
        return self.base[self.start + start:self.start + stop]


def char_start(stream, position: int) -> int:
    """The first position at or after ``position`` that is not a UTF-8 continuation byte (at most 3 bytes on)."""
    end = min(position + 4, len(stream))
    for offset, byte in enumerate(stream[position:end]):
        if byte & 0xC0 != 0x80:
            return position + offset
    return end


def split_bounds(stream, *, val: float | int | None, test: float) -> dict[str, tuple[int, int]]:
    """Contiguous byte ranges of the splits: ``train`` from the start, ``val`` (when ``val``) then ``test`` at the end.

    Args:
        stream: the byte stream (``len`` and slices).
        val: the validation block, a fraction of the stream in (0, 1) or a number of bytes; None for none.
        test: the test block, a fraction of the stream in (0, 1).

    Returns:
        {split: (start, stop)} in bytes, boundaries at UTF-8 character starts.
    """
    total = len(stream)
    test_start = char_start(stream, total - round(test * total))
    if not val:
        return {"train": (0, test_start), "test": (test_start, total)}
    size = round(val * total) if isinstance(val, float) else int(val)
    val_start = char_start(stream, max(test_start - size, 0))
    return {"train": (0, val_start), "val": (val_start, test_start), "test": (test_start, total)}


def check_lengths(lengths: dict[str, int], *, context: int, what: str, unit: str = "bytes") -> None:
    """Refuse splits shorter than one window (``context + 1`` tokens), saying what to change."""
    short = {name: n for name, n in lengths.items() if n < context + 1}
    if short:
        listed = ", ".join(f"{name} {n:,} {unit}" for name, n in short.items())
        raise ValueError(f"{what} is too short: {listed}, but every split needs at least one window of "
                         f"lm.context + 1 = {context + 1} tokens; use more text, a smaller lm.context, or larger "
                         "split fractions (lm.test_fraction, data.val_size)")


def check_utf8(stream, *, name: str, chunk: int = 1 << 20) -> None:
    """Refuse bytes that are not UTF-8, naming the first bad offset (read in chunks: bounded memory)."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    for start in range(0, len(stream), chunk):
        try:
            decoder.decode(stream[start:start + chunk].tobytes(), final=start + chunk >= len(stream))
        except UnicodeDecodeError as err:
            raise ValueError(f"{name} is not valid UTF-8 near byte {start + err.start:,}: the BPE tokenizer "
                             "reads text; use lm.tokenizer=bytes, which reads any bytes") from None


def text_chunks(stream, *, chunk: int = 1 << 20):
    """The stream as text pieces of about ``chunk`` bytes cut after a newline (valid UTF-8 assumed: checked)."""
    start = 0
    while start < len(stream):
        stop = min(start + chunk, len(stream))
        piece = stream[start:stop].tobytes()
        if stop < len(stream):
            cut = piece.rfind(b"\n") + 1 or len(piece)
            while cut < len(piece) and piece[cut] & 0xC0 == 0x80:  # no newline: never cut a character
                cut += 1
            piece, stop = piece[:cut], start + cut
        yield piece.decode("utf-8")
        start = stop


class TrainWindows(Dataset):
    """Training windows of ``context + 1`` tokens; window ``i`` of epoch ``e`` starts at a position keyed by
    (seed, e, i), so resumed runs and workers read the same windows. Items are (inputs, targets), int64 (context,).

    Args:
        tokens: the training split (``len`` and contiguous slices giving integer arrays).
        context: tokens a model sees.
        seed: the run's seed.
        windows: windows per epoch; None: as many as cover the split once, (len - 1) // context.
    """

    def __init__(self, tokens, *, context: int, seed: int, windows: int | None = None):
        self.tokens, self.context, self.seed, self.epoch = tokens, context, seed, 0
        self.windows = windows or max(1, (len(tokens) - 1) // context)

    def __len__(self) -> int:
        return self.windows

    def start(self, index: int) -> int:
        """Where window ``index`` of the current epoch starts: a 64-bit keyed value modulo the possible starts."""
        high = derive_key(self.seed, self.epoch, index, WINDOW_KEY, 0)
        low = derive_key(self.seed, self.epoch, index, WINDOW_KEY, 1)
        return ((high << 32) | low) % (len(self.tokens) - self.context)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = self.start(index)
        window = torch.from_numpy(np.asarray(self.tokens[start:start + self.context + 1], dtype=np.int64))
        return window[:-1], window[1:]


class EvalWindows(Dataset):
    """Non-overlapping windows covering a whole split: window k reads tokens [k·context, k·context + context] and
    predicts every token after the first once; the last, shorter window is padded (targets ``IGNORE``).

    Args:
        tokens: the split.
        context: tokens a model sees.
        token_bytes: bytes of each token id (int64 tensor), or None when every token is one byte.
        windows: only the first this many windows (None: the whole split).
    """

    def __init__(self, tokens, *, context: int, token_bytes: torch.Tensor | None = None, windows: int | None = None):
        self.tokens, self.context, self.token_bytes, self.epoch = tokens, context, token_bytes, 0
        whole = math.ceil((len(tokens) - 1) / context)
        self.windows = min(windows, whole) if windows else whole

    def __len__(self) -> int:
        return self.windows

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        start = index * self.context
        window = torch.from_numpy(np.asarray(self.tokens[start:start + self.context + 1], dtype=np.int64))
        inputs = torch.zeros(self.context, dtype=torch.int64)
        targets = torch.full((self.context,), IGNORE, dtype=torch.int64)
        inputs[:len(window) - 1], targets[:len(window) - 1] = window[:-1], window[1:]
        return inputs, targets


TOKENIZERS = ("bytes", "bpe")


@dataclass
class Corpus:
    """A corpus split and tokenized.

    Attributes:
        splits: {split: tokens}, each sliced like an array (``len``, contiguous slices).
        tokenizer: what turns text into the tokens and back (``ByteTokenizer`` or ``BPETokenizer``).
        bytes: {split: its length in bytes}.
    """
    splits: dict
    tokenizer: object
    bytes: dict


def load_corpus(root: str | Path, *, files: list[str] | None = None, context: int, val: float | int | None = None,
                test: float = 0.1, tokenizer: str = "bytes", vocab_size: int = 4096,
                folder: str | Path | None = None) -> Corpus:
    """Read, split and tokenize a corpus (see the module docstring for each step).

    Args:
        root, files: where the text is (``text_files``).
        context: tokens a model sees; every split must hold one window of ``context + 1`` tokens.
        val, test: the validation and test blocks (``split_bounds``).
        tokenizer: ``bytes`` or ``bpe``.
        vocab_size: the BPE vocabulary (``bpe`` only).
        folder: where a BPE keeps ``tokenizer.json`` (reused when present: a resumed run encodes as before) and
            its token files (``bpe`` only).

    Returns:
        The ``Corpus``.

    Raises:
        FileNotFoundError, ValueError: as ``text_files``; an empty or too-short corpus; invalid UTF-8 for ``bpe``.
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"lm.tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
    stream = ByteStream(text_files(root, files))
    what = f"the text in {root}"
    if not len(stream):
        raise ValueError(f"{what} is empty (0 bytes); point data.root at a file or folder with text")
    bounds = split_bounds(stream, val=val, test=test)
    sizes = {name: stop - start for name, (start, stop) in bounds.items()}
    check_lengths(sizes, context=context, what=what)
    views = {name: View(stream, start, stop) for name, (start, stop) in bounds.items()}
    if tokenizer == "bytes":
        return Corpus(views, ByteTokenizer(), sizes)
    if folder is None:
        raise ValueError("lm.tokenizer=bpe needs a folder for its tokenizer and token files (the run folder)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    check_utf8(stream, name=what)
    path = folder / TOKENIZER_FILE
    if path.is_file():
        bpe = BPETokenizer.load(path)
    else:
        bpe = BPETokenizer.train(text_chunks(views["train"]), vocab_size=vocab_size)
        bpe.save(path)
    tokens = {name: encode_to_file(bpe, text_chunks(view), folder / f"tokens.{name}.bin")
              for name, view in views.items()}
    check_lengths({name: len(t) for name, t in tokens.items()}, context=context, what=what, unit="tokens")
    return Corpus(tokens, bpe, sizes)


def load_tokenizer(kind: str, folder: str | Path):
    """The tokenizer a run used: bytes, or the BPE saved in its folder (``tokenizer.json``)."""
    if kind == "bytes":
        return ByteTokenizer()
    path = Path(folder) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a BPE run keeps its tokenizer there")
    return BPETokenizer.load(path)
