"""Check a smoke run of `pytest evals` through what it recorded: every suite logged one MLflow
run with its per-case table, verdict and traces; every case was answered; and the exit status
agrees with the recorded verdicts."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import mlflow

tracking_uri, junit_path, status = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
problems: list[str] = []
if status not in (0, 1):
    problems.append(f"pytest exited {status}: the harness did not complete (0 = gate passed, 1 = failed)")

client = mlflow.MlflowClient(tracking_uri=tracking_uri)
experiment = client.get_experiment_by_name("harness-evals")
runs = client.search_runs([experiment.experiment_id]) if experiment else []
if not runs:
    problems.append("no MLflow run was recorded")
verdicts = []
for run in runs:
    suite = run.data.tags.get("harness.suite")
    verdict = run.data.tags.get("harness.verdict")
    verdicts.append(verdict)
    n_cases = int(run.data.params["n_cases"])
    table = json.loads(Path(client.download_artifacts(run.info.run_id, "eval_results.json")).read_text())
    # a row per case at least; the robustness suite adds rows for the smallest flips it found
    if len(table["data"]) < n_cases or n_cases == 0:
        problems.append(f"{suite}: table has {len(table['data'])} rows for {n_cases} cases")
    if run.data.metrics.get("error/rate") != 0.0:
        problems.append(f"{suite}: the embedded model failed to answer some cases")
    # a trace per row of the table (up to the trace limit), each carrying its case's evaluation
    if run.data.metrics.get("traces/lost", 1) != 0:
        problems.append(f"{suite}: traces lost")
    traced = run.data.metrics.get("traces/traced", 0) + run.data.metrics.get("traces/sampled_out", 0)
    if traced != len(table["data"]):
        problems.append(f"{suite}: {traced:g} traces traced or sampled out for {len(table['data'])} rows")
    traces, token = [], None
    while True:
        page = client.search_traces(locations=[experiment.experiment_id], run_id=run.info.run_id,
                                    max_results=500, page_token=token, include_spans=False)
        traces += page
        token = page.token
        if not token:
            break
    if len(traces) != run.data.metrics.get("traces/traced"):  # none lost, none of another suite's
        problems.append(f"{suite}: {len(traces)} traces in MLflow, {run.data.metrics.get('traces/traced')} written")
    if any(t.info.tags.get("harness.suite") != suite
           or not any(a.name == "case_passed" for a in t.info.assessments) for t in traces):
        problems.append(f"{suite}: a trace without its suite tag or its case_passed feedback")
    print(f"smoke: suite {suite}: {n_cases} cases, case_pass/rate="
          f"{run.data.metrics['case_pass/rate']:.2f}, verdict {verdict}, run {run.info.run_id}")
if verdicts and (status == 0) != all(v == "passed" for v in verdicts):
    problems.append(f"exit status {status} contradicts the recorded verdicts {verdicts}")
cases = list(ET.parse(junit_path).getroot().iter("testcase")) if junit_path.exists() else []
if not cases:
    problems.append("no JUnit test cases recorded")
for problem in problems:
    print(f"smoke: FAILED: {problem}")
if problems:
    sys.exit(1)
print(f"smoke: OK ({len(runs)} run(s), {len(cases)} JUnit test cases)")
