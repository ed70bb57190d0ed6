"""vs_baseline criteria: the candidate is compared with a baseline run case by case (McNemar /
Wilcoxon, paired interval); a truly worse candidate fails, an equal one passes, and a baseline
that cannot be read fails closed."""

from __future__ import annotations

import mlflow
import pytest

from mini_project import BAD_ANSWERS, GOOD_ANSWERS, MINI_CASES, MINI_CRITERIA
from stub_server import answer_table

VS_BASELINE = MINI_CRITERIA.replace("threshold = 0.8", "threshold = 0.0") + """
[[mini]]
metric = "case_pass"
aggregate = "rate"
op = ">="
vs_baseline = true
delta = 0.1
why = "no regression against the baseline run"
"""


@pytest.fixture
def project(make_eval_project, monkeypatch):
    monkeypatch.setenv("HARNESS_TRACES", "false")
    return make_eval_project("mini", MINI_CASES, VS_BASELINE)


def _last_run_id(uri: str) -> str:
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("mini-evals")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])[0].info.run_id


def test_worse_candidate_fails_and_equal_one_passes_against_the_baseline(stub, project):
    first = project(stub(answer_table(GOOD_ANSWERS)).base_url)
    first.stdout.fnmatch_lines(["*case_pass/rate vs baseline*skipped: no baseline configured*"])
    baseline = _last_run_id(project.tracking_uri)

    worse = project(stub(answer_table(BAD_ANSWERS)).base_url, "--harness-baseline", baseline)
    assert worse.ret == 1
    worse.stdout.fnmatch_lines([f"*case_pass/rate vs baseline*-0.8*no sig. drop, < 0.1*FAIL*vs {baseline[:8]} on 5 cases*drop 0.8 >= 0.1*"])

    same = project(stub(answer_table(GOOD_ANSWERS)).base_url, "--harness-baseline", f"mini={baseline}")
    assert same.ret == 0, same.stdout.str()[-2000:]
    same.stdout.fnmatch_lines(["*case_pass/rate vs baseline*0 *pass*"])


def test_unreadable_baseline_fails_closed(stub, project):
    result = project(stub(answer_table(GOOD_ANSWERS)).base_url, "--harness-baseline", "0" * 32)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*case_pass/rate vs baseline*n/a*FAIL (baseline unavailable (fails closed)*"])
