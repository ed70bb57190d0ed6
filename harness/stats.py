"""How sure a gate can be: confidence intervals for suite metrics and paired comparisons of two runs.

A pass rate of 0.85 on 20 cases and on 2000 cases are different claims; the gate compares point
values with thresholds, and these functions say how far the point value could move with another
draw of cases. The two-run functions compare a candidate with a baseline *on the same cases*:
pairing removes the case-to-case difficulty spread, so a real regression is detected with far
fewer cases than comparing two independent rates would need.

Pure functions over plain lists; every statistical method is scipy's own (no re-derived formulas),
so the numbers match what a reviewer gets from scipy directly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy
from scipy import stats

N_RESAMPLES = 2000  # enough for stable 95% BCa limits on suite-sized data, fast on 2 cores
MAX_CASES = 100_000  # min_cases_for's cap: past this the answer is "more than you will label"
EXACT_MCNEMAR_BELOW = 25  # discordant pairs under which the chi-square approximation is poor

Interval = tuple[float, float]
NAN_INTERVAL: Interval = (math.nan, math.nan)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _as_array(values: Sequence[float], name: str = "values") -> numpy.ndarray:
    """A float array; NaN or inf is refused because it would silently poison every resample."""
    arr = numpy.asarray(values, dtype=float).ravel()
    if not numpy.all(numpy.isfinite(arr)):
        raise ValueError(f"{name} must be finite numbers")
    return arr


def _paired(a: Sequence[float], b: Sequence[float]) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Two runs are comparable only case by case: same cases, same order, so same length."""
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if len(x) != len(y):
        raise ValueError(f"paired samples differ in length: {len(x)} vs {len(y)}")
    return x, y


def _t_interval(values: numpy.ndarray, confidence: float) -> Interval:
    """Student-t interval of the mean: the fallback where the bootstrap cannot work (n < 3, or
    a resampling distribution so lumpy that BCa's acceleration is undefined)."""
    low, high = stats.t.interval(confidence, len(values) - 1,
                                 loc=float(numpy.mean(values)), scale=stats.sem(values))
    return float(low), float(high)


def _bootstrap(data: tuple[numpy.ndarray, ...], statistic, *, paired: bool, confidence: float,
               seed: int) -> Interval | None:
    """BCa bootstrap limits, or None when scipy cannot compute them.

    BCa corrects the percentile interval for bias and skew, which matters for bounded per-case
    scores piled up near 0 or 1. On near-degenerate data scipy warns (DegenerateDataWarning) and
    returns NaN limits rather than raising; both are mapped to None so the caller falls back.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's 0/0 inside the jackknife
        try:
            # scipy >= 1.15 takes `rng` (SPEC 7); `random_state` is the legacy spelling.
            res = stats.bootstrap(data, statistic, n_resamples=N_RESAMPLES, paired=paired,
                                  vectorized=True, confidence_level=confidence, method="BCa",
                                  rng=numpy.random.default_rng(seed))
        except ValueError:
            return None
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high


def rate_ci(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a pass rate.

    Wilson rather than the textbook normal (Wald) interval because gates live near 0 and 1
    (error rate <= 0, pass rate >= 0.95), where Wald collapses to zero width or leaves [0, 1].
    No cases: (nan, nan), so a gate reading it cannot mistake "unknown" for "certain".
    """
    _check_confidence(confidence)
    if n == 0:
        return NAN_INTERVAL
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence,
                                                               method="wilson")
    return float(ci.low), float(ci.high)


def mean_ci(values: Sequence[float], confidence: float = 0.95, seed: int = 0) -> Interval:
    """Confidence interval of the mean of per-case scores (similarity, judge grades, latency).

    BCa bootstrap, because per-case scores are bounded and skewed, so a symmetric t interval
    misplaces the limits; the seed is fixed so one result table always yields one interval.
    Degenerate inputs: no values -> (nan, nan); one value or all values equal -> (v, v) (there is
    no spread to estimate, and scipy's BCa would return NaN); two values, or data where BCa is
    undefined -> the t interval.
    """
    _check_confidence(confidence)
    x = _as_array(values)
    if len(x) == 0:
        return NAN_INTERVAL
    if len(x) == 1 or numpy.all(x == x[0]):
        v = float(x[0])
        return v, v
    if len(x) < 3:
        return _t_interval(x, confidence)
    ci = _bootstrap((x,), lambda s, axis=-1: numpy.mean(s, axis=axis), paired=False,
                    confidence=confidence, seed=seed)
    return ci if ci is not None else _t_interval(x, confidence)


