"""harness.stats against known values, closed forms computed here by hand, and scipy called
directly on fixed data; the regression check catches a truly worse candidate and lets noise pass."""

from __future__ import annotations

import math

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst
from scipy import stats as sps

from harness import stats


def wilson_closed_form(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The textbook Wilson score interval, as an independent cross-check of scipy's."""
    z = sps.norm.ppf(0.5 + confidence / 2)
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return center - half, center + half


# --- rate_ci -----------------------------------------------------------------------------------

def test_wilson_known_value():
    low, high = stats.rate_ci(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert (low, high) == pytest.approx(wilson_closed_form(8, 10), abs=1e-12)


@pytest.mark.parametrize("k, n, confidence", [(0, 5, 0.95), (5, 5, 0.95), (37, 120, 0.9),
                                              (199, 200, 0.99)])
def test_wilson_matches_closed_form(k, n, confidence):
    low, high = stats.rate_ci(k, n, confidence)
    assert (low, high) == pytest.approx(wilson_closed_form(k, n, confidence), abs=1e-9)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_rate_ci_no_cases_is_nan():
    assert all(math.isnan(x) for x in stats.rate_ci(0, 0))


def test_rate_ci_rejects_bad_confidence():
    with pytest.raises(ValueError):
        stats.rate_ci(1, 2, confidence=1.0)


# --- mean_ci -----------------------------------------------------------------------------------

PATTERN = [0.2, 0.55, 0.9, 0.4, 0.7, 0.65, 0.1, 0.8, 0.5, 0.35]


def test_mean_ci_matches_scipy_bootstrap():
    got = stats.mean_ci(PATTERN, seed=3)
    ref = sps.bootstrap((numpy.array(PATTERN),), numpy.mean, n_resamples=2000, method="BCa",
                        confidence_level=0.95, rng=numpy.random.default_rng(3)).confidence_interval
    assert got == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_mean_ci_contains_mean_and_narrows_with_n():
    small = PATTERN
    large = PATTERN * 10  # same mean, ten times the cases
    mean = sum(small) / len(small)
    widths = []
    for values in (small, large):
        low, high = stats.mean_ci(values)
        assert low < mean < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # roughly 1/sqrt(10) as wide


def test_mean_ci_is_reproducible_and_seeded():
    assert stats.mean_ci(PATTERN) == stats.mean_ci(PATTERN)
    assert stats.mean_ci(PATTERN, seed=0) != stats.mean_ci(PATTERN, seed=1)


def test_mean_ci_degenerate_cases():
    assert all(math.isnan(x) for x in stats.mean_ci([]))
    assert stats.mean_ci([0.7]) == (0.7, 0.7)
    assert stats.mean_ci([0.5] * 8) == (0.5, 0.5)
    # two values: too few to resample; the t interval
    expected = sps.t.interval(0.95, 1, loc=0.5, scale=sps.sem([0.4, 0.6]))
    assert stats.mean_ci([0.4, 0.6]) == pytest.approx(expected)
    # lumpy 0/1 data with a single 1 still gets a finite interval containing the mean
    low, high = stats.mean_ci([0.0] * 9 + [1.0])
    assert math.isfinite(low) and math.isfinite(high) and low <= 0.1 <= high


def test_mean_ci_rejects_nan():
    with pytest.raises(ValueError):
        stats.mean_ci([0.1, math.nan, 0.3])


# --- metric_ci ---------------------------------------------------------------------------------

def test_metric_ci_by_aggregate():
    assert stats.metric_ci([1.0, 0.0, 1.0, 1.0, 0.0], "rate") == stats.rate_ci(3, 5)
    assert stats.metric_ci(PATTERN, "mean") == stats.mean_ci(PATTERN)
    for how in ("min", "max", "value"):  # extremes and suite values bring no interval here
        assert stats.metric_ci(PATTERN, how) is None
    assert stats.metric_ci(PATTERN, "p95") is not None and stats.metric_ci(PATTERN, "count") is not None


# --- min_cases_for -----------------------------------------------------------------------------

def test_min_cases_for_plausible_and_minimal():
    n = stats.min_cases_for(0.8, margin=0.05)
    assert 240 <= n <= 260
    # within the margin at n and not at n - 1, at both counts next to 0.8 * n (hand-computed)
    def widest(m: int) -> float:
        counts = {math.floor(0.8 * m + 1e-9), math.ceil(0.8 * m - 1e-9)}
        return max((h - lo) / 2 for lo, h in (wilson_closed_form(k, m) for k in counts))

    assert widest(n) < 0.05 <= widest(n - 1)


def test_min_cases_for_shrinks_with_margin_and_confidence():
    base = stats.min_cases_for(0.8, margin=0.05)
    assert stats.min_cases_for(0.8, margin=0.1) < base
    assert stats.min_cases_for(0.8, margin=0.05, confidence=0.9) < base
    # rates near 0.5 are the noisiest
    assert stats.min_cases_for(0.5, margin=0.05) > base


def test_min_cases_for_cap_and_validation():
    assert stats.min_cases_for(0.5, margin=1e-4) == stats.MAX_CASES
    with pytest.raises(ValueError):
        stats.min_cases_for(1.5)
    with pytest.raises(ValueError):
        stats.min_cases_for(0.8, margin=0.0)


# --- mcnemar -----------------------------------------------------------------------------------

def paired_lists(both: int, b01: int, b10: int, neither: int) -> tuple[list[bool], list[bool]]:
    a = [True] * both + [False] * b01 + [True] * b10 + [False] * neither
    b = [True] * both + [True] * b01 + [False] * b10 + [False] * neither
    return a, b


def test_mcnemar_exact():
    a, b = paired_lists(both=30, b01=1, b10=9, neither=5)
    result = stats.mcnemar(a, b)
    assert (result["b01"], result["b10"], result["n"], result["method"]) == (1, 9, 45, "exact")
    assert result["p_value"] == pytest.approx(2 * sps.binom.cdf(1, 10, 0.5))
    assert result["p_value"] == pytest.approx(0.02148, abs=1e-5)
    # symmetric in direction
    assert stats.mcnemar(b, a)["p_value"] == pytest.approx(result["p_value"])


def test_mcnemar_chi2_on_large_counts():
    a, b = paired_lists(both=100, b01=10, b10=30, neither=20)
    result = stats.mcnemar(a, b)
    statistic = (abs(10 - 30) - 1) ** 2 / (10 + 30)
    assert result["method"] == "chi2"
    assert result["statistic"] == pytest.approx(statistic)
    assert result["p_value"] == pytest.approx(sps.chi2.sf(statistic, 1))


def test_mcnemar_no_discordant_pairs():
    a, b = paired_lists(both=10, b01=0, b10=0, neither=3)
    assert stats.mcnemar(a, b)["p_value"] == 1.0
    assert stats.mcnemar([], [])["p_value"] == 1.0


def test_mcnemar_length_mismatch():
    with pytest.raises(ValueError):
        stats.mcnemar([True], [True, False])


# --- paired_diff_ci / wilcoxon_p -------------------------------------------------------------

BASE = [0.2 + 0.6 * ((7 * i) % 40) / 40 for i in range(40)]  # a spread of scores in [0.2, 0.8)
ZERO_MEAN_NOISE = [m * s for m in (0.01, 0.02, 0.03, 0.04, 0.05) for s in (1, -1, -1, 1)] * 2


def test_paired_diff_ci_contains_true_difference():
    assert abs(sum(ZERO_MEAN_NOISE)) < 1e-12
    candidate = [x + 0.1 + e for x, e in zip(BASE, ZERO_MEAN_NOISE)]
    diff, low, high = stats.paired_diff_ci(BASE, candidate)
    assert diff == pytest.approx(0.1)
    assert low < 0.1 < high
    # pairing: far narrower than the spread of the scores themselves
    assert high - low < 0.05
    # close to the t interval on the per-case differences (same data, different method)
    d = numpy.array(candidate) - numpy.array(BASE)
    t_low, t_high = sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    assert (low, high) == pytest.approx((t_low, t_high), abs=0.005)


def test_paired_diff_ci_degenerate_cases():
    assert all(math.isnan(x) for x in stats.paired_diff_ci([], []))
    assert stats.paired_diff_ci([0.3], [0.5]) == pytest.approx((0.2, 0.2, 0.2))
    shifted = [x + 0.25 for x in BASE]  # every case moved by the same amount
    assert stats.paired_diff_ci(BASE, shifted) == pytest.approx((0.25, 0.25, 0.25))
    with pytest.raises(ValueError):
        stats.paired_diff_ci([0.1, 0.2], [0.1])


def test_wilcoxon_matches_scipy():
    candidate = [x - 0.02 + e for x, e in zip(BASE, ZERO_MEAN_NOISE)]
    assert stats.wilcoxon_p(BASE, candidate) == pytest.approx(sps.wilcoxon(BASE, candidate).pvalue)


def test_wilcoxon_degenerate_cases():
    assert stats.wilcoxon_p(BASE, BASE) == 1.0
    one_changed = list(BASE)
    one_changed[3] += 0.5
    assert stats.wilcoxon_p(BASE, one_changed) == 1.0


# --- regression --------------------------------------------------------------------------------

def test_regression_catches_worse_pass_fail_candidate():
    # baseline passes 90/100; the candidate fails 25 of those and gains only 2 of the other 10
    a, b = paired_lists(both=65, b01=2, b10=25, neither=8)
    assert sum(a) == 90 and sum(b) == 67
    result = stats.regression(a, b, pass_fail=True, delta=0.5)  # delta too loose to matter
    assert result["diff"] == pytest.approx(-0.23)
    assert result["significant_regression"] is True
    assert result["drop_too_large"] is False
    assert result["passed"] is False
    assert result["ci_low"] < -0.23 < result["ci_high"] < 0


def test_regression_lets_pass_fail_noise_through():
    a, b = paired_lists(both=87, b01=3, b10=3, neither=7)  # same pass count, 3 swaps each way
    result = stats.regression(a, b, pass_fail=True, delta=0.05)
    assert result["diff"] == 0.0
    assert result["p_value"] == 1.0
    assert not result["significant_regression"] and not result["drop_too_large"]
    assert result["passed"] is True


def test_regression_catches_worse_numeric_candidate():
    candidate = [x - 0.2 + 0.5 * e for x, e in zip(BASE, ZERO_MEAN_NOISE)]
    result = stats.regression(BASE, candidate, pass_fail=False, delta=0.5)
    assert result["diff"] == pytest.approx(-0.2)
    assert result["p_value"] < 1e-6
    assert result["significant_regression"] is True
    assert result["passed"] is False
    # and with a tighter delta the drop itself is too large
    assert stats.regression(BASE, candidate, pass_fail=False, delta=0.1)["drop_too_large"] is True


def test_regression_lets_numeric_noise_through():
    candidate = [x + e for x, e in zip(BASE, ZERO_MEAN_NOISE)]
    result = stats.regression(BASE, candidate, pass_fail=False, delta=0.05)
    assert result["diff"] == pytest.approx(0.0, abs=1e-12)
    assert result["p_value"] > 0.5
    assert result["passed"] is True


def test_regression_large_but_not_significant_drop_fails():
    # 5 cases, 2 lost: too few to be significant, but a 0.4 drop is not acceptable
    a = [True] * 5
    b = [True, True, True, False, False]
    result = stats.regression(a, b, pass_fail=True, delta=0.1)
    assert result["significant_regression"] is False
    assert result["drop_too_large"] is True
    assert result["passed"] is False


def test_regression_without_cases_fails_closed():
    result = stats.regression([], [], pass_fail=True, delta=0.05)
    assert math.isnan(result["diff"]) and result["passed"] is False


def test_percentile_interval_contains_the_percentile_and_count_scales_wilson():
    from harness.stats import metric_ci, percentile_ci, rate_ci

    values = [0.5 + 0.01 * i for i in range(100)]  # p95 = 1.4405
    low, high = percentile_ci(values, 95)
    assert low <= 1.4405 <= high and high - low < 0.2
    assert percentile_ci([2.0] * 10, 95) == (2.0, 2.0)
    assert metric_ci(values, "p95") == (low, high)
    flags = [1.0] * 8 + [0.0] * 2
    w_low, w_high = rate_ci(8, 10)
    assert metric_ci(flags, "count") == pytest.approx((w_low * 10, w_high * 10))
    assert metric_ci(values, "max") is None


# --- minimum detectable regression ----------------------------------------------------------------

def test_mdr_of_a_perfect_rate_by_hand():
    # at 1.0 the test rejects at the first failure; 80% power needs q**n = 0.2
    from harness.stats import min_detectable_regression

    assert min_detectable_regression(1.0, 72) == pytest.approx(1 - 0.2 ** (1 / 72), abs=1e-6)


@pytest.mark.parametrize("rate, n", [(0.34, 150), (0.8, 100), (0.98, 55), (0.5, 30)])
def test_mdr_is_the_drop_the_exact_test_sees_with_80_percent_power(rate, n):
    from scipy import stats as st

    from harness.stats import min_detectable_regression

    drop = min_detectable_regression(rate, n)
    critical = max(k for k in range(n + 1) if st.binom.cdf(k, n, rate) <= 0.05)
    assert st.binom.cdf(critical, n, rate - drop) == pytest.approx(0.8, abs=1e-6)  # power at the MDR
    assert st.binom.cdf(critical, n, rate - drop / 2) < 0.8  # a smaller drop is seen less often


@settings(max_examples=30, deadline=None)
@given(rate=hst.floats(0.05, 0.95), n=hst.integers(20, 400))
def test_mdr_shrinks_with_more_cases_and_mirrors_for_lower_is_better(rate, n):
    from harness.stats import min_detectable_regression

    assert min_detectable_regression(rate, 4 * n) < min_detectable_regression(rate, n)
    assert min_detectable_regression(rate, n, higher_is_better=False) == pytest.approx(
        min_detectable_regression(1 - rate, n))


def test_paired_mdr_by_hand_and_no_cases():
    from scipy import stats as st

    from harness.stats import min_detectable_regression

    d = min_detectable_regression(0.0, 100, paired=True)
    # two-sided exact McNemar at 0.05 needs 6 one-way flips (2 * 0.5**6 < 0.05 <= 2 * 0.5**5)
    assert st.binom.sf(5, 100, d) == pytest.approx(0.8, abs=1e-6)
    assert min_detectable_regression(0.9, 0) == 1.0
