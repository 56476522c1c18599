"""Integer keys and a 32-bit hash, identical on every machine, device and torch version.

``hash32`` (lowbias32) works on Python ints and int64 tensors alike, with every intermediate below 2**49, so no
random generator stream and no overflow is ever involved. The wiring (``wiring.py``) and the keyed data
augmentation of the readers (``data/``) both derive their randomness from here; this module imports nothing of
the package, so ``data/`` does not depend on the core.
"""
from __future__ import annotations

_MASK32 = 0xFFFFFFFF
_MUL_A = 0x7FEB352D  # lowbias32 constants (Chris Wellons' hash-prospector), good avalanche for 32-bit words
_MUL_B = 0x846CA68B


def _mul32(x, constant: int):
    """(x * constant) mod 2**32 for 0 <= x < 2**32, with every intermediate below 2**49 (no int64 overflow)."""
    low = x * (constant & 0xFFFF)
    high = ((x * (constant >> 16)) & 0xFFFF) << 16
    return (low + high) & _MASK32


def hash32(x):
    """A 32-bit integer hash (lowbias32) of x in [0, 2**32); works on Python ints and int64 tensors alike."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, _MUL_A)
    x = x ^ (x >> 15)
    x = _mul32(x, _MUL_B)
    return x ^ (x >> 16)


def derive_key(*words: int) -> int:
    """Fold integers (seed, ring index, purpose, ...) into one 32-bit key, order-sensitive."""
    key = 0x9E3779B9
    for word in words:
        if word < 0:
            raise ValueError(f"wiring key words must be non-negative integers, got {word}")
        for chunk in _split32(int(word)):
            key = hash32(key ^ chunk)
    return key


def _split32(word: int) -> list[int]:
    chunks = [word & _MASK32]
    word >>= 32
    while word:
        chunks.append(word & _MASK32)
        word >>= 32
    return chunks
