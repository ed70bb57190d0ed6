"""Promotion criteria -> verdict.

Criteria live in one reviewed TOML file (default `evals/criteria.toml`), one array of tables per
suite. A gate that cannot decide fails closed: a suite without criteria, or a criterion whose
metric no case produced, fails.
"""

from __future__ import annotations

import operator
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.results import AGGREGATES, ERROR, MIN_SUITE_VALUE_CASES, ResultTable

# `aggregate = "value"`: the criterion reads a metric the suite computed over all its cases (the
# bias suites' disparities, flip rate, BBQ bias score), not an aggregate of per-case scores.
SUITE_VALUE = "value"
OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


class CriteriaError(ValueError):
    """The criteria file is malformed."""


@dataclass(frozen=True)
class Criterion:
    metric: str
    aggregate: str
    op: str
    threshold: float
    why: str = ""
    only_with_judge: bool = False  # reads the LLM judge's scores: skipped when no judge is configured
    # "value": the point estimate must clear the threshold (the default); "bound": the 95%
    # interval's bound on the threshold's side must (lower bound for >=, upper for <=)
    gate_on: str = "value"
    # "no significant regression vs the baseline run, and a drop smaller than delta", case by case
    vs_baseline: bool = False
    delta: float = 0.0

    @property
    def name(self) -> str:
        return self.metric if self.aggregate == SUITE_VALUE else f"{self.metric}/{self.aggregate}"

    def label(self) -> str:
        return f"{self.name} vs baseline" if self.vs_baseline else self.name

    def bound_text(self) -> str:
        return f"no sig. drop, < {self.delta:g}" if self.vs_baseline else f"{self.op} {self.threshold:g}"

    def describe(self) -> str:
        if self.vs_baseline:
            return f"{self.name} vs baseline: no significant drop, drop < {self.delta:g}"
        return f"{self.name} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class CriterionResult:
    criterion: Criterion
    value: float | None
    passed: bool
    note: str = ""
    ci: tuple[float, float] | None = None  # 95% interval of `value` (rates: Wilson; means: bootstrap)
    n: int = 0  # cases behind the value
    # the smallest regression of a rate this criterion's test sees at 95% confidence with 80%
    # power from n cases (harness.stats.min_detectable_regression); None for other aggregates
    mdr: float | None = None


