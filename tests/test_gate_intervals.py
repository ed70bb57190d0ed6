"""Gated metrics carry 95% intervals; a criterion can gate on the interval's bound; a suite with
too few cases for its threshold says so."""

from __future__ import annotations

import pytest

from harness.core import Case
from harness.gates import Criterion, CriteriaError, evaluate, load_criteria
from harness.results import ResultTable
from harness.core import Score
from harness.core import Response


def _table(passes: int, n: int) -> ResultTable:
    cases = [Case(id=f"c{i}", messages=({"role": "user", "content": "q"},),
                  checks=({"type": "contains", "value": "x"},)) for i in range(n)]
    return ResultTable.build(cases, [Response("a", 0.1)] * n,
                             lambda c, r: [Score("contains", float(int(c.id[1:]) < passes), int(c.id[1:]) < passes)])


def test_point_estimate_passes_where_the_bound_does_not():
    table = _table(8, 10)  # 0.8, Wilson 95% interval about [0.49, 0.94]
    point = evaluate("s", table, [Criterion("contains", "rate", ">=", 0.7)])
    bound = evaluate("s", table, [Criterion("contains", "rate", ">=", 0.7, gate_on="bound")])
    assert point.passed and not bound.passed
    low, high = point.results[-1].ci
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert "[0.49, 0.943]" in point.report()
    assert "only 10 cases" in point.results[-1].note  # too few for +-5 points at 95%
    # with many cases the bound clears the threshold too
    assert evaluate("s", _table(800, 1000), [Criterion("contains", "rate", ">=", 0.7, gate_on="bound")]).passed


def test_upper_bound_for_at_most_criteria():
    table = _table(1, 20)  # an error-like rate of 0.05: upper bound about 0.24
    assert evaluate("s", table, [Criterion("contains", "rate", "<=", 0.1)]).passed
    assert not evaluate("s", table, [Criterion("contains", "rate", "<=", 0.1, gate_on="bound")]).passed


def test_gate_on_is_validated(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[s]]\nmetric = "m"\naggregate = "p95"\nop = "<="\nthreshold = 1\ngate_on = "bound"\n')
    with pytest.raises(CriteriaError, match="gate_on"):
        load_criteria(path)
