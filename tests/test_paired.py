"""benchmarks.paired: the paired tests behind the quality tables' verdicts, against hand-computed values."""

import math
import random

import pytest

from benchmarks.paired import compare, holm, mcnemar_exact, sign_flip_test


def test_mcnemar_exact_matches_the_binomial_tail():
    assert mcnemar_exact([True] * 10, [False] * 10) == pytest.approx(2 / 2**10)
    # 2 discordant pairs one way, 8 the other: 2 * P(B <= 2), B ~ Bin(10, 1/2)
    a = [True] * 8 + [False] * 2 + [True] * 5
    b = [False] * 8 + [True] * 2 + [True] * 5
    assert mcnemar_exact(a, b) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert mcnemar_exact(a, b) == mcnemar_exact(b, a)
    assert mcnemar_exact([True, False], [True, False]) == 1.0  # no discordant pair
    assert mcnemar_exact([True, False], [False, True]) == 1.0  # one each way


def test_sign_flip_exact_and_sampled():
    # all five differences positive: only the all-plus and all-minus flips are as extreme
    assert sign_flip_test([1, 2, 3, 4, 5], [0] * 5) == pytest.approx(2 / 32)
    assert sign_flip_test([0.5] * 4, [0.5] * 4) == 1.0
    # n > 16 is sampled: a clear shift is tiny, a null one is not
    rng = random.Random(1)
    base = [rng.random() for _ in range(40)]
    assert sign_flip_test([x + 0.3 for x in base], base, resamples=2000) < 0.01
    noise = [rng.gauss(0, 1) for _ in range(40)]
    assert sign_flip_test(noise, [0] * 40, resamples=2000) > 0.05 or abs(sum(noise)) > 2 * math.sqrt(40)


def test_compare_verdicts_and_bad_input():
    better = compare([True] * 12 + [False] * 8, [False] * 12 + [False] * 8, kind="hits")
    assert better["verdict"] == "a > b" and better["diff"] == pytest.approx(60.0) and better["n"] == 20
    worse = compare([0.1] * 10, [0.9] * 10, kind="scores")
    assert worse["verdict"] == "a < b" and worse["diff"] == pytest.approx(-0.8)
    tie = compare([True, False, True], [True, True, False], kind="hits")
    assert tie["verdict"] == "no significant difference" and tie["p"] == 1.0
    with pytest.raises(ValueError, match="same length"):
        compare([True], [True, False], kind="hits")
    with pytest.raises(ValueError, match="empty"):
        mcnemar_exact([], [])
    with pytest.raises(ValueError, match="kind"):
        compare([1.0], [0.0], kind="means")


def test_holm_adjusts_in_step_down_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_student_t_helpers_match_table_values():
    from benchmarks.paired import paired_t, two_sided_p, welch

    # critical values of Student's t at two-sided 0.05 and 0.01
    assert two_sided_p(2.776, 4) == pytest.approx(0.05, abs=5e-4)
    assert two_sided_p(2.228, 10) == pytest.approx(0.05, abs=5e-4)
    assert two_sided_p(3.169, 10) == pytest.approx(0.01, abs=2e-4)
    assert two_sided_p(0.0, 7) == pytest.approx(1.0) and two_sided_p(math.inf, 3) == 0.0
    # paired t of b - a: differences 1, 2, 3 -> mean 2, sd 1, t = 2 * sqrt(3)
    assert paired_t([0, 0, 0], [1, 2, 3]) == pytest.approx(2 * math.sqrt(3))
    assert paired_t([1, 1], [2, 2]) == math.inf and paired_t([1, 1], [1, 1]) == 0.0
    # Welch: equal sizes and variances give the pooled t and df = 2n - 2
    t, df = welch([1, 2, 3, 4], [3, 4, 5, 6])
    assert t == pytest.approx(2 / math.sqrt(2 * (5 / 3) / 4)) and df == pytest.approx(6.0)
