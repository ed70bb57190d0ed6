"""Each case's trace carries its evaluation the way mlflow.genai.evaluate's rows do (read back
through MLflow's own API from a real SQLite store): tags, the expectation, one feedback per
check with its source, the run id MLflow's UI filters on, error traces, minimal and full span
trees, and the sampling above trace_limit."""

from __future__ import annotations

import shutil

import mlflow
import pytest
from test_tracking_runs import _table

from harness import tracking
from harness.core import Case, CaseResult, Response, Score
from harness.datasets import Dataset, digest_cases
from harness.gates import Criterion, evaluate
from harness.results import ResultTable
from harness.tracking import case_traces


@pytest.fixture
def store(tmp_path, migrated_store):
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _log(store, tmp_path, table, *, full=True, limit=500, settings=None):
    cases = tuple(row.case for row in table.rows)
    return tracking.log_suite_run(
        suite="s", table=table, verdict=evaluate("s", table, [Criterion("case_pass", "rate", ">=", 0.5)]),
        dataset=Dataset("s-data", tmp_path / "s.jsonl", cases, digest_cases(cases)),
        target_info={"target": "test", "model": "m", "system_prompt": "be brief", "temperature": 0.0,
                     "max_tokens": 64, "seed": 0},
        settings=settings or {"judge_model": "judge-model"}, tracking_uri=store, experiment="case-traces",
        root=tmp_path, trace_limit=limit, full_traces=full)


def _traces(store, run_id):
    client = mlflow.MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("case-traces")
    traces = client.search_traces(locations=[experiment.experiment_id], run_id=run_id, max_results=1000)
    return {t.info.tags["harness.case_id"]: t for t in traces}


def _feedback(trace) -> dict:
    return {a.name: a for a in trace.info.assessments if a.feedback is not None}


def test_every_case_trace_carries_its_checks_expectation_and_run(store, tmp_path):
    table = _table()
    logged = _log(store, tmp_path, table)
    assert logged.traces.traced == len(table) and logged.traces.lost == 0 and logged.traces.sampled_out == 0
    traces = _traces(store, logged.run_id)
    assert set(traces) == {"a", "b", "c", "d/ü"}
    for trace in traces.values():
        info = trace.info
        assert info.tags["harness.suite"] == "s"
        assert info.trace_metadata["mlflow.sourceRun"] == logged.run_id
        root = next(s for s in trace.data.spans if s.parent_id is None)
        for assessment in info.assessments:
            # what MLflow's UI filters a run's assessments on, and the span it shows them at
            assert assessment.metadata["mlflow.assessment.sourceRunId"] == logged.run_id
            assert assessment.span_id == root.span_id
    a, b = _feedback(traces["a"]), _feedback(traces["b"])
    # pass/fail checks as booleans, measurements as numbers, with their source
    assert a["contains"].value is True and a["contains"].source.source_type == "CODE"
    assert a["contains"].source.source_id == "contains"
    assert a["rouge_l"].value == pytest.approx(0.75)
    assert b["regex"].value is False and b["regex"].rationale == "no match"
    assert b["judge_correct"].source.source_type == "LLM_JUDGE"
    assert b["judge_correct"].source.source_id == "judge-model"
    assert b["judge_correct"].rationale == "judge: wrong"
    # the case's own pass, which the UI filters the failed cases on
    assert a["case_passed"].value is True and b["case_passed"].value is False
    assert "regex: no match" in b["case_passed"].rationale
    expected = [x for x in traces["a"].info.assessments if x.expectation is not None]
    assert [(x.name, x.value, x.source.source_type) for x in expected] == [("expected_response", "4", "HUMAN")]
    assert not [x for x in traces["b"].info.assessments if x.expectation is not None]  # no reference, none
    # inputs and outputs as genai.evaluate records a row: the request/response previews
    assert traces["a"].info.request_preview == '{"messages": [{"role": "user", "content": "What is 2 + 2?"}]}'
    assert traces["a"].info.response_preview == '"4"'


