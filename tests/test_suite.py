"""harness.suite: run_suite without pytest (from a script: the same pipeline, verdict and MLflow
run as `pytest evals`), pickling a suite and its run (what a worker process or a Spark task
needs), and a target kind defined outside the harness package running a suite, from Python and
through pytest."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.config import load_config
from harness.suite import Suite, SuiteRun, run_suite
from harness.targets import registry
from mini_project import BAD_ANSWERS, CANNED_TARGET, GOOD_ANSWERS, MINI_CASES, MINI_CRITERIA
from stub_server import answer_table

TESTS = Path(__file__).parent


def _project(root: Path, store: Path) -> str:
    """The mini quality project (five cases, one critical) under `root`, with its own copy of
    a migrated MLflow store; returns the tracking URI."""
    (root / "datasets").mkdir(parents=True, exist_ok=True)
    (root / "datasets" / "mini.jsonl").write_text("\n".join(json.dumps(c) for c in MINI_CASES) + "\n")
    (root / "criteria.toml").write_text(MINI_CRITERIA)
    (root / "pyproject.toml").write_text('[tool.harness]\ncriteria_file = "criteria.toml"\nexperiment = "mini"\n')
    shutil.copy(store, root / "mlflow.db")
    return f"sqlite:///{root / 'mlflow.db'}"


SCRIPT = """
import json, sys
import harness

config = harness.load_config(sys.argv[1])
run = harness.run_suite(harness.Suite("mini", "datasets/mini.jsonl"), config)
print(json.dumps({"passed": run.verdict.passed, "run_id": run.run_id, "cases": len(run.table),
                  "case_pass": run.table.aggregate("case_pass", "rate"),
                  "failed": sorted(r.case.id for r in run.table.rows if not r.passed),
                  "pytest_imported": "pytest" in sys.modules}))
"""


@pytest.mark.parametrize("answers, passed, failed", [(GOOD_ANSWERS, True, []),
                                                     (BAD_ANSWERS, False, ["add", "json", "list", "one-word"])])
def test_run_suite_from_a_script_without_pytest(tmp_path, stub, migrated_store, answers, passed, failed):
    """A plain Python process (pytest never imported) runs the suite against the stub endpoint,
    gates it and records its MLflow run; the gate fails on a bad model."""
    uri = _project(tmp_path, migrated_store)
    server = stub(answer_table(answers))
    env = {"PATH": "/usr/bin:/bin", "OPENAI_BASE_URL": server.base_url, "HARNESS_MODEL": "stub-model",
           "MLFLOW_TRACKING_URI": uri, "HARNESS_MAX_RETRIES": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_MODEL_CATALOG_URI": "", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["pytest_imported"] is False
    assert out["passed"] is passed and out["failed"] == failed and out["cases"] == 5
    assert out["case_pass"] == pytest.approx((5 - len(failed)) / 5)
    import mlflow

    recorded = mlflow.MlflowClient(tracking_uri=uri).get_run(out["run_id"])
    assert recorded.data.tags["harness.suite"] == "mini"
    assert recorded.data.metrics["case_pass/rate"] == pytest.approx(out["case_pass"])
    assert len(server.requests) == 5  # one call per case, asked once


def test_a_suite_and_its_run_survive_pickling(tmp_path, stub, migrated_store):
    """What a worker process or a Spark task receives and sends back: the suite, the config
    and the run, with its table and verdict, unchanged by pickling."""
    uri = _project(tmp_path, migrated_store)
    server = stub(answer_table(BAD_ANSWERS))
    config = load_config(tmp_path, env={"OPENAI_BASE_URL": server.base_url, "HARNESS_MODEL": "stub-model",
                                        "MLFLOW_TRACKING_URI": uri, "HARNESS_MAX_RETRIES": "1",
                                        "HARNESS_TRACES": "false"})
    suite = Suite("mini", "datasets/mini.jsonl", max_tokens=64)
    assert pickle.loads(pickle.dumps(suite)) == suite
    assert pickle.loads(pickle.dumps(config)) == config
    run = run_suite(suite, config)
    copy: SuiteRun = pickle.loads(pickle.dumps(run))
    assert copy.verdict.to_dict() == run.verdict.to_dict() and not copy.verdict.passed
    assert copy.table.summary() == run.table.summary()
    assert [r.scores for r in copy.table.rows] == [r.scores for r in run.table.rows]
    assert copy.by_id.keys() == run.by_id.keys() and copy.run_id == run.run_id is not None
    assert {body["max_tokens"] for body in server.requests} == {64}  # the suite's cap reached the endpoint


def test_a_dataframe_of_mlflow_evaluation_records_is_a_suites_dataset(tmp_path, stub, migrated_store):
    """inputs/expectations rows (MLflow's evaluation-set shape) made into a Dataset run as a
    suite: asked, scored, gated and logged with their traces like a JSONL file's cases."""
    import mlflow
    import pandas as pd

    from harness.datasets import from_frame

    uri = _project(tmp_path, migrated_store)
    server = stub(answer_table(GOOD_ANSWERS))
    frame = pd.DataFrame([{"id": c["id"], "inputs": {"question": c["input"]},
                           "expectations": {"expected_response": c.get("expected")}, "checks": c["checks"]}
                          for c in MINI_CASES])
    config = load_config(tmp_path, env={"OPENAI_BASE_URL": server.base_url, "HARNESS_MODEL": "stub-model",
                                        "MLFLOW_TRACKING_URI": uri, "HARNESS_MAX_RETRIES": "1"})
    run = run_suite(Suite("mini", from_frame(frame, "mini-frame")), config)
    assert run.verdict.passed and len(run.table) == len(MINI_CASES)
    assert {r.case.id for r in run.table.rows} == {c["id"] for c in MINI_CASES}
    client = mlflow.MlflowClient(tracking_uri=uri)
    traces = client.search_traces(locations=[client.get_run(run.run_id).info.experiment_id], run_id=run.run_id)
    assert len(traces) == len(MINI_CASES)
    with pytest.raises(ValueError, match="no file for a loader"):
        Suite("mini", from_frame(frame, "mini-frame"), loader=lambda path: None)


def test_a_suite_rejects_a_bad_budget():
    with pytest.raises(ValueError, match="budget"):
        Suite("mini", "datasets/mini.jsonl", budget=0)


def test_a_target_kind_defined_in_a_users_module_runs_a_suite(tmp_path, migrated_store, monkeypatch):
    """`@harness.target("canned")` in the user's own module; `target = "canned"` picks it."""
    uri = _project(tmp_path, migrated_store)
    (tmp_path / "my_targets.py").write_text(CANNED_TARGET.format(answers=BAD_ANSWERS))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))  # the test's kind goes with it
    import my_targets  # noqa: F401 - registers "canned"

    config = load_config(tmp_path, env={"HARNESS_TARGET": "canned", "MLFLOW_TRACKING_URI": uri,
                                        "HARNESS_TRACES": "false"})
    run = run_suite(Suite("mini", "datasets/mini.jsonl"), config)
    assert run.table.rows[0].response.model == "canned-model"
    assert not run.verdict.passed  # four of the five canned answers are wrong
    assert sorted(r.case.id for r in run.table.rows if not r.passed) == ["add", "json", "list", "one-word"]


