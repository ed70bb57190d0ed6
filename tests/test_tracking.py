"""The MLflow run, read back with MlflowClient: what a user comparing runs in the UI relies on."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from mini_project import BAD_ANSWERS, GOOD_ANSWERS, MINI_CASES
from harness.datasets import load
from stub_server import answer_table

SECRET = "sk-test-DO-NOT-LOG-4f9c2a"


def test_mlflow_runs_read_back(stub, eval_project, pytester, monkeypatch):
    """One passing and one failing run of the mini suite in one store (with an API key set),
    read back with MlflowClient. One test, because each run is a real pytest subprocess."""
    client, runs = make_two_runs(stub, eval_project, monkeypatch)
    check_params_metrics_tags_and_verdict(client, runs, pytester)
    check_per_case_table_and_dataset_input(client, runs, pytester)
    check_api_key_never_reaches_the_store_or_artifacts(eval_project.store)


def make_two_runs(stub, eval_project, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    good = eval_project(stub(answer_table(GOOD_ANSWERS)).base_url)
    bad = eval_project(stub(answer_table(BAD_ANSWERS)).base_url)
    assert (good.ret, bad.ret) == (0, 1)
    client = mlflow.MlflowClient(tracking_uri=eval_project.tracking_uri)
    experiment = client.get_experiment_by_name("mini-evals")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert len(runs) == 2
    return client, runs


def check_params_metrics_tags_and_verdict(client, runs, pytester):
    good, bad = runs
    digest = load(pytester.path / "datasets" / "mini.jsonl").digest
    for run in (good, bad):
        p = run.data.params
        assert p["target"] == "openai" and p["model"] == "stub-model"
        assert p["dataset_digest"] == digest and p["n_cases"] == str(len(MINI_CASES))
        assert p["harness_version"] and "git_commit" in p
        assert run.data.tags["harness.suite"] == "mini"
    assert good.data.tags["harness.verdict"] == "passed"
    assert bad.data.tags["harness.verdict"] == "failed"
    # same metric names across runs, so the UI compares them side by side
    assert set(good.data.metrics) == set(bad.data.metrics)
    assert good.data.metrics["case_pass/rate"] == 1.0
    assert bad.data.metrics["case_pass/rate"] == pytest.approx(0.2)
    assert (good.data.metrics["gate/passed"], bad.data.metrics["gate/passed"]) == (1.0, 0.0)
    # every case traced into its run, none lost; MLflow lists it as an evaluation run
    for run in (good, bad):
        assert run.data.metrics["traces/traced"] == len(MINI_CASES)
        assert run.data.metrics["traces/lost"] == 0
        assert run.data.tags["mlflow.runType"] == "genai_evaluate"
    traces = client.search_traces(locations=[good.info.experiment_id], run_id=good.info.run_id)
    assert len(traces) == len(MINI_CASES)
    # the run explains its own pass/fail
    assert "case_pass/rate" in bad.data.tags["mlflow.note.content"]
    verdict = json.loads(Path(client.download_artifacts(bad.info.run_id, "verdict.json")).read_text())
    assert verdict["passed"] is False
    rate = next(c for c in verdict["criteria"] if c["metric"] == "case_pass")
    assert (rate["threshold"], rate["op"], rate["passed"]) == (0.8, ">=", False)
    assert rate["value"] == pytest.approx(0.2)


def check_per_case_table_and_dataset_input(client, runs, pytester):
    good, bad = runs
    table = json.loads(Path(client.download_artifacts(bad.info.run_id, "eval_results.json")).read_text())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    by_id = {r["case_id"]: r for r in rows}
    assert set(by_id) == {c["id"] for c in MINI_CASES}
    assert by_id["add"]["response"] == "7 + 5 = 13" and by_id["add"]["passed"] is False
    assert "regex" in by_id["add"]["failures"]
    assert by_id["capital"]["passed"] is True
    inputs = bad.inputs.dataset_inputs
    assert len(inputs) == 1
    assert inputs[0].dataset.name == "mini"
    assert inputs[0].dataset.digest == load(pytester.path / "datasets" / "mini.jsonl").digest
    assert inputs[0].tags[0].value == "evaluation"


def check_api_key_never_reaches_the_store_or_artifacts(store: Path):
    files = [p for p in store.rglob("*") if p.is_file()]
    assert any(p.name == "eval_results.json" for p in files)  # the scan covers the artifacts
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), f"API key leaked into {path}"


def test_each_run_links_only_its_own_traces_when_suites_follow_each_other(stub, eval_project, pytester):
    """Runs are recorded in the background while the next suite is queried: the first suite's
    run must not pick up the second suite's traces, and none may be lost."""
    from mini_project import SUITE_TEMPLATE

    (pytester.path / "datasets" / "second.jsonl").write_text(
        (pytester.path / "datasets" / "mini.jsonl").read_text())
    (pytester.path / "criteria.toml").write_text(
        (pytester.path / "criteria.toml").read_text() + "\n" + MINI_SECOND_CRITERIA)
    pytester.makepyfile(test_second_suite=SUITE_TEMPLATE.format(suite="second"))
    server = stub(answer_table(GOOD_ANSWERS), latency_s=0.05)
    assert eval_project(server.base_url).ret == 0
    client = mlflow.MlflowClient(tracking_uri=eval_project.tracking_uri)
    experiment = client.get_experiment_by_name("mini-evals")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["harness.suite"] for r in runs) == ["mini", "second"]
    linked = set()
    for run in runs:
        traces = client.search_traces(locations=[experiment.experiment_id], run_id=run.info.run_id)
        assert len(traces) == len(MINI_CASES) == run.data.metrics["traces/traced"]
        assert {t.info.tags["harness.suite"] for t in traces} == {run.data.tags["harness.suite"]}
        linked |= {t.info.trace_id for t in traces}
    assert len(linked) == 2 * len(MINI_CASES)  # no trace in both runs


MINI_SECOND_CRITERIA = """
[[second]]
metric = "case_pass"
aggregate = "rate"
op = ">="
threshold = 0.8
"""
