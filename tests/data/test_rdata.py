"""R lazy-load databases (``modelring.data.rdata``): files written here in R's exact format (an XDR serializer
below, built from R's serialize.c layout: flags word, symbols entered in the reference table, REFSXP for repeats,
attributes as a tagged pairlist after the data) are read back, every compression R uses for lazy-load entries,
and damaged files are clear errors. The real r-cran-janeaustenr database reads to 4,025,029 bytes of text
(``scripts/fetch_text.sh austen``, checked when the package was fetched)."""
import bz2
import gzip
import lzma
import struct
import zlib

import pytest

from modelring.data.rdata import read_lazyload, unserialize, write_texts


class XDR:
    """A minimal R serializer (format version 3) for the objects the reader supports."""

    def __init__(self):
        header = [b"X\n", struct.pack(">iii", 3, 0x040200, 0x030500), struct.pack(">i", 5), b"UTF-8"]
        self.out, self.symbols = header, {}

    def flags(self, kind, attr=False, tag=False):
        self.out.append(struct.pack(">i", kind | (attr << 9) | (tag << 10)))

    def char(self, text):
        if text is None:
            self.flags(9), self.out.append(struct.pack(">i", -1))
            return
        data = text.encode()
        self.out.append(struct.pack(">ii", 9 | (1 << 12), len(data)) + data)  # levels: UTF-8 flag, ignored

    def symbol(self, name):
        if name in self.symbols:  # REFSXP with the index packed into the flags
            self.out.append(struct.pack(">i", 255 | (self.symbols[name] << 8)))
            return
        self.flags(1)
        self.char(name)
        self.symbols[name] = len(self.symbols) + 1

    def attributes(self, attrs):
        for name, value in attrs.items():
            self.flags(2, tag=True)
            self.symbol(name)
            self.value(value)
        self.flags(254)

    def value(self, v, attrs=None):
        attrs = attrs or {}
        if v is None:
            self.flags(254)
        elif isinstance(v, tuple) and v[0] == "int":
            self.flags(13, attr=bool(attrs))
            self.out.append(struct.pack(f">i{len(v[1])}i", len(v[1]), *[-2 ** 31 if x is None else x for x in v[1]]))
        elif isinstance(v, tuple) and v[0] == "double":
            self.flags(14, attr=bool(attrs))
            self.out.append(struct.pack(f">i{len(v[1])}d", len(v[1]), *v[1]))
        elif isinstance(v, list) and all(isinstance(x, str) or x is None for x in v):
            self.flags(16, attr=bool(attrs))
            self.out.append(struct.pack(">i", len(v)))
            for x in v:
                self.char(x)
        elif isinstance(v, dict):  # a named list
            self.flags(19, attr=True)
            self.out.append(struct.pack(">i", len(v)))
            for x in v.values():
                self.value(*x) if isinstance(x, list) and len(x) == 2 and isinstance(x[1], dict) else self.value(x)
            attrs = {"names": list(v), **attrs}
        else:
            raise TypeError(v)
        if attrs:
            self.attributes(attrs)

    def bytes(self):
        return b"".join(self.out)


def serialize(v, attrs=None) -> bytes:
    writer = XDR()
    writer.value(v, attrs)
    return writer.bytes()


def entry(payload: bytes, compressed: int, kind: bytes = b"Z") -> bytes:
    size = struct.pack(">I", len(payload))
    if compressed == 1:
        return size + zlib.compress(payload)
    body = {b"Z": zlib.compress, b"2": bz2.compress, b"X": lzma.compress, b"0": bytes}[kind](payload)
    return size + kind + body


def write_db(root, objects: dict, compressed: int = 1, kinds=None):
    blobs, offsets, at = [], [], 0
    for i, obj in enumerate(objects.values()):
        blob = entry(serialize(obj), compressed, (kinds or [b"Z"])[i % len(kinds or [b"Z"])])
        offsets.append(("int", [at, len(blob)]))
        blobs.append(blob)
        at += len(blob)
    (root.parent / (root.name + ".rdb")).write_bytes(b"".join(blobs))
    index = {"variables": dict(zip(objects, offsets)), "references": {}, "compressed": ("int", [compressed])}
    (root.parent / (root.name + ".rdx")).write_bytes(gzip.compress(serialize(index)))


NOVELS = {"emma": ["EMMA", "", "By Jane Austen", None, "café au lait"], "persuasion": ["Persuasion", "Chapter 1"]}


@pytest.mark.parametrize("compressed, kinds", [(1, None), (2, [b"2", b"Z"]), (3, [b"X", b"0"])])
def test_character_vectors_round_trip_through_every_entry_compression(tmp_path, compressed, kinds):
    write_db(tmp_path / "Rdata", NOVELS, compressed, kinds)
    objects = read_lazyload(tmp_path / "Rdata")
    assert list(objects) == ["emma", "persuasion"]
    assert objects["emma"] == NOVELS["emma"] and objects["emma"].kind == "character"
    files = write_texts(tmp_path / "Rdata", tmp_path / "out")
    assert [f.name for f in files] == ["emma.txt", "persuasion.txt"]
    assert (tmp_path / "out" / "emma.txt").read_text(encoding="utf-8") == "EMMA\n\nBy Jane Austen\n\ncafé au lait\n"


def test_numbers_lists_attributes_and_repeated_symbols():
    value = unserialize(serialize({"counts": ("int", [1, None, 3]), "x": ("double", [0.5, -2.0]),
                                   "inner": {"a": ["p", "q"]}}, attrs={"class": ["data.frame"]}))
    assert value.names == ["counts", "x", "inner"] and value.attrs["class"] == ["data.frame"]
    assert value[0] == [1, None, 3] and value[0].kind == "integer" and value[1] == [0.5, -2.0]
    assert value[2].names == ["a"] and value[2][0] == ["p", "q"]  # the second "names" symbol is a reference


def test_damaged_or_foreign_files_are_clear_errors(tmp_path):
    write_db(tmp_path / "Rdata", NOVELS)
    data = (tmp_path / "Rdata.rdb").read_bytes()
    (tmp_path / "Rdata.rdb").write_bytes(data[:20])
    with pytest.raises(ValueError, match="lies outside"):
        read_lazyload(tmp_path / "Rdata")
    with pytest.raises(ValueError, match="not an R XDR serialization"):
        unserialize(b"A\n1\n")
    with pytest.raises(ValueError, match="SEXP type 3 is not read here"):
        unserialize(XDR().bytes() + struct.pack(">i", 3))
    with pytest.raises(ValueError, match="ends early"):
        unserialize(serialize(["a", "b"])[:-1])
    (tmp_path / "Rdata.rdx").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="not a gzip-compressed R index"):
        read_lazyload(tmp_path / "Rdata")
    with pytest.raises(FileNotFoundError, match="a .rdx and a .rdb"):
        read_lazyload(tmp_path / "Missing")
