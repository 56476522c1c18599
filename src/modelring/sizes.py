"""The size grammar: how many ring entries (or kept weights) a size asks for. Torch-free, so the config checks,
planning and pruning share one reading of ``ring.size`` / ``prune.keep``.

A size is an int (that many entries), a float in (0, 1] (that fraction of the weights it applies to) or a byte
budget string ("2MB", "1.5MiB", "800kB": that many bytes of ``element_size``-byte entries).
"""
from __future__ import annotations

import re

RingSize = int | float | str

BYTE_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]?i?B)\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def size_problem(size) -> str | None:
    """Why ``size`` is not a size (None when it is, or when its type is wrong: the config schema reports types).

    Args:
        size: a value read from a config (``ring.size``, ``prune.keep``).

    Returns:
        A one-line reason, or None.
    """
    if isinstance(size, bool) or not isinstance(size, (int, float, str)):
        return None
    if isinstance(size, int) and size < 1:
        return "an int size counts entries and must be >= 1"
    if isinstance(size, float) and not 0.0 < size <= 1.0:
        return "a float size is a fraction of the generated weights, in (0, 1]; pass an int for a count"
    if isinstance(size, str) and not BYTE_SIZE.match(size):
        return "a text size is a byte budget such as '2MB', '1.5MiB' or '800kB'"
    return None


def resolve_ring_size(size: RingSize, total: int, element_size: int = 4) -> int:
    """Entries for a size: an int as it is, a float as a fraction of ``total``, a byte budget in entries.

    Args:
        size: the size (see the module docstring).
        total: the number of weights a fraction applies to.
        element_size: bytes per entry, for byte budgets.

    Returns:
        The number of entries, at least 1.

    Raises:
        TypeError, ValueError: a size of the wrong type, out of range, or unreadable.
    """
    if isinstance(size, bool) or not isinstance(size, (int, float, str)):
        raise TypeError(f"ring size must be an int, a float in (0, 1] or a byte string like '2MB', got {size!r}")
    if isinstance(size, int):
        if size < 1:
            raise ValueError(f"ring size must be at least 1 entry, got {size}")
        return size
    if isinstance(size, float):
        if not (0.0 < size <= 1.0):
            raise ValueError(f"a float ring size is a fraction of the {total:,} generated weights and must be "
                             f"in (0, 1], got {size}; pass an int for a number of entries")
        return max(1, round(size * total))
    match = BYTE_SIZE.match(size)
    if not match:
        raise ValueError(f"cannot read ring size {size!r}; use e.g. '2MB', '1.5MiB' or '800kB'")
    entries = int(float(match.group(1)) * _UNITS[match.group(2).lower()]) // element_size
    if entries < 1:
        raise ValueError(f"ring size {size!r} is smaller than one {element_size}-byte entry")
    return entries


def check_not_a_percentage(size: RingSize, total: int) -> None:
    """Refuse an int size of at most 100 that is under 0.1% of ``total``: almost always a percentage written as
    an int (``ring_size=5`` meaning 5%)."""
    if isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= 100 and size * 1000 < total:
        raise ValueError(f"ring_size={size} means {size} ring entries, {size / total:.4%} of the "
                         f"{total:,} generated weights; for {size}% pass {size / 100} (a float is a "
                         f"fraction), for {size} entries pass strict=False")


def split_proportional(count: int, weights: list[int], *, minimum: int = 1) -> list[int]:
    """Split ``count`` into integer parts proportional to ``weights`` by largest remainder (exact integer
    arithmetic; ties go to the earlier part), each part at least ``minimum``.

    Args:
        count: the total to split.
        weights: one positive weight per part.
        minimum: the least any part gets (1 for ring sizes, 0 for pruning budgets).

    Returns:
        Parts summing to ``count``; with ``minimum=0`` each part is at most ``count * weight / sum(weights)``
        rounded up, so never more than its weight when ``count <= sum(weights)``.
    """
    if count < minimum * len(weights):
        raise ValueError(f"a ring size of {count} cannot give each of {len(weights)} rings at least {minimum} "
                         f"entr{'y' if minimum == 1 else 'ies'}")
    total = sum(weights)
    parts = [max(minimum, count * w // total) for w in weights]
    # what each part still lacks of its exact share count * w / total, in units of 1 / total
    order = sorted(range(len(weights)), key=lambda i: (-(count * weights[i] - parts[i] * total), i))
    for i in order[: max(0, count - sum(parts))]:  # (a negative slice bound would add to all but the last)
        parts[i] += 1
    while sum(parts) > count:  # only when the minimum pushed the sum over
        parts[max(range(len(parts)), key=lambda i: parts[i])] -= 1
    return parts