USER_TARGET_SUITE = textwrap.dedent('''
    import pytest

    import my_targets  # noqa: F401 - the user's own target kind

    pytestmark = pytest.mark.eval_suite("mini", dataset="datasets/mini.jsonl")


    def test_case(eval_case):
        eval_case.check()


    def test_gate(eval_suite):
        eval_suite.check()
''')


def test_a_users_target_kind_gates_a_pytest_run(make_eval_project, pytester, monkeypatch):
    """The same target kind through `pytest` with `--harness-target canned`: the gate fails
    on its bad answers (exit 1), and an unknown kind is a usage error (exit 4) naming it."""
    run = make_eval_project("mini", MINI_CASES, MINI_CRITERIA)
    pytester.makepyfile(my_targets=CANNED_TARGET.format(answers=BAD_ANSWERS),
                        test_mini_suite=USER_TARGET_SUITE)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    result = run("http://127.0.0.1:9/v1", "--harness-target", "canned")
    assert result.ret == 1, result.stdout.str()[-3000:]
    result.stdout.fnmatch_lines(["*promotion gate 'mini'*FAIL*"])
    assert "(canned / stub-model, concurrency" in result.stdout.str()  # what the run says it asked
    unknown = run("http://127.0.0.1:9/v1", "--harness-target", "nope")
    assert unknown.ret == 4
    assert "target must be one of" in unknown.stderr.str() + unknown.stdout.str()


def test_a_bad_criteria_file_fails_before_any_model_call(tmp_path, stub, migrated_store):
    from harness.gates import CriteriaError

    uri = _project(tmp_path, migrated_store)
    (tmp_path / "criteria.toml").write_text('[[mini]]\nmetric = "case_pass"\naggregate = "rate"\nop = "=>"\n'
                                            'threshold = 0.8\n')
    server = stub(answer_table(GOOD_ANSWERS))
    config = load_config(tmp_path, env={"OPENAI_BASE_URL": server.base_url, "HARNESS_MODEL": "stub-model",
                                        "MLFLOW_TRACKING_URI": uri, "HARNESS_TRACES": "false"})
    with pytest.raises(CriteriaError):
        run_suite(Suite("mini", "datasets/mini.jsonl"), config)
    assert server.requests == []