def test_an_endpoint_error_is_an_error_trace_and_an_error_feedback_never_a_pass(store, tmp_path):
    from harness.scorers import score_case

    case = Case(id="e", messages=({"role": "user", "content": "hi"},), checks=({"type": "contains", "value": "hello"},))
    errored = ResultTable.build([case], [Response("", 2.0, error="HTTP 500: boom", attempts=3)], score_case).rows[0]
    unscored = CaseResult(Case(id="u", messages=case.messages, checks=case.checks),
                          Response("", 1.0, error="connection failed", attempts=2), {})
    ok = CaseResult(Case(id="ok", messages=({"role": "user", "content": "hi"},)), Response("hello", 0.1),
                    {"contains": Score("contains", 1.0, True)})
    logged = _log(store, tmp_path, ResultTable([errored, unscored, ok]))
    traces = _traces(store, logged.run_id)
    # one feedback per check, the error in place of a value (no second, plain False one)
    assert sorted(a.name for a in traces["e"].info.assessments) == ["case_passed", "contains", "latency_s"]
    assert _feedback(traces["u"])["contains"].error.error_code == "ENDPOINT_ERROR"  # from the case's checks
    trace = traces["e"]
    assert trace.info.state.value == "ERROR"
    root = next(s for s in trace.data.spans if s.parent_id is None)
    assert root.status.status_code.value == "ERROR" and "HTTP 500" in root.status.description
    feedback = _feedback(trace)
    assert feedback["contains"].value is None
    assert feedback["contains"].error.error_code == "ENDPOINT_ERROR"
    assert "HTTP 500: boom" in feedback["contains"].error.error_message
    assert feedback["case_passed"].value is False


def test_full_traces_hold_the_model_call_and_minimal_ones_the_root_span_only(store, tmp_path):
    row = CaseResult(Case(id="x", messages=({"role": "user", "content": "2+2?"},)),
                     Response("4", 0.2, prompt_tokens=7, completion_tokens=1, finish_reason="stop",
                              started_at=1_790_000_000.0), {})
    full = _traces(store, _log(store, tmp_path, ResultTable([row]), full=True).run_id)["x"]
    minimal = _traces(store, _log(store, tmp_path, ResultTable([row]), full=False).run_id)["x"]
    assert [s.span_type for s in minimal.data.spans] == ["CHAIN"]
    call = next(s for s in full.data.spans if s.parent_id is not None)
    assert call.span_type == "CHAT_MODEL" and call.name == "chat.completions"
    # the request as the target sends it: its system prompt and settings included
    assert call.inputs["messages"][0] == {"role": "system", "content": "be brief"}
    assert (call.inputs["model"], call.inputs["max_tokens"]) == ("m", 64)
    assert call.outputs["choices"][0]["message"]["content"] == "4"
    assert call.outputs["usage"]["total_tokens"] == 8
    # when it was asked and for how long, from the engine's clock
    assert full.info.request_time == 1_790_000_000_000 and full.info.execution_duration == 200


def test_above_the_limit_failed_cases_are_traced_first_then_the_same_passed_ones_every_run():
    def row(i, passed):
        return CaseResult(Case(id=f"c{i}", messages=({"role": "user", "content": "q"},)), Response("a", 0.0),
                          {"k": Score("k", float(passed), passed)})
    rows = [row(i, i % 10 != 0) for i in range(100)]  # 10 failed
    picked = case_traces.chosen(rows, 30)
    assert len(picked) == 30 and picked == sorted(picked)
    assert {i for i in range(0, 100, 10)} <= set(picked)  # every failed case
    shuffled = rows[50:] + rows[:50]  # another run of the suite, its cases in another order
    assert {shuffled[i].case.id for i in case_traces.chosen(shuffled, 30)} == {rows[i].case.id for i in picked}
    assert case_traces.chosen(rows, 100) == list(range(100)) and case_traces.chosen(rows, 0) == []
    assert case_traces.chosen(rows, 5) == [0, 10, 20, 30, 40]  # failures beyond the limit: the first ones


