"""The size grammar (``modelring.sizes``): one reading of ring sizes and pruning budgets for config, plan and prune."""
import re
from fractions import Fraction

import pytest

from modelring.sizes import check_not_a_percentage, resolve_ring_size, size_problem, split_proportional


@pytest.mark.parametrize("count, weights", [(11, [8, 20, 5]), (1000, [13824, 46080, 184320]), (7, [1, 1, 1, 1]),
                                            (97, [7, 13, 1000, 5])])
def test_split_is_exact_largest_remainder(count, weights):
    parts = split_proportional(count, weights)
    assert sum(parts) == count and min(parts) >= 1
    exact = [Fraction(count * w, sum(weights)) for w in weights]
    for part, share in zip(parts, exact):  # every part is its share rounded down or up (or the minimum)
        assert part in (share.numerator // share.denominator, -(-share.numerator // share.denominator), 1)


def test_split_where_the_minimum_pushes_the_sum_over_takes_from_the_largest():
    assert split_proportional(5, [3, 1000, 2]) == [1, 3, 1]  # shares 0.015, 4.97, 0.01: both small parts get 1


def test_split_ties_go_to_the_earlier_part_and_minimum_zero_allows_empty_parts():
    assert split_proportional(11, [8, 20, 5]) == [3, 7, 1]  # all three remainders equal (22/33): earlier first
    assert split_proportional(3, [1, 1, 1]) == [1, 1, 1]
    assert split_proportional(2, [1, 1, 1], minimum=0) == [1, 1, 0]
    assert split_proportional(10, [100, 300, 600], minimum=0) == [1, 3, 6]
    with pytest.raises(ValueError, match="at least 1 entry"):
        split_proportional(2, [5, 5, 5])


@pytest.mark.parametrize("size, problem", [(0, "must be >= 1"), (1.5, "in \\(0, 1\\]"), ("2 parsecs", "byte budget"),
                                           (5, None), (0.05, None), ("2MB", None), ("1.5 MiB", None), (True, None)])
def test_size_problem(size, problem):
    found = size_problem(size)
    if problem is None:
        assert found is None
    else:
        assert found is not None and re.search(problem, found)


def test_byte_budgets_count_entries_of_the_element_size():
    assert resolve_ring_size("2MB", 10**9) == 500_000
    assert resolve_ring_size("1KiB", 10**9, element_size=2) == 512
    assert resolve_ring_size(0.5, 7) == 4  # round half to even: 3.5 -> 4


def test_an_int_percentage_is_refused_only_when_tiny():
    with pytest.raises(ValueError, match="for 5% pass 0.05"):
        check_not_a_percentage(5, 269_000)
    check_not_a_percentage(5, 4_000)  # 5 of 4,000 weights: plausibly meant
    check_not_a_percentage(0.05, 269_000)
