"""harness.tracking.runs owns the per-case table: what its writer logs, its readers read back
(score_columns, case_values, read_baseline) as the values of the ResultTable it was written
from. A real MLflow store in a temporary directory."""

from __future__ import annotations

import shutil

import pytest

from harness import tracking
from harness.core import Case, CaseResult, Response, Score
from harness.datasets import Dataset, digest_cases
from harness.gates import Criterion, evaluate
from harness.results import ResultTable
from harness.tracking import runs

SCORES = ["contains", "judge_correct", "latency_s", "only_one", "regex", "rouge_l"]


def _case(case_id: str, prompt: str, **fields) -> Case:
    return Case(id=case_id, messages=({"role": "user", "content": prompt},), **fields)


def _table() -> ResultTable:
    """Passed, failed, errored and partly scored cases: scores missing from some cases, a
    measurement (passed None), the judge's verdict and an answer that never came."""
    return ResultTable([
        _row(_case("a", "What is 2 + 2?", expected="4", critical=True),
                 Response("4", 0.25, finish_reason="stop"),
                 Score("contains", 1.0, True), Score("rouge_l", 0.75), Score("latency_s", 0.25),
                 Score("judge_correct", 1.0, True, "judge: correct", "judge")),
        _row(_case("b", "Name a prime.", tags=("maths", "smoke")),
                 Response("nine", 0.5),
                 Score("regex", 0.0, False, "no match"), Score("rouge_l", 0.125), Score("latency_s", 0.5),
                 Score("judge_correct", 0.0, False, "judge: wrong", "judge")),
        _row(_case("c", "Say hi."), Response("", 10.0, error="HTTP 500", attempts=3),
                 Score("latency_s", 10.0)),
        _row(_case("d/ü", "Only once?"), Response("yes", 0.125),
                 Score("only_one", 0.5), Score("latency_s", 0.125)),
    ])


def _row(case: Case, response: Response, *scores: Score) -> CaseResult:
    return CaseResult(case, response, {s.name: s for s in scores})


def _expected(table: ResultTable) -> dict[str, dict[str, float]]:
    return {metric: table.values_by_case(metric) for metric in table.metric_names()}


@pytest.fixture
def logged(tmp_path, migrated_store):
    """The table logged as one suite run of suite "s"; (run id, tracking uri, table)."""
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    table = _table()
    cases = tuple(row.case for row in table.rows)
    run_id = tracking.log_suite_run(
        suite="s", table=table, verdict=evaluate("s", table, [Criterion("case_pass", "rate", ">=", 0.5)]),
        dataset=Dataset("s", tmp_path / "s.jsonl", cases, digest_cases(cases)),
        target_info={"target": "test", "model": "m"}, settings={}, tracking_uri=uri,
        experiment="runs-readers", root=tmp_path).run_id
    return run_id, uri, table


def test_the_written_table_reads_back_as_the_result_table_it_was_written_from(logged):
    run_id, uri, table = logged
    recorded = tracking.load_run(run_id, uri)
    assert recorded.suite == "s"
    for frame in (runs._table_frame(table), recorded.cases):  # as written, and as read from MLflow
        assert tracking.score_columns(frame) == SCORES
        # every column the writer adds beside the fixed ones is a score, whatever its values
        assert tracking.score_columns(frame, numeric=False) == SCORES
        values = tracking.case_values(frame)
        assert values == _expected(table)
        assert values["case_pass"] == {"a": 1.0, "b": 0.0, "c": 0.0, "d/ü": 1.0}
        assert values["error"] == {"a": 0.0, "b": 0.0, "c": 1.0, "d/ü": 0.0}
        assert values["only_one"] == {"d/ü": 0.5} and set(values["rouge_l"]) == {"a", "b"}
    by_id = dict(zip(recorded.cases["case_id"], recorded.cases["judge_rationale"]))
    assert by_id["a"] == "judge: correct" and by_id["b"] == "judge: wrong"


def test_score_columns_leave_out_the_fixed_columns_and_non_numeric_ones():
    import pandas as pd

    frame = pd.DataFrame({"case_id": ["x", "y"], "passed": [True, False], "attempts": [1, 2],
                          "error": [None, "boom"], "rouge_l": [0.5, None], "note": ["a", "b"]})
    assert tracking.score_columns(frame) == ["rouge_l"]
    assert tracking.score_columns(frame, numeric=False) == ["rouge_l", "note"]
    assert tracking.case_values(frame) == {"case_pass": {"x": 1.0, "y": 0.0}, "error": {"x": 0.0, "y": 1.0},
                                           "rouge_l": {"x": 0.5}}


def test_read_baseline_by_run_id_by_suite_pairs_and_its_errors(logged):
    run_id, uri, table = logged

    def read(ref: str, suite: str = "s", model: str = ""):
        return tracking.read_baseline(ref, suite, uri, model=model, alias="champion")

    assert read("") is None  # no baseline configured
    for ref in (run_id, f"other=0123,s= {run_id}"):
        baseline = read(ref)
        assert (baseline.run_id, baseline.error) == (run_id, "")
        assert baseline.values == _expected(table)
    assert read("other=0123").error == "no baseline run given for suite 's'"
    wrong = read(run_id, suite="other")
    assert (wrong.run_id, wrong.values) == (run_id, None)
    assert wrong.error == f"run {run_id} is of suite 's', not 'other'"
    assert "cannot read eval run" in read("0" * 32).error
    assert "not a registered model version" in read("champion").error


def test_read_baseline_of_the_champion_reads_the_run_that_cleared_it(logged):
    import mlflow

    run_id, uri, table = logged
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("toy")
    version = client.create_model_version("toy", source="file:///nowhere/model").version
    assert "no toy@champion" in tracking.read_baseline("champion", "s", uri, model="models:/toy/1",
                                                       alias="champion").error
    tracking.promote_model_version("toy", version, alias="champion", run_ids={"s": run_id}, tracking_uri=uri)
    for model in ("models:/toy/1", "models:/toy@champion"):
        baseline = tracking.read_baseline("champion", "s", uri, model=model, alias="champion")
        assert (baseline.run_id, baseline.error, baseline.values) == (run_id, "", _expected(table))
    other = tracking.read_baseline("champion", "t", uri, model="models:/toy/1", alias="champion")
    assert "has no recorded eval run of suite 't'" in other.error
