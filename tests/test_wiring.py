"""Wiring: bijections, even sampling, golden fingerprints, and bit-identity across processes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import entry_of, fingerprint, make_spec
from modelring import wiring as wr

EXPECT = Path(__file__).parent / "expect"
GOLDEN = [dict(case, wiring_version=data["wiring_version"]) for name in ("wiring_v1.json", "wiring_v2.json")
          for data in [json.loads((EXPECT / name).read_text())] for case in data["cases"]]


def test_hash32_matches_python_ints_and_reference_values():
    xs = [0, 1, 2, 12345, 2**31, 2**32 - 1]
    tensor = wr.hash32(torch.tensor(xs, dtype=torch.int64)).tolist()
    assert tensor == [wr.hash32(x) for x in xs]
    # lowbias32 reference values, computed with plain uint32 arithmetic
    def reference(x):
        x ^= x >> 16; x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15; x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)
    assert tensor == [reference(x) for x in xs]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 17, 255, 256, 257, 1000, 65537])
def test_keyed_permutation_is_a_bijection(n):
    perm = wr.keyed_permutation(n, key=99)
    assert torch.equal(perm.sort().values, torch.arange(n))


def test_permutation_depends_on_key_and_is_not_identity():
    a, b = wr.keyed_permutation(1000, 1), wr.keyed_permutation(1000, 2)
    assert not torch.equal(a, b)
    assert (a == torch.arange(1000)).float().mean() < 0.05


def test_inverse_permutation():
    perm = wr.keyed_permutation(777, 5)
    assert torch.equal(perm[wr.inverse_permutation(perm)], torch.arange(777))


@pytest.mark.parametrize("total,size", [(10, 3), (100, 7), (1000, 999), (1000, 1000), (1000, 1), (12345, 678),
                                        (4096, 64), (50, 80), (100003, 9999)])
@pytest.mark.parametrize("block", [1, 16])
def test_even_sampling_uses_each_entry_floor_or_ceil_times(total, size, block):
    spec = make_spec([[total]], size, seed=total, block=block)
    counts = torch.bincount(entry_of(spec), minlength=size)
    lo, hi = total // size, -(-total // size)
    assert counts.min() >= lo and counts.max() <= hi
    assert counts.sum() == total


@pytest.mark.parametrize("block", [1, 7, 16])
def test_even_sampling_with_many_layers_and_tails(block):
    shapes = [[3, 5], [16, 16, 3, 3], [7], [1], [33, 2], [64, 3]]
    spec = make_spec(shapes, 97, seed=5, block=block)
    positions = torch.sort(entry_of(spec)).values  # entries; check pi itself is a bijection too
    counts = torch.bincount(positions, minlength=97)
    assert counts.min() >= spec.total // 97 and counts.max() <= -(-spec.total // 97)
    sizes = [s.numel for s in spec.segments]
    pi = wr.tiled_positions(sizes, block, spec.key(1))
    assert torch.equal(pi.sort().values, torch.arange(spec.total))


def test_permute_false_reads_j_mod_n():
    spec = make_spec([[10, 10]], 7, permute=False, block=4)
    assert torch.equal(entry_of(spec), torch.arange(100) % 7)


def test_signs_are_balanced_and_independent_of_position():
    bits = wr.sign_bits(0, 100_000, key=17).float()
    assert abs(bits.mean().item() - 0.5) < 0.01
    assert abs((bits[1:] * bits[:-1]).mean().item() - 0.25) < 0.01  # no neighbour correlation


def test_independent_sampling_is_roughly_uniform_and_uneven():
    spec = make_spec([[20000]], 100, sampling="independent")
    counts = torch.bincount(entry_of(spec), minlength=100)
    assert counts.min() > 120 and counts.max() < 280
    assert counts.max() - counts.min() > 2  # it really is not even sampling


def test_normal_init_statistics():
    x = wr.normal_init(200_000, key=3)
    assert abs(x.mean().item()) < 0.01 and abs(x.std().item() - 1) < 0.01


def test_derive_key_rejects_negative_words():
    with pytest.raises(ValueError, match="non-negative"):
        wr.derive_key(-1)


@pytest.mark.parametrize("case", GOLDEN, ids=lambda c: f"v{c['wiring_version']}-{c['shapes']}-{c.get('block')}")
def test_golden_wiring(case):
    options = {k: v for k, v in case.items() if k not in ("shapes", "size", "seed", "expect")}
    spec = make_spec(case["shapes"], case["size"], seed=case["seed"], **options)
    assert fingerprint(spec) == case["expect"], "wiring changed: bump WIRING_VERSION and regenerate expect files"


@pytest.mark.parametrize("case", [c for c in GOLDEN if c["wiring_version"] == 1 and c.get("block", 1) != 1],
                         ids=lambda c: f"{c['shapes']}-{c.get('block')}")
def test_version_2_keeps_every_version_1_layout_but_block_1(case):
    options = {k: v for k, v in case.items() if k not in ("shapes", "size", "seed", "expect", "wiring_version")}
    spec = make_spec(case["shapes"], case["size"], seed=case["seed"], wiring_version=2, **options)
    assert fingerprint(spec) == case["expect"]


def test_same_wiring_in_a_separate_process():
    code = ("import json, sys; sys.path.insert(0, 'tests'); from helpers import make_spec, fingerprint; "
            "print(json.dumps(fingerprint(make_spec([[300, 70], [9, 9]], 4321, seed=11, block=1))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent)
    assert json.loads(out.stdout) == fingerprint(make_spec([[300, 70], [9, 9]], 4321, seed=11, block=1))
