"""Drift between two runs: a shifted output distribution, refusal rate and vocabulary are
flagged, a rerun of the same behaviour is not; the command logs the check to MLflow and exits
1 on drift (a scheduled alert)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.drift import drift, psi


def _cases(answers: list[str], refused: list[bool], inputs: list[str] | None = None) -> pd.DataFrame:
    n = len(answers)
    return pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "input": inputs or [f"question number {i}" for i in range(n)],
                         "response": answers, "passed": [not r for r in refused], "refused": [float(r) for r in refused],
                         "rouge_l": [0.4 + 0.001 * i for i in range(n)]})


CALM = [f"The answer to item {i} is explained here in a short and friendly way." for i in range(120)]


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    ref = [float(i % 50) for i in range(500)]
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-9)
    assert psi(ref, [v + 40 for v in ref]) > 1.0


def test_same_behaviour_is_not_drift():
    ref = _cases(CALM, [i % 10 == 0 for i in range(120)])
    cur = _cases(list(reversed(CALM)), [i % 10 == 1 for i in range(120)])
    report = drift(ref, cur)
    assert report.drifted == [], report.text()


def test_shifted_outputs_refusals_and_vocabulary_are_drift():
    ref = _cases(CALM, [i % 10 == 0 for i in range(120)])
    refusing = ["I'm sorry, but I cannot help with that request under any circumstances whatsoever." * 3
                if i % 2 else CALM[i] for i in range(120)]
    cur = _cases(refusing, [bool(i % 2) or i % 10 == 0 for i in range(120)])
    names = {s.name for s in drift(ref, cur).drifted}
    assert {"output_length", "refusal_rate", "output_text", "pass_rate"} <= names
    assert "input_length" not in names and "input_text" not in names


def test_drift_command_logs_to_mlflow_and_exits_1_on_drift(stub, eval_project, monkeypatch):
    import subprocess
    import sys

    import mlflow
    from conftest import BAD_ANSWERS, GOOD_ANSWERS
    from stub_server import answer_table

    monkeypatch.setenv("HARNESS_TRACES", "false")
    eval_project(stub(answer_table(GOOD_ANSWERS)).base_url)
    eval_project(stub(answer_table(GOOD_ANSWERS)).base_url)
    eval_project(stub(answer_table(BAD_ANSWERS)).base_url)
    client = mlflow.MlflowClient(eval_project.tracking_uri)
    runs = [r.info.run_id for r in client.search_runs([client.get_experiment_by_name("mini-evals").experiment_id],
                                                      order_by=["attributes.start_time ASC"])]

    def run(a, b):
        return subprocess.run([sys.executable, "-m", "harness", "drift", a, b, "--tracking-uri",
                               eval_project.tracking_uri, "--alpha", "0.5"], capture_output=True, text=True)

    same = run(runs[0], runs[1])
    assert same.returncode == 0, same.stdout + same.stderr
    changed = run(runs[0], runs[2])  # 5 cases only: a loose alpha, the effect sizes decide
    assert changed.returncode == 1 and "pass_rate" in changed.stdout and "DRIFT" in changed.stdout
    drift_runs = client.search_runs([client.get_experiment_by_name("harness-drift").experiment_id])
    assert len(drift_runs) == 2 and all(r.data.tags["harness.kind"] == "drift" for r in drift_runs)
    flagged = [r for r in drift_runs if r.data.metrics["drift/signals_drifted"] > 0]
    assert len(flagged) == 1 and flagged[0].data.params["current_run_id"] == runs[2]
    assert not math.isnan(flagged[0].data.metrics["drift/pass_rate/effect"])