def metric_ci(values: list[float], aggregate: str, confidence: float = 0.95) -> Interval | None:
    """The interval matching how a criterion aggregates the per-case values (results.AGGREGATES).

    "rate" counts non-zero values as successes (as AGGREGATES["rate"] does) -> Wilson; "count"
    -> the same interval times n; "mean" -> mean_ci; percentiles ("p50" ... "p99") -> a
    percentile bootstrap of that percentile. min and max -> None: an extreme has no interval.
    """
    if aggregate == "rate":
        return rate_ci(sum(1 for v in values if v), len(values), confidence)
    if aggregate == "count":
        low, high = rate_ci(sum(1 for v in values if v), len(values), confidence)
        return (low * len(values), high * len(values))
    if aggregate == "mean":
        return mean_ci(values, confidence)
    if aggregate in ("p50", "p90", "p95", "p99"):
        return percentile_ci(values, float(aggregate[1:]), confidence)
    return None


def percentile_ci(values: Sequence[float], q: float, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Percentile-bootstrap interval of the q-th percentile (latency p95 ...); degenerate data
    (n < 2, all equal) gives the point itself."""
    _check_confidence(confidence)
    x = _as_array(values)
    if x.size == 0:
        return NAN_INTERVAL
    point = float(numpy.percentile(x, q))
    if x.size < 2 or numpy.all(x == x[0]):
        return (point, point)
    result = stats.bootstrap((x,), lambda v, axis=-1: numpy.percentile(v, q, axis=axis), vectorized=True,
                             n_resamples=N_RESAMPLES, confidence_level=confidence, method="percentile",
                             rng=numpy.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return (low, high) if math.isfinite(low) and math.isfinite(high) else (point, point)


def _half_width(successes: int, n: int, confidence: float) -> float:
    low, high = rate_ci(successes, n, confidence)
    return (high - low) / 2


def min_cases_for(threshold: float, confidence: float = 0.95, margin: float = 0.05) -> int:
    """Smallest number of cases whose Wilson interval around `threshold` is narrower than ±margin.

    Used to warn that a suite is too small for its criterion: with 20 cases a pass rate of 0.8
    cannot be told apart from 0.65 or 0.93, so "pass rate >= 0.8" on 20 cases is mostly noise.

    `threshold * n` is rarely a whole count, so the width is taken at the wider of the two
    neighbouring counts (never optimistic). That rounding makes the width jitter by a hair as n
    grows, so "smallest n" is defined up to a few cases. The search steps n upward by doubling
    until the interval is narrow enough, then bisects back: ~2*log2(n) scipy calls instead of up
    to 100000 (each binomtest costs ~0.3 ms). The n returned qualifies while n - 1 does not; it
    lies between the first n that qualifies and the n from which every larger n qualifies.
    Capped at MAX_CASES (returned when even that many cases are not enough).
    """
    _check_confidence(confidence)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a rate in [0, 1], got {threshold!r}")
    if margin <= 0:
        raise ValueError(f"margin must be positive, got {margin!r}")

    def narrow_enough(n: int) -> bool:
        exact = threshold * n
        nearest = round(exact)
        if abs(exact - nearest) < 1e-9:  # 0.8 * 245 = 196.00000000000003 is the count 196
            counts = {nearest}
        else:
            counts = {math.floor(exact), min(math.ceil(exact), n)}
        return max(_half_width(k, n, confidence) for k in counts) < margin

    if narrow_enough(1):
        return 1
    low, high = 1, 2  # invariant: narrow_enough(low) is False
    while not narrow_enough(high):
        if high >= MAX_CASES:
            return MAX_CASES
        low, high = high, min(2 * high, MAX_CASES)
    while high - low > 1:  # invariant: not narrow_enough(low), narrow_enough(high)
        mid = (low + high) // 2
        if narrow_enough(mid):
            high = mid
        else:
            low = mid
    return high


def mcnemar(a_pass: list[bool], b_pass: list[bool]) -> dict:
    """McNemar's test: did run b pass a different share of the same cases than run a?

    Only discordant cases carry information (a case both runs pass or both fail says nothing about
    which is better): b01 = a failed and b passed, b10 = a passed and b failed. Under "no
    difference" each discordant case is a fair coin, so with few of them (< 25) the exact binomial
    test is used; above that the chi-square approximation with continuity correction, the
    textbook McNemar statistic. `statistic` is min(b01, b10) for the exact test (the
    convention of statsmodels) and the chi-square value otherwise. `n` is the number of paired
    cases; b01 + b10 is the number of discordant ones. No discordant pair: p_value 1.0.
    """
    if len(a_pass) != len(b_pass):
        raise ValueError(f"paired samples differ in length: {len(a_pass)} vs {len(b_pass)}")
    a = [bool(x) for x in a_pass]
    b = [bool(x) for x in b_pass]
    b01 = sum(1 for x, y in zip(a, b) if not x and y)
    b10 = sum(1 for x, y in zip(a, b) if x and not y)
    discordant = b01 + b10
    out = {"b01": b01, "b10": b10, "n": len(a)}
    if discordant == 0:
        return {**out, "statistic": 0.0, "p_value": 1.0, "method": "exact"}
    if discordant < EXACT_MCNEMAR_BELOW:
        p = stats.binomtest(b10, discordant, 0.5, alternative="two-sided").pvalue
        return {**out, "statistic": float(min(b01, b10)), "p_value": float(min(1.0, p)),
                "method": "exact"}
    statistic = (abs(b01 - b10) - 1) ** 2 / discordant
    return {**out, "statistic": float(statistic), "p_value": float(stats.chi2.sf(statistic, 1)),
            "method": "chi2"}


def _diff_of_means(a: numpy.ndarray, b: numpy.ndarray, axis: int = -1) -> numpy.ndarray:
    return numpy.mean(b, axis=axis) - numpy.mean(a, axis=axis)


def paired_diff_ci(a: list[float], b: list[float], confidence: float = 0.95,
                   seed: int = 0) -> tuple[float, float, float]:
    """(mean(b) - mean(a), low, high): how much run b moved the metric relative to run a.

    Paired bootstrap (whole cases are resampled, keeping each case's a and b together), so the
    interval reflects the per-case differences rather than the much wider spread of the scores
    themselves. Degenerate inputs: no cases -> all NaN; one case, or every case moved by the same
    amount -> (d, d, d); two cases or BCa undefined -> t interval on the per-case differences.
    """
    _check_confidence(confidence)
    x, y = _paired(a, b)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    d = y - x
    diff = float(numpy.mean(y) - numpy.mean(x))
    if len(d) == 1 or numpy.all(d == d[0]):
        return diff, diff, diff
    ci = None
    if len(d) >= 3:
        ci = _bootstrap((x, y), _diff_of_means, paired=True, confidence=confidence, seed=seed)
    low, high = ci if ci is not None else _t_interval(d, confidence)
    return diff, low, high


def wilcoxon_p(a: list[float], b: list[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value for paired numeric scores of two runs.

    Signed ranks rather than a paired t-test because per-case scores are bounded and skewed, and
    one wild case should not decide the verdict. Cases with equal scores are dropped (scipy's
    default zero_method="wilcox"): they say nothing about direction.
    """
    x, y = _paired(a, b)
    d = y - x
    # Fewer than 2 non-zero differences: one signed rank can never be significant (its exact
    # two-sided p is 1.0) and scipy warns or fails on an empty sample, so answer 1.0 directly.
    # This also covers "all differences zero" (identical runs).
    if numpy.count_nonzero(d) < 2:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sample size too small for normal approx."
        return float(stats.wilcoxon(x, y, alternative="two-sided").pvalue)


def regression(a_values: Sequence[float], b_values: Sequence[float], *, pass_fail: bool,
               delta: float, alpha: float = 0.05) -> dict:
    """Does candidate b regress against baseline a on the same cases?

    The candidate passes when there is no significant regression *and* its drop is smaller than
    `delta`. Pass/fail metrics use McNemar's p-value, numeric ones the Wilcoxon signed-rank
    p-value; both report the paired-bootstrap interval of mean(b) - mean(a).

    significant_regression: diff < 0 and p < alpha -- a drop that noise is unlikely to explain.
    drop_too_large: -diff >= delta on the point estimate, not on the interval's lower bound.
      Requiring the lower bound to clear -delta would be a non-inferiority test: it fails any
      candidate whose suite is too small to *prove* it is not worse (with 50 cases the interval of
      a rate difference is about ±0.1 wide), so small suites would block every change for lack
      of data. The point rule still catches a drop too large to accept even when too few cases
      make it significant, and the interval is returned for the report.
    No cases: diff is NaN and the candidate does not pass (the gate fails closed).
    """
    if delta <= 0:
        raise ValueError(f"delta must be positive, got {delta!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if pass_fail:
        a = [float(bool(v)) for v in a_values]
        b = [float(bool(v)) for v in b_values]
        p_value = mcnemar([bool(v) for v in a], [bool(v) for v in b])["p_value"]
    else:
        a, b = list(a_values), list(b_values)
        p_value = wilcoxon_p(a, b)
    diff, low, high = paired_diff_ci(a, b)
    if math.isnan(diff):
        return {"diff": diff, "ci_low": low, "ci_high": high, "p_value": math.nan,
                "significant_regression": False, "drop_too_large": False, "passed": False}
    significant = bool(diff < 0 and p_value < alpha)
    too_large = bool(-diff >= delta)
    return {"diff": diff, "ci_low": low, "ci_high": high, "p_value": float(p_value),
            "significant_regression": significant, "drop_too_large": too_large,
            "passed": not (significant or too_large)}


POWER = 0.80  # the chance the gate must have to see a regression of the size it reports


def min_detectable_regression(rate: float, n: int, *, higher_is_better: bool = True, paired: bool = False,
                              alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest drop of a rate (in its bad direction) that a test at level `alpha` sees with
    probability `power`, from a suite of `n` cases now at `rate`. Exact binomial, no normal
    approximation (safety rates sit near 0 and 1, where it fails).

    Unpaired (no baseline run): the one-sided exact binomial test of "the rate is still `rate`";
    the count at or below which it rejects is found, then the true rate at which that count is
    reached with probability `power`. Paired (against a baseline run on the same cases): the
    gate's McNemar test (harness.gates, two-sided exact) on cases that flipped from pass to
    fail, assuming a deterministic model whose unchanged cases do not flip (temperature 0):
    the share of cases that must flip so that enough of them do with probability `power` (the
    rate does not enter). Returns 1.0 when no drop at all can be seen with `n` cases (n = 0
    included)."""
    from scipy.optimize import brentq

    _check_confidence(1 - alpha)
    if n <= 0:
        return 1.0
    p = rate if higher_is_better else 1.0 - rate
    if paired:
        flips = next((b for b in range(1, n + 1) if stats.binomtest(b, b, 0.5).pvalue < alpha), None)
        if flips is None:
            return 1.0
        # P(Binomial(n, d) >= flips) = power
        chance = lambda d: float(stats.binom.sf(flips - 1, n, d)) - power  # noqa: E731
        return float(brentq(chance, 1e-9, 1.0)) if chance(1.0) > 0 else 1.0
    critical = int(stats.binom.ppf(alpha, n, p))  # P(X <= critical) >= alpha: step below it
    while critical >= 0 and stats.binom.cdf(critical, n, p) > alpha:
        critical -= 1
    if critical < 0:
        return 1.0
    # the true rate q at which P(X <= critical | q) = power
    reached = lambda q: float(stats.binom.cdf(critical, n, q)) - power  # noqa: E731
    if reached(p) >= 0:  # cannot happen for alpha < power; kept for safety
        return 0.0
    q = float(brentq(reached, 0.0, p)) if reached(0.0) > 0 else 0.0
    return p - q
