"""Faults seen through `pytest evals`: what the user sees, that nothing is lost, and the gate's
decision (always a non-zero exit; never a silent pass)."""

from __future__ import annotations

import json

from mini_project import GOOD_ANSWERS, MINI_CASES
from stub_server import answer_table

SECRET = "sk-test-NEVER-STORED-77aa"


def test_mlflow_store_down_keeps_results_locally_and_fails(stub, eval_project, pytester, monkeypatch):
    server = stub(answer_table(GOOD_ANSWERS))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    # nothing listens on port 9: the tracking server is down
    result = eval_project(server.base_url, "--harness-tracking-uri", "http://127.0.0.1:9")
    assert result.ret == 3  # a harness error, told apart from a failed gate (1)
    out = result.stdout.str()
    assert "NOT RECORDED IN MLFLOW" in out and "http://127.0.0.1:9" in out
    record_path = pytester.path / ".harness" / "results" / "mini.json"
    assert f"results kept in {record_path}" in out
    record = json.loads(record_path.read_text())
    assert record["verdict"]["passed"] is True  # the model was fine: only the recording failed
    assert {c["case_id"] for c in record["cases"]} == {c["id"] for c in MINI_CASES}
    # the cases and the gate passed (the verdict is the model's); the recording failure is the
    # harness's, reported once at the end (MLflow records runs in the background)
    result.assert_outcomes(passed=6, failed=0)
    for path in (pytester.path / ".harness").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_dead_endpoint_fails_the_gate_through_the_error_budget(stub, eval_project, pytester):
    (pytester.path / "criteria.toml").write_text(
        '[[mini]]\nmetric = "case_pass"\naggregate = "rate"\nop = ">="\nthreshold = 0.0\n')
    result = eval_project("http://127.0.0.1:9/v1")  # nothing listens there
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*error/rate*1*<= 0*FAIL*"])
    assert "connection failed" in result.stdout.str()


def test_replay_rescores_without_any_model_call(stub, eval_project, pytester):
    server = stub(answer_table(GOOD_ANSWERS))
    first = eval_project(server.base_url)
    assert first.ret == 0 and len(server.requests) == 5
    # a stricter criterion, re-scored from the journal: no call reaches the model
    (pytester.path / "criteria.toml").write_text(
        '[[mini]]\nmetric = "latency_s"\naggregate = "max"\nop = "<"\nthreshold = 0.000001\n')
    replay = eval_project(server.base_url, "--harness-replay")
    assert len(server.requests) == 5
    assert replay.ret == 1
    replay.stdout.fnmatch_lines(["*5 answers reused*0 model calls made*",
                                 "*latency_s/max*< 1e-06*FAIL*"])