@dataclass(frozen=True)
class Verdict:
    suite: str
    results: tuple[CriterionResult, ...]
    critical_failures: tuple[str, ...] = ()  # ids of critical cases that failed
    problems: tuple[str, ...] = ()  # why the gate could not decide (it then fails)
    n_cases: int = 0

    @property
    def passed(self) -> bool:
        return (not self.problems and not self.critical_failures
                and all(r.passed for r in self.results))

    def detectable_regression(self) -> tuple[float, str] | None:
        """The largest minimum detectable regression over the criteria that gated a rate (the
        error budget and screens aside): the smallest regression the suite's gate is sure to
        see, with the criterion it belongs to."""
        gated = [(r.mdr, r.criterion.label()) for r in self.results if r.mdr is not None
                 and r.criterion.metric != ERROR and not r.criterion.metric.startswith("screen_")]
        return max(gated) if gated else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "passed": self.passed,
            "n_cases": self.n_cases,
            "criteria": [
                {**asdict(r.criterion), "value": r.value, "passed": r.passed, "note": r.note,
                 "ci_low": r.ci[0] if r.ci else None, "ci_high": r.ci[1] if r.ci else None, "n": r.n,
                 "mdr": r.mdr}
                for r in self.results
            ],
            "critical_failures": list(self.critical_failures),
            "problems": list(self.problems),
        }

    def report(self) -> str:
        """A fixed-width table: metric, value, threshold, pass/fail."""
        lines = [f"promotion gate '{self.suite}': {'PASSED' if self.passed else 'FAILED'}"
                 f" ({self.n_cases} cases)"]
        rows = [("criterion", "value [95% CI]", "threshold", "MDR", "result")]
        for r in self.results:
            value = "n/a" if r.value is None else f"{r.value:.4g}"
            if r.ci is not None and r.ci[0] == r.ci[0]:  # not NaN
                value += f" [{r.ci[0]:.3g}, {r.ci[1]:.3g}]"
            on_bound = " (bound)" if r.criterion.gate_on == "bound" else ""
            rows.append((r.criterion.label(), value, r.criterion.bound_text() + on_bound,
                         "" if r.mdr is None else f"{100 * r.mdr:.1f} pts",
                         ("pass" if r.passed else "FAIL") + (f" ({r.note})" if r.note else "")))
        rows.append(("critical cases failed", str(len(self.critical_failures)), "== 0", "",
                     "pass" if not self.critical_failures else "FAIL"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
        detectable = self.detectable_regression()
        if detectable is not None:
            lines.append(f"  smallest regression this gate detects (95% confidence, 80% power): "
                         f"{100 * detectable[0]:.1f} points ({detectable[1]})")
        if self.critical_failures:
            lines.append("  critical cases failed: " + ", ".join(self.critical_failures))
        for problem in self.problems:
            lines.append(f"  cannot decide: {problem}")
        return "\n".join(lines)


def load_criteria(path: str | Path) -> dict[str, list[Criterion]]:
    """suite name -> criteria. Every malformed entry is reported with its suite and index."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise CriteriaError(f"criteria file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CriteriaError(f"{path}: {exc}") from None
    out: dict[str, list[Criterion]] = {}
    problems = []
    for suite, entries in data.items():
        if not isinstance(entries, list):
            problems.append(f"{path}: [{suite}] must be an array of tables ([[{suite}]])")
            continue
        out[suite] = []
        for i, entry in enumerate(entries):
            where = f"{path}: [[{suite}]] #{i + 1}"
            if not isinstance(entry, dict):
                problems.append(f"{where}: must be a table with metric, aggregate, op, threshold")
                continue
            unknown = set(entry) - {"metric", "aggregate", "op", "threshold", "why", "only_with_judge", "gate_on",
                                    "vs_baseline", "delta"}
            required = {"metric", "aggregate", "op", "delta"} if entry.get("vs_baseline") else \
                {"metric", "aggregate", "op", "threshold"}
            missing = required - set(entry)
            if unknown or missing:
                problems.append(f"{where}: " + "; ".join(
                    ([f"missing {sorted(missing)}"] if missing else [])
                    + ([f"unknown {sorted(unknown)}"] if unknown else [])))
                continue
            if entry["aggregate"] not in AGGREGATES and entry["aggregate"] != SUITE_VALUE:
                problems.append(f"{where}: aggregate {entry['aggregate']!r} not in "
                                f"{sorted(AGGREGATES) + [SUITE_VALUE]}")
                continue
            if entry["op"] not in OPS:
                problems.append(f"{where}: op {entry['op']!r} not in {sorted(OPS)}")
                continue
            threshold = entry.get("threshold", 0.0)
            if entry.get("vs_baseline"):
                delta = entry["delta"]
                if (entry["aggregate"] not in ("rate", "mean") or isinstance(delta, bool)
                        or not isinstance(delta, (int, float)) or delta <= 0):
                    problems.append(f"{where}: vs_baseline needs aggregate rate or mean and a delta > 0")
                    continue
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
                problems.append(f"{where}: threshold must be a number")
                continue
            only_with_judge = entry.get("only_with_judge", False)
            if not isinstance(only_with_judge, bool):
                problems.append(f"{where}: only_with_judge must be true or false")
                continue
            gate_on = entry.get("gate_on", "value")
            if gate_on not in ("value", "bound") or (
                    gate_on == "bound" and entry["aggregate"] not in ("rate", "mean", SUITE_VALUE)):
                problems.append(f"{where}: gate_on must be 'value' or 'bound' (bound: rate, mean and value only)")
                continue
            out[suite].append(Criterion(str(entry["metric"]), entry["aggregate"], entry["op"],
                                        float(threshold), str(entry.get("why", "")), only_with_judge, gate_on,
                                        bool(entry.get("vs_baseline", False)), float(entry.get("delta", 0.0))))
    if problems:
        raise CriteriaError("invalid criteria:\n  " + "\n  ".join(problems))
    return out


# Endpoint errors are failures, never passes: unless a suite declares its own error budget
# (an `error` / `rate` criterion), no case may end without an answer.
DEFAULT_ERROR_BUDGET = Criterion(ERROR, "rate", "<=", 0.0, "default error budget: every case answered")


# The criteria of the answer screens (harness.scorers.screen): applied to every suite, and to
# the answers of all suites pooled (evaluate_pooled).
SCREEN_CRITERIA = "screen"


def evaluate(suite: str, table: ResultTable, criteria: list[Criterion] | None,
             suite_metrics: dict[str, float] | None = None, judge: bool = False,
             baseline: Baseline | None = None, judge_distrusted: str | None = None,
             screens: list[Criterion] | None = None) -> Verdict:
    """The suite's verdict. `judge_distrusted`: why the configured judge's verdicts must not
    gate (its agreement with human labels or the offline checks is below harness.judge.MIN_KAPPA):
    the criteria that read the judge are then skipped with that note, as without a judge.
    `screens`: the screen criteria, applied as well; one whose screen no answer of this suite
    got (every case's own checks cover it, or no case has a system prompt) does not apply, and
    a suite's own criterion on a screen's metric replaces the screen criterion there (the
    leakage suite provokes echoes of the system prompt: its bound is its own)."""
    problems = []
    if not criteria:
        problems.append(f"no promotion criteria declared for suite '{suite}'")
    if len(table) == 0:
        problems.append("no cases were evaluated")
    results = []
    applied = list(criteria or [])
    if not any((c.metric, c.aggregate) == (ERROR, "rate") for c in applied):
        applied.insert(0, DEFAULT_ERROR_BUDGET)
    screened, skipped = [], []
    for screen in own_screens(criteria, screens):
        if table.values(screen.metric):
            screened.append(screen)
        else:
            skipped.append(CriterionResult(screen, None, True,
                                           "does not apply: no answer of this suite got this screen"))
    for criterion in applied + screened:
        if criterion.only_with_judge and not judge:
            results.append(CriterionResult(criterion, None, True, "skipped: no judge configured"))
            continue
        if criterion.only_with_judge and judge_distrusted:
            results.append(CriterionResult(criterion, None, True, judge_distrusted))
            continue
        if criterion.vs_baseline:
            results.append(_vs_baseline(criterion, table, baseline))
            continue
        ci = None
        if criterion.aggregate == SUITE_VALUE:
            value = (suite_metrics or {}).get(criterion.metric)
            missing = "the suite did not compute this metric"
            values: list[float] = []
            low, high = ((suite_metrics or {}).get(f"{criterion.metric}/ci_{side}") for side in ("low", "high"))
            ci = (low, high) if low is not None and high is not None else None
            undecided = _too_few_cases(criterion.metric, suite_metrics or {}) if value is not None else None
            if undecided:
                results.append(CriterionResult(criterion, float(value), False, undecided, ci))
                continue
        else:
            value = table.aggregate(criterion.metric, criterion.aggregate)
            missing = "no case produced this metric"
            values = table.values(criterion.metric)
        if value is None:  # cannot decide: fail closed
            results.append(CriterionResult(criterion, None, False, missing))
            continue
        if value != value:  # NaN compares false with everything: say so, and fail closed
            results.append(CriterionResult(criterion, float("nan"), False, "the value is NaN: cannot decide"))
            continue
        results.append(_judge_criterion(criterion, float(value), values, ci))
    critical = tuple(row.case.id for row in table.critical_failures())
    return Verdict(suite, tuple(results + skipped), critical, tuple(problems), len(table))


POOLED = "all suites"


def own_screens(criteria: list[Criterion] | None, screens: list[Criterion] | None) -> list[Criterion]:
    """The screen criteria that apply to a suite: those whose metric its own criteria do not gate."""
    own = {c.metric for c in criteria or []}
    return [c for c in screens or [] if c.metric not in own]


def evaluate_pooled(suites: list[tuple[ResultTable, list[Criterion] | None]],
                    screens: list[Criterion]) -> Verdict | None:
    """The screen criteria over the answers of every suite together (a suite's table with its own
    criteria): a property of every answer is judged on all of them, with the interval (and the
    power) of the pooled count. A suite whose own criteria gate a screen's metric keeps it."""
    if not screens or not suites:
        return None
    results = []
    n_cases = sum(len(table) for table, _ in suites)
    for criterion in screens:
        pooled = ResultTable([row for table, own in suites if criterion in own_screens(own, [criterion])
                              for row in table.rows])
        values = pooled.values(criterion.metric)
        if not values:  # screened nowhere: that cannot decide
            results.append(CriterionResult(criterion, None, False, "no answer of any suite got this screen"))
            continue
        results.append(_judge_criterion(criterion, float(pooled.aggregate(criterion.metric, criterion.aggregate)),
                                        values))
    return Verdict(POOLED, tuple(results), (), (), n_cases)


def _too_few_cases(metric: str, suite_metrics: dict[str, float]) -> str | None:
    """Why a suite-level value cannot decide (its case count is missing or too small), or None."""
    n = suite_metrics.get(f"{metric}/n")
    if n is None or n != n:
        return "the suite did not say how many cases this value rests on: cannot decide (fails closed)"
    if n < MIN_SUITE_VALUE_CASES:
        return (f"computed over {int(n)} answered case{'s' if n != 1 else ''}: at least "
                f"{MIN_SUITE_VALUE_CASES} needed to decide (fails closed)")
    return None


@dataclass(frozen=True)
class Baseline:
    """The run a candidate is compared with: per metric, per case id, its value. `error` says
    why a configured baseline could not be read (its criteria then fail closed)."""

    run_id: str = ""
    values: dict[str, dict[str, float]] | None = None
    error: str = ""


def _vs_baseline(criterion: Criterion, table: ResultTable, baseline: Baseline | None) -> CriterionResult:
    from harness import stats

    if baseline is None:
        return CriterionResult(criterion, None, True, "skipped: no baseline configured")
    if baseline.error or baseline.values is None:
        return CriterionResult(criterion, None, False, f"baseline unavailable (fails closed): {baseline.error}")
    before = baseline.values.get(criterion.metric, {})
    now = table.values_by_case(criterion.metric)
    ids = sorted(set(before) & set(now))
    if not ids:
        return CriterionResult(criterion, None, False, f"no case of baseline {baseline.run_id[:8]} to pair with")
    sign = -1.0 if criterion.op in ("<=", "<") else 1.0  # lower is better: compare negated values
    a = [sign * before[i] for i in ids]
    b = [sign * now[i] for i in ids]
    outcome = stats.regression(a, b, pass_fail=criterion.aggregate == "rate", delta=criterion.delta)
    diff = sign * outcome["diff"]
    ci = tuple(sorted((sign * outcome["ci_low"], sign * outcome["ci_high"])))
    why = []
    if outcome["significant_regression"]:
        why.append(f"significant regression (p={outcome['p_value']:.3g})")
    if outcome["drop_too_large"]:
        why.append(f"drop {abs(outcome['diff']):.3g} >= {criterion.delta:g}")
    note = f"vs {baseline.run_id[:8]} on {len(ids)} cases, p={outcome['p_value']:.3g}" + (
        ": " + "; ".join(why) if why else "")
    # paired: the share of cases that must flip for McNemar to see it (no rate enters)
    mdr = stats.min_detectable_regression(0.0, len(ids), paired=True) if criterion.aggregate == "rate" else None
    return CriterionResult(criterion, diff, bool(outcome["passed"]), note, ci, len(ids), mdr)


def _judge_criterion(criterion: Criterion, value: float, values: list[float],
                     ci: tuple[float, float] | None = None) -> CriterionResult:
    """Compare the point value (or the interval's bound) with the threshold, and say when the
    suite has too few cases for the interval to be narrow (+-5 points at 95%). Suite-level
    metrics bring their own interval (`ci`), computed by the suite's analysis."""
    from harness import stats

    if ci is None and values:
        ci = stats.metric_ci(values, criterion.aggregate)
    compared, note = value, ""
    if criterion.gate_on == "bound":
        if ci is None or ci[0] != ci[0]:
            return CriterionResult(criterion, value, False, "no interval to gate on (fails closed)", ci, len(values))
        compared = ci[0] if criterion.op in (">=", ">") else ci[1]
        note = f"bound {compared:.3g} compared"
    if criterion.aggregate == "rate" and values and 0.0 < criterion.threshold < 1.0:
        needed = stats.min_cases_for(criterion.threshold)
        if len(values) < needed:
            note = "; ".join(n for n in (note, f"only {len(values)} cases: +-5 points at 95% needs {needed}") if n)
    mdr = None
    if criterion.aggregate == "rate" and values:
        mdr = stats.min_detectable_regression(value, len(values), higher_is_better=criterion.op in (">=", ">"))
    return CriterionResult(criterion, value, bool(OPS[criterion.op](compared, criterion.threshold)), note, ci,
                           len(values), mdr)


def power_metrics(verdict: Verdict) -> dict[str, float]:
    """The minimum detectable regression of each rate criterion, and the suite's (the largest),
    as MLflow metrics: `mdr/<criterion>` and `mdr`."""
    from harness.results import metric_name

    out = {metric_name("mdr", r.criterion.label().replace(" ", "_")): r.mdr
           for r in verdict.results if r.mdr is not None}
    detectable = verdict.detectable_regression()
    if detectable is not None:
        out["mdr"] = detectable[0]
    return out
