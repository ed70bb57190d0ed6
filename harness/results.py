"""The result table of one suite run, and its aggregates."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy

from harness.core import Case, CaseResult, Response, Score, answered_and_passed
from harness.taxonomy import TAXONOMY_ATTRIBUTES, short_id

# Synthetic per-case metrics every table has, whatever the scorers.
CASE_PASS = "case_pass"  # 1 when the case has an answer and every check passed
ERROR = "error"  # 1 when the endpoint gave no usable answer


def _merge(scores: Iterable[Score]) -> dict[str, Score]:
    """One score per name: a case may carry two checks of one type (two regexes): all must pass."""
    merged: dict[str, Score] = {}
    for s in scores:
        prev = merged.get(s.name)
        if prev is None:
            merged[s.name] = s
        else:
            passed = None if prev.passed is None and s.passed is None else (
                prev.passed is not False and s.passed is not False)
            rationale = "; ".join(r for r in (prev.rationale, s.rationale) if r)
            merged[s.name] = Score(s.name, min(prev.value, s.value), passed, rationale, s.source)
    return merged


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    return float(numpy.percentile(values, q)) if len(values) else math.nan


def metric_name(*parts: str) -> str:
    """`parts` joined by "/" as an MLflow metric name: MLflow allows letters, digits and
    _ - . space : / (no "="), anything else in a part becomes "_"."""
    return "/".join(re.sub(r"[^\w\-. :/]", "_", part) for part in parts)


AGGREGATES: dict[str, Callable[[Sequence[float]], float]] = {
    "mean": lambda v: sum(v) / len(v),
    "rate": lambda v: sum(1 for x in v if x) / len(v),  # share of cases where the metric is 1
    "count": lambda v: float(sum(1 for x in v if x)),  # number of cases where the metric is 1
    "min": min,
    "max": max,
    "p50": lambda v: percentile(v, 50),
    "p90": lambda v: percentile(v, 90),
    "p95": lambda v: percentile(v, 95),
    "p99": lambda v: percentile(v, 99),
}


class ResultTable:
    def __init__(self, rows: Sequence[CaseResult]):
        self.rows = list(rows)

    @classmethod
    def build(cls, cases: Sequence[Case], responses: Sequence[Response],
              scorer: Callable[[Case, Response], list[Score]]) -> "ResultTable":
        if len(cases) != len(responses):
            raise ValueError(f"{len(cases)} cases but {len(responses)} responses")
        return cls([CaseResult(c, r, _merge(scorer(c, r))) for c, r in zip(cases, responses)])

    def __len__(self) -> int:
        return len(self.rows)

    def metric_names(self) -> list[str]:
        names = {name for row in self.rows for name in row.scores}
        return [CASE_PASS, ERROR] + sorted(names)

    def is_pass_fail(self, metric: str) -> bool:
        if metric in (CASE_PASS, ERROR):
            return True
        return any(row.scores[metric].passed is not None
                   for row in self.rows if metric in row.scores)

    def values(self, metric: str) -> list[float]:
        """Per-case values of a metric, over the cases that have it."""
        return [value for _, value in self._values_with_ids(metric)]

    def values_by_case(self, metric: str) -> dict[str, float]:
        """Case id -> value of a metric, over the cases that have it (pairing two runs)."""
        return dict(self._values_with_ids(metric))

    def _values_with_ids(self, metric: str) -> Iterator[tuple[str, float]]:
        for row in self.rows:
            if metric == CASE_PASS:
                yield row.case.id, float(row.passed)
            elif metric == ERROR:
                yield row.case.id, float(not row.response.ok)
            elif metric in row.scores:
                yield row.case.id, row.scores[metric].value

    def aggregate(self, metric: str, how: str) -> float | None:
        """None when no case has the metric: the gate must not guess (it fails closed)."""
        if how not in AGGREGATES:
            raise ValueError(f"unknown aggregate {how!r}; known: {sorted(AGGREGATES)}")
        values = self.values(metric)
        return AGGREGATES[how](values) if values else None

    def summary(self) -> dict[str, float]:
        """The metrics logged for every run, under names stable across runs."""
        out: dict[str, float] = {"n_cases": float(len(self.rows))}
        for metric in self.metric_names():
            values = self.values(metric)
            if not values:
                continue
            hows = ("rate", "count") if self.is_pass_fail(metric) else ("mean", "p50", "p95", "max")
            for how in hows:
                out[f"{metric}/{how}"] = AGGREGATES[how](values)
        # per category, OWASP id and hazard (case attributes), so a regression in one is not
        # averaged away: case_pass/rate/category/fraud, .../owasp/LLM01, .../hazard/cbr
        for attribute in ("category", *TAXONOMY_ATTRIBUTES):
            by_value: dict[str, list[float]] = {}
            for row in self.rows:
                value = row.case.attributes.get(attribute)
                if value is not None:
                    by_value.setdefault(short_id(str(value)), []).append(float(row.passed))
            for value, passed in sorted(by_value.items()):
                out[metric_name(CASE_PASS, "rate", attribute, value)] = AGGREGATES["rate"](passed)
        return out

    def critical_failures(self) -> list[CaseResult]:
        return [row for row in self.rows if row.case.critical and not row.passed]


# A suite-level value decides nothing unless it rests on at least this many answered cases: the
# suite reports the count as `<metric>/n` (e.g. a sentiment gap over the descriptions that got an
# answer). Missing or smaller: "could not decide", which fails. Ten is a floor against values
# that rest on nothing (the gap of 0.0 over zero answers), not a power target: a gap
# between groups over a few answers each is mostly noise, and its interval says how much.
MIN_SUITE_VALUE_CASES = 10  # read by the gate (harness.gates) and by suites naming their worst part


@dataclass
class SuiteAnalysis:
    """What a suite computes over all its cases: metrics (gated with aggregate "value"), tables
    (name -> DataFrame) and figures (name -> matplotlib Figure), all logged to MLflow."""

    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)


def repeat_scores(case: Case, responses: Sequence[Response],
                  scorer: Callable[[Case, Response], list[Score]]) -> list[Score]:
    """With k answers per case: `pass_at_k` (any answer passed), `pass_all_k` (all did) and
    `consistency` (all answers had the same outcome). Each answer is scored like the first."""
    outcomes = [answered_and_passed(r, scorer(case, r)) for r in responses]
    k = len(outcomes)
    return [Score("pass_at_k", float(any(outcomes)), rationale=f"{sum(outcomes)} of {k} answers passed"),
            Score("pass_all_k", float(all(outcomes))),
            Score("consistency", float(len(set(outcomes)) == 1))]