def test_the_sampled_out_and_the_lost_are_counted_and_said(store, tmp_path):
    rows = [CaseResult(Case(id=f"c{i}", messages=({"role": "user", "content": "q"},)), Response("a", 0.0),
                       {"k": Score("k", 1.0, True)}) for i in range(6)]
    logged = _log(store, tmp_path, ResultTable(rows), limit=4)
    assert (logged.traces.traced, logged.traces.sampled_out, logged.traces.lost) == (4, 2, 0)
    assert len(_traces(store, logged.run_id)) == 4
    assert "4/6 cases traced (2 passed cases not traced: above trace_limit=4" in logged.traces.line()
    run = mlflow.MlflowClient(tracking_uri=store).get_run(logged.run_id)
    assert run.data.metrics["traces/traced"] == 4 and run.data.metrics["traces/sampled_out"] == 2
    # a store that refuses the traces (an experiment that is not there): counted, with the reason
    report = case_traces.write_case_traces(store, "987654", logged.run_id, rows, suite="s", dataset="d",
                                           target_info={}, judge=None, full=False, limit=10)
    assert (report.traced, report.lost) == (0, 6)
    assert "LOST" in report.line() and report.why_lost


def test_the_run_is_an_evaluation_run_whose_page_shows_the_verdict_and_failed_cases(store, tmp_path):
    logged = _log(store, tmp_path, _table())
    run = mlflow.MlflowClient(tracking_uri=store).get_run(logged.run_id)
    assert run.data.tags["mlflow.runType"] == "genai_evaluate"
    note = run.data.tags["mlflow.note.content"]
    assert "**Verdict: FAILED**" in note and "case_pass" in note  # 2 of 4: the interval decides
    assert "**Failed cases: 2 of 4**" in note
    assert "- `b`: regex: no match; judge_correct: judge: wrong" in note
    assert "- `c`: error after 3 attempt(s): HTTP 500" in note
    assert "Traces: 4/4 cases traced" in note


def test_lost_traces_are_a_harness_error_of_the_session(tmp_path):
    """The store refusing case traces makes the session's tracking errors (exit 3 in pytest):
    the evidence users open in the UI would be incomplete, which is not the model's fault."""
    from harness.config import load_config
    from harness.session import Session
    from harness.suite import SuiteRun

    table = _table()
    cases = tuple(row.case for row in table.rows)
    run = SuiteRun("s", Dataset("s", tmp_path / "s.jsonl", cases, digest_cases(cases)), table,
                   evaluate("s", table, []))
    session = Session(load_config(tmp_path, env={}))
    try:
        session.runs.append(run)
        assert session.tracking_errors() == []
        run.traces = case_traces.TraceReport(4, 2, 0, 2, 500, "MlflowException: payload too large")
        assert session.tracking_errors() == ["suite 's': 2 case traces lost: MlflowException: payload too large"]
    finally:
        session.close()


def test_a_store_that_takes_no_spans_gets_them_as_the_traces_artifact(store, tmp_path, monkeypatch):
    """Where the store has no span logging (MLflow's exporter meets this on Databricks), each
    trace's spans go to its artifact location, as the exporter puts them, and read back."""
    from mlflow.tracing.client import TracingClient

    def no_spans(self, location, spans):
        raise NotImplementedError("this store logs no spans")

    monkeypatch.setattr(TracingClient, "log_spans", no_spans)
    logged = _log(store, tmp_path, _table())
    assert (logged.traces.traced, logged.traces.lost) == (4, 0)
    trace = _traces(store, logged.run_id)["a"]
    assert {s.span_type for s in trace.data.spans} == {"CHAIN", "CHAT_MODEL"}
    assert _feedback(trace)["contains"].value is True
