"""Character vectors out of R's lazy-load databases (``<name>.rdx`` + ``<name>.rdb``), with the standard library
only: how R packages ship their data sets (e.g. Debian's ``r-cran-janeaustenr``, Jane Austen's six novels, which
``scripts/fetch_text.sh austen`` turns into text files without installing R).

The ``.rdx`` file is a gzip-compressed serialization of a list: ``variables`` (name -> (offset, length) into the
``.rdb``), ``references`` and ``compressed`` (1 zlib, 2 bzip2, 3 xz). Each ``.rdb`` entry is a 4-byte big-endian
uncompressed length, then (for 2 and 3) one byte naming the compression of that entry (``Z``, ``2``, ``X``, ``0``
stored), then the compressed serialization of the object. Serializations are R's XDR format (``X\\n``, versions 2
and 3). Supported objects: NULL, character, logical, integer and double vectors, generic vectors (lists),
pairlists and symbols, with their attributes: what data sets are made of. Anything else (closures, environments,
bytecode) is a clear error naming the type.

Usage: ``python -m modelring.data.rdata ROOT OUT`` writes every character vector of ``ROOT.rdx``/``ROOT.rdb`` to
``OUT/<name>.txt`` (its elements as lines; NA as an empty line).
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import sys
import zlib
from pathlib import Path

_NIL, _REF, _SYMBOL, _PAIRLIST, _CHAR = 254, 255, 1, 2, 9
_SENTINELS = {253, 252, 251, 250, 249, 248, 247, 246, 242}  # environments, missing argument, ... (read as None)
_VECTORS = {16: "character", 19: "list", 20: "expression"}
_ATOMS = {10: ("i", 4), 13: ("i", 4), 14: ("d", 8)}  # logical, integer, double
_NA_INT = -2 ** 31


class RVector(list):
    """An R vector as a list, with its attributes (``names`` as a list of str, ...) in ``attrs``."""

    def __init__(self, values, attrs: dict | None = None, kind: str = "list"):
        super().__init__(values)
        self.attrs = attrs or {}
        self.kind = kind

    @property
    def names(self) -> list[str] | None:
        return self.attrs.get("names")


class _Reader:
    def __init__(self, data: bytes, where: str):
        self.data, self.at, self.refs, self.where = data, 0, [], where

    def _take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ValueError(f"{self.where}: the serialization ends early (damaged or truncated)")
        chunk = self.data[self.at:self.at + n]
        self.at += n
        return chunk

    def _int(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def header(self) -> None:
        kind = self._take(2)
        if kind != b"X\n":
            raise ValueError(f"{self.where}: not an R XDR serialization (starts {kind!r}; ascii 'A' and native 'B' "
                             "formats are not read)")
        version = self._int()
        self._int(), self._int()  # the writer's and the oldest reader's R versions
        if version == 3:
            self._take(self._int())  # the native encoding's name
        elif version != 2:
            raise ValueError(f"{self.where}: serialization format version {version} (2 and 3 are read)")

    def item(self):
        flags = self._int()
        kind, has_attr, has_tag = flags & 0xFF, bool(flags & 1 << 9), bool(flags & 1 << 10)
        if kind == _NIL or kind in _SENTINELS:
            return None
        if kind == _REF:
            index = flags >> 8 or self._int()
            return self.refs[index - 1]
        if kind == _SYMBOL:
            name = self.item()
            self.refs.append(name)
            return name
        if kind == _CHAR:
            length = self._int()
            return None if length == -1 else self._take(length).decode("utf-8", "replace")
        if kind == _PAIRLIST:  # (attributes, tag, value, rest): read as a list of (tag, value)
            if has_attr:
                self.item()
            tag = self.item() if has_tag else None
            value, rest = self.item(), self.item()
            return [(tag, value), *(rest or [])]
        if kind in _VECTORS:
            values = [self.item() for _ in range(self._int())]
            name = _VECTORS[kind]
        elif kind in _ATOMS:
            code, size = _ATOMS[kind]
            count = self._int()
            values = list(struct.unpack(f">{count}{code}", self._take(size * count)))
            if code == "i":
                values = [None if v == _NA_INT else v for v in values]
            name = {10: "logical", 13: "integer", 14: "double"}[kind]
        else:
            raise ValueError(f"{self.where}: R object of SEXP type {kind} is not read here (data vectors and lists "
                             "are)")
        attrs = {tag: value for tag, value in self.item()} if has_attr else {}
        return RVector(values, attrs, name)


def unserialize(data: bytes, where: str = "R data"):
    """The R object of one XDR serialization (see the module docstring for what is read)."""
    reader = _Reader(data, where)
    reader.header()
    return reader.item()


def _decompress(blob: bytes, compressed: int, where: str) -> bytes:
    if len(blob) < 5:
        raise ValueError(f"{where}: entry of {len(blob)} bytes is too short")
    size, body = struct.unpack(">I", blob[:4])[0], blob[4:]
    if compressed == 1:
        out = zlib.decompress(body)
    else:
        kind, body = body[:1], body[1:]
        decoders = {b"Z": zlib.decompress, b"2": bz2.decompress, b"X": lzma.decompress, b"0": bytes}
        if kind not in decoders:
            raise ValueError(f"{where}: unknown entry compression {kind!r}")
        out = decoders[kind](body)
    if len(out) != size:
        raise ValueError(f"{where}: decompressed to {len(out)} bytes, its header says {size}")
    return out


def read_lazyload(root: str | Path) -> dict[str, object]:
    """Every object of the lazy-load database ``root`` (``root.rdx`` and ``root.rdb``), by name."""
    root = Path(root)
    rdx, rdb = root.with_name(root.name + ".rdx"), root.with_name(root.name + ".rdb")
    for path in (rdx, rdb):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (an R lazy-load database is a .rdx and a .rdb)")
    try:
        index = unserialize(gzip.decompress(rdx.read_bytes()), str(rdx))
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{rdx}: not a gzip-compressed R index ({err})") from None
    if not isinstance(index, RVector) or not index.names or "variables" not in index.names:
        raise ValueError(f"{rdx}: not a lazy-load index (a list with 'variables')")
    fields = dict(zip(index.names, index))
    compressed = fields.get("compressed") or [1]
    compressed = int(compressed[0]) if compressed[0] is not None else 1
    variables = fields["variables"]
    data, out = rdb.read_bytes(), {}
    for name, (offset, length) in zip(variables.names or [], variables):
        where = f"{rdb} ({name})"
        if offset < 0 or length < 0 or offset + length > len(data):
            raise ValueError(f"{where}: entry at {offset}+{length} lies outside the {len(data)}-byte file")
        out[name] = unserialize(_decompress(data[offset:offset + length], compressed, where), where)
    return out


def write_texts(root: str | Path, out: str | Path) -> list[Path]:
    """Write every character vector of the database ``root`` to ``out/<name>.txt`` (elements as lines); returns
    the files written (each written to a temporary name, then renamed)."""
    from ..atomic import write_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, value in read_lazyload(root).items():
        if isinstance(value, RVector) and value.kind == "character":
            text = "\n".join(line or "" for line in value) + "\n"
            path = out / f"{name}.txt"
            write_atomic(path, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
            written.append(path)
    if not written:
        raise ValueError(f"{root}: no character vector in this database")
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m modelring.data.rdata ROOT OUT  (ROOT.rdx and ROOT.rdb -> OUT/<name>.txt)",
              file=sys.stderr)
        return 2
    for path in write_texts(*argv):
        print(f"{path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
