"""The text reader of the lm task: files joined and memory-mapped, contiguous splits, keyed training windows,
evaluation windows covering a split, and a clear error for each bad input."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from modelring.data.text import (IGNORE, WINDOW_KEY, ByteStream, EvalWindows, TrainWindows, load_corpus,
                                 split_bounds, text_files)
from modelring.keys import derive_key

LINES = "To be, or not to be, that is the question: — naïve café ✓\n"


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_files_are_joined_in_sorted_order_and_memory_mapped(tmp_path):
    write(tmp_path / "b.txt", "second ")
    write(tmp_path / "a.txt", "first ")
    write(tmp_path / "sub" / "c.txt", "third")
    write(tmp_path / "empty.txt", "")  # skipped: nothing to map
    write(tmp_path / "notes.md", "not text of the corpus")
    stream = ByteStream(text_files(tmp_path))
    assert stream[0:len(stream)].tobytes() == b"first second third"
    assert stream[3:9].tobytes() == b"st sec"  # a slice across two files
    assert all(isinstance(m, np.memmap) for m in stream.maps)
    assert [p.name for p in text_files(tmp_path, ["b.txt", "sub/*.txt"])] == ["b.txt", "c.txt"]


def test_the_split_is_contiguous_deterministic_and_never_cuts_a_character(tmp_path):
    stream = ByteStream([write(tmp_path / "t.txt", LINES * 50)])
    bounds = split_bounds(stream, val=0.05, test=0.1)
    assert bounds == split_bounds(stream, val=0.05, test=0.1)
    assert list(bounds) == ["train", "val", "test"]
    assert bounds["train"][0] == 0 and bounds["test"][1] == len(stream)
    assert bounds["train"][1] == bounds["val"][0] and bounds["val"][1] == bounds["test"][0]
    assert abs((bounds["test"][1] - bounds["test"][0]) - 0.1 * len(stream)) <= 3
    for start, _ in bounds.values():  # a UTF-8 character starts at every boundary: every part decodes
        assert stream[start:start + 1][0] & 0xC0 != 0x80
    for start, stop in bounds.values():
        stream[start:stop].tobytes().decode("utf-8")
    assert split_bounds(stream, val=100, test=0.1)["val"][1] - split_bounds(stream, val=100, test=0.1)["val"][0] \
        in range(100, 104)
    assert list(split_bounds(stream, val=None, test=0.2)) == ["train", "test"]


def test_training_windows_are_keyed_by_seed_epoch_and_index(tmp_path):
    data = bytes(range(256)) * 40
    corpus = load_corpus(write(tmp_path / "t.bin.txt", data), context=16, test=0.2)
    train = corpus.splits["train"]
    windows = TrainWindows(train, context=16, seed=3)
    windows.epoch = 2
    span = len(train) - 16
    for index in (0, 1, 57):
        start = ((derive_key(3, 2, index, WINDOW_KEY, 0) << 32) | derive_key(3, 2, index, WINDOW_KEY, 1)) % span
        assert windows.start(index) == start
        x, y = windows[index]
        assert x.tolist() == list(data[start:start + 16]) and y.tolist() == list(data[start + 1:start + 17])
    again = TrainWindows(train, context=16, seed=3)
    again.epoch = 2
    assert [again.start(i) for i in range(20)] == [windows.start(i) for i in range(20)]
    again.epoch = 3
    assert [again.start(i) for i in range(20)] != [windows.start(i) for i in range(20)]
    assert len(windows) == (len(train) - 1) // 16 and len(TrainWindows(train, context=16, seed=3, windows=5)) == 5


def test_evaluation_predicts_every_token_of_the_split_once(tmp_path):
    data = bytes((7 * i) % 251 for i in range(1000))
    tokens = np.frombuffer(data, dtype=np.uint8)
    windows = EvalWindows(tokens, context=64)
    assert len(windows) == 16  # 999 targets: 15 full windows and a tail of 39
    inputs, targets = zip(*(windows[i] for i in range(len(windows))))
    inputs, targets = torch.cat(inputs), torch.cat(targets)
    kept = targets != IGNORE
    assert targets[kept].tolist() == list(data[1:])
    assert inputs[kept].tolist() == list(data[:-1])
    assert len(EvalWindows(tokens, context=64, windows=3)) == 3


def test_byte_level_reads_any_bytes(tmp_path):
    data = bytes(range(256)) * 8 + b"\xff\xfe\x80 invalid utf-8 \xc3"
    corpus = load_corpus(write(tmp_path / "binary.txt", data), context=32, test=0.25)
    joined = b"".join(corpus.splits[s][0:len(corpus.splits[s])].tobytes() for s in ("train", "test"))
    assert joined == data and corpus.tokenizer.vocab_size == 256 and corpus.tokenizer.token_bytes() is None
    assert corpus.bytes == {"train": len(corpus.splits["train"]), "test": len(corpus.splits["test"])}


@pytest.mark.parametrize("case, message", [
    ("missing", "no text at"),
    ("empty", "is empty"),
    ("short", "too short.*lm.context \\+ 1 = 65"),
    ("tiny", "too short"),
    ("no_text", "holds no \\*.txt file"),
    ("fifo", "not a regular file"),
    ("glob", "matches no file"),
])
def test_bad_text_inputs_are_clear_errors(tmp_path, case, message):
    root = tmp_path / "corpus"
    root.mkdir()
    files = None
    if case == "empty":
        write(root / "a.txt", "")
    elif case == "short":
        write(root / "a.txt", "x" * 300)  # test block 30 bytes < 65
    elif case == "tiny":
        write(root / "a.txt", "xy")  # the test block rounds to nothing
    elif case == "no_text":
        write(root / "a.csv", "1,2,3")
    elif case == "fifo":
        os.mkfifo(root / "pipe.txt")
    elif case == "glob":
        write(root / "a.txt", "x" * 3000)
        files = ["b*.txt"]
    path = tmp_path / "nowhere" if case == "missing" else root
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_corpus(path, files=files, context=64)


def _rss() -> int:
    return int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("VmRSS"))) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads RSS from /proc")
def test_a_3_gb_file_is_memory_mapped_not_read(tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:
        f.truncate(3 * 2 ** 30)  # sparse: no disk used, reads give zeros
    before = _rss()
    corpus = load_corpus(path, context=256, val=0.05)
    windows = TrainWindows(corpus.splits["train"], context=256, seed=0)
    assert len(windows) > 10 ** 7
    for i in range(100):
        assert windows[i][0].shape == (256,)
    assert EvalWindows(corpus.splits["test"], context=256)[10 ** 5][1].shape == (256,)
    assert _rss() - before < 64 * 2 ** 20  # a read of the file would add 3 GB


def test_bpe_trains_on_the_training_split_and_counts_bytes(tmp_path):
    import tokenizers  # noqa: F401 - a test dependency (pyproject test extra): missing it fails here
    text = "".join(f"line {i}: {LINES}" for i in range(400))
    corpus = load_corpus(write(tmp_path / "t.txt", text), context=32, tokenizer="bpe", vocab_size=300,
                         folder=tmp_path / "run")
    assert (tmp_path / "run" / "tokenizer.json").is_file() and corpus.tokenizer.vocab_size <= 300
    token_bytes = corpus.tokenizer.token_bytes()
    for split, tokens in corpus.splits.items():  # every byte of each split is one token's
        assert int(token_bytes[torch.from_numpy(np.asarray(tokens[0:len(tokens)], dtype=np.int64))].sum()) \
            == corpus.bytes[split]
    assert corpus.tokenizer.decode(corpus.tokenizer.encode(LINES)) == LINES
    with pytest.raises(ValueError, match="not valid UTF-8 near byte 2,000"):
        load_corpus(write(tmp_path / "bad.txt", b"a" * 2000 + b"\xff" + b"b" * 2000), context=32, tokenizer="bpe",
                    folder=tmp_path / "run2")
