"""Comparing two runs case by case: a candidate that is truly worse shows as a significant
change with its flipped cases; the report names the runs in the order of its columns; the
command exits 1 only when a metric the suite's criteria read regressed significantly; it reads
runs back from a real MLflow store."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from harness.compare import PASSED, compare_cases, project_criteria, watched_metrics
from harness.gates import Criterion


def _cases(passed: list[bool], rouge: list[float], **scores: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"case_id": [f"c{i}" for i in range(len(passed))], "passed": passed,
                         "contains": [float(p) for p in passed], "rouge_l": rouge, "response": "x", **scores})


def test_a_worse_candidate_is_a_significant_change_with_its_flips():
    base = _cases([True] * 40 + [False] * 10, [0.6] * 50)
    worse = _cases([True] * 25 + [False] * 25, [0.6 - 0.01 * (i % 7) - 0.2 for i in range(50)])
    result = compare_cases(base, worse, suite="q")
    passed = next(d for d in result.deltas if d.metric == "passed")
    assert passed.diff == pytest.approx(-0.3) and passed.p_value < 0.001 and passed.test == "McNemar"
    assert passed.ci_high < 0
    rouge = next(d for d in result.deltas if d.metric == "rouge_l")
    assert rouge.test == "Wilcoxon" and rouge.p_value < 0.001 and rouge.diff < -0.2
    assert [case for case, _, _ in result.flipped] == [f"c{i}" for i in range(25, 40)]
    assert "| `passed` |" in result.markdown() and "c25: pass -> fail" in result.text()


def test_a_candidate_differing_by_noise_is_not_significant():
    base = _cases([True] * 40 + [False] * 10, [0.5] * 50)
    swapped = [True] * 37 + [False] * 3 + [True] * 3 + [False] * 7  # 3 swaps each way
    result = compare_cases(base, _cases(swapped, [0.5 + (0.01 if i % 2 else -0.01) for i in range(50)]))
    passed = next(d for d in result.deltas if d.metric == "passed")
    assert passed.diff == 0 and passed.p_value > 0.5
    assert len(result.flipped) == 6
    assert result.regressions == []


# --- the header names the runs in the order of the columns ---------------------------------------

def _header_order_and_columns(result) -> None:
    """The run the header names first is the one whose values fill the `baseline` column, in the
    text and in the Markdown: the baseline run passes 0.8 of its cases, the candidate 0.5."""
    rates = {"base-run": 0.8, "cand-run": 0.5}
    text = result.text().splitlines()
    first = min(rates, key=text[0].index)
    heading = next(line.split() for line in text if line.split()[:1] == ["metric"])
    row = next(line.split() for line in text if line.split()[:1] == ["passed"])
    column = heading.index("baseline")
    assert float(row[column]) == rates[first] and first == "base-run", text[0]
    assert text[0].index("baseline") < text[0].index("base-run") < text[0].index("candidate") \
        < text[0].index("cand-run"), text[0]

    markdown = result.markdown().splitlines()
    title = next(line for line in markdown if line.startswith("### "))
    first = min(rates, key=title.index)
    cells = [c.strip() for c in next(line for line in markdown if line.startswith("| metric")).strip("|").split("|")]
    row = [c.strip() for c in next(line for line in markdown if line.startswith("| `passed`")).strip("|").split("|")]
    assert float(row[cells.index("baseline")]) == rates[first] and first == "base-run", title
    assert title.index("baseline") < title.index("base-run") < title.index("candidate") < title.index("cand-run")


def test_the_header_names_the_baseline_first_as_its_values_come_first():
    base = _cases([True] * 40 + [False] * 10, [0.6] * 50)
    cand = _cases([True] * 25 + [False] * 25, [0.6] * 50)
    _header_order_and_columns(compare_cases(base, cand, baseline="base-run", candidate="cand-run", suite="q"))


# --- which regressions count: the suite's criteria ------------------------------------------------

BASE = _cases([True] * 40 + [False] * 10, [0.6] * 50, nonsense=[0.0] * 45 + [1.0] * 5)
PASS_DROP = _cases([True] * 25 + [False] * 25, [0.6] * 50, nonsense=[0.0] * 45 + [1.0] * 5)
ROUGE_DROP = _cases([True] * 40 + [False] * 10, [0.35 + 0.01 * (i % 5) for i in range(50)],
                    nonsense=[0.0] * 45 + [1.0] * 5)
NONSENSE_UP = _cases([True] * 40 + [False] * 10, [0.6] * 50, nonsense=[0.0] * 25 + [1.0] * 25)


def _criteria(*criteria: Criterion) -> dict[str, list[Criterion]]:
    return {"q": list(criteria)}


CASE_PASS = Criterion("case_pass", "rate", ">=", 0.3)
ROUGE = Criterion("rouge_l", "mean", ">=", 0.16)
NONSENSE = Criterion("nonsense", "rate", "<=", 0.1)  # higher is worse


def _regressed(base, cand, criteria) -> list[str]:
    return [r.delta.metric for r in compare_cases(base, cand, suite="q", criteria=criteria).regressions]


def test_a_significant_drop_of_a_criterion_metric_is_a_regression():
    assert _regressed(BASE, PASS_DROP, _criteria(CASE_PASS, ROUGE)) == [PASSED]
    assert _regressed(BASE, ROUGE_DROP, _criteria(CASE_PASS, ROUGE)) == ["rouge_l"]
    result = compare_cases(BASE, PASS_DROP, baseline="base-run", candidate="cand-run", suite="q",
                           criteria=_criteria(CASE_PASS, ROUGE), criteria_source="criteria.toml")
    assert "regressed significantly (p < 0.05): 1" in result.text()
    assert "passed: 0.8 -> 0.5 (-0.3, p <0.001, McNemar), worse for case_pass/rate >= 0.3" in result.text()
    assert "**Regressed significantly (p < 0.05): 1**" in result.markdown()


def test_a_rise_of_a_lower_is_better_criterion_metric_is_a_regression_and_its_fall_is_not():
    assert _regressed(BASE, NONSENSE_UP, _criteria(NONSENSE)) == ["nonsense"]  # 0.1 -> 0.5
    assert _regressed(NONSENSE_UP, BASE, _criteria(NONSENSE)) == []  # 0.5 -> 0.1
    # the same changes read by a higher-is-better criterion: the fall is the regression
    higher_is_better = _criteria(Criterion("nonsense", "rate", ">=", 0.0))
    assert _regressed(NONSENSE_UP, BASE, higher_is_better) == ["nonsense"]
    assert _regressed(BASE, NONSENSE_UP, higher_is_better) == []


def test_a_regression_of_a_metric_no_criterion_reads_does_not_count():
    assert _regressed(BASE, PASS_DROP, _criteria(ROUGE)) == []  # the pass rate fell, rouge did not move
    assert _regressed(BASE, ROUGE_DROP, _criteria(CASE_PASS)) == []
    result = compare_cases(BASE, PASS_DROP, suite="q", criteria=_criteria(ROUGE))
    passed = next(d for d in result.deltas if d.metric == PASSED)
    assert passed.p_value < 0.001  # significant, and reported, but not a criterion's
    assert "no criterion metric regressed significantly" in result.text()


def test_an_improving_candidate_is_no_regression():
    criteria = _criteria(CASE_PASS, ROUGE, NONSENSE)
    assert _regressed(PASS_DROP, BASE, criteria) == []
    assert _regressed(ROUGE_DROP, BASE, criteria) == []
    assert _regressed(NONSENSE_UP, BASE, criteria) == []


def test_a_change_that_is_not_significant_is_no_regression():
    one_less = _cases([True] * 39 + [False] * 11, [0.6] * 50, nonsense=[0.0] * 45 + [1.0] * 5)
    assert _regressed(BASE, one_less, _criteria(CASE_PASS)) == []


def test_without_criteria_the_pass_rate_alone_decides_and_the_report_says_so():
    for criteria in (None, {"other": [ROUGE]}):
        result = compare_cases(BASE, PASS_DROP, suite="q", criteria=criteria, criteria_source="no file here")
        assert [r.delta.metric for r in result.regressions] == [PASSED]
        assert "only the pass rate (passed) decides the exit status" in result.text()
        assert "no file here" in result.text() and "only the pass rate" in result.markdown()
        assert compare_cases(BASE, ROUGE_DROP, suite="q", criteria=criteria).regressions == []


def test_criteria_compare_cannot_test_are_listed_as_not_tested():
    watched, notes = watched_metrics("q", {"q": [
        CASE_PASS, Criterion("latency_s", "p95", "<=", 15.0), Criterion("error", "rate", "<=", 0.0),
        Criterion("bias/flip_rate", "value", "<=", 0.1), Criterion("judge_correct", "rate", ">=", 0.3)],
        "screen": [Criterion("screen_pii", "rate", ">=", 0.98)]})
    assert {(w.metric, w.higher_is_better) for w in watched} == {(PASSED, True), ("judge_correct", True),
                                                                  ("screen_pii", True)}
    assert [n.split(":")[0] for n in notes] == ["latency_s/p95 <= 15", "error/rate <= 0", "bias/flip_rate <= 0.1"]
    result = compare_cases(BASE, PASS_DROP, suite="q", criteria={"q": [CASE_PASS, ROUGE,
                                                                       Criterion("judge_correct", "rate", ">=", 0.3)]})
    assert "not tested: judge_correct (judge_correct/rate >= 0.3): not in both runs' per-case tables" in result.text()


def test_the_project_criteria_file_is_found_as_a_suite_run_finds_it(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.harness]\ncriteria_file = "gates/c.toml"\n')
    (tmp_path / "gates").mkdir()
    (tmp_path / "gates" / "c.toml").write_text('[[q]]\nmetric = "rouge_l"\naggregate = "mean"\nop = ">="\n'
                                               'threshold = 0.1\n')
    criteria, source = project_criteria(tmp_path, env={})
    assert criteria == {"q": [Criterion("rouge_l", "mean", ">=", 0.1)]} and source.endswith("c.toml")
    assert _regressed(BASE, ROUGE_DROP, criteria) == ["rouge_l"] and _regressed(BASE, PASS_DROP, criteria) == []
    missing, why = project_criteria(tmp_path, env={"HARNESS_CRITERIA": "nowhere.toml"})
    assert missing is None and "criteria file not found" in why and "nowhere.toml" in why
    (tmp_path / "bad.toml").write_text("[[q]]\nmetric = 1\n")
    assert project_criteria(tmp_path, path=tmp_path / "bad.toml")[0] is None


# --- the command, against a real MLflow store ------------------------------------------------------

YES_CASES = [{"id": f"q{i}", "input": f"Answer yes to question {i}.", "expected": "yes",
              "checks": [{"type": "contains", "value": "yes"}]} for i in range(8)]
YES_CRITERIA = """
[[yesno]]
metric = "case_pass"
aggregate = "rate"
op = ">="
threshold = 0.5
"""


def _compare(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "compare", *args], capture_output=True, text=True, check=False,
                          cwd=cwd)


def test_compare_command_exits_1_on_a_criterion_regression_read_from_mlflow(stub, make_eval_project, monkeypatch,
                                                                           tmp_path):
    import mlflow
    from stub_server import answer_table

    monkeypatch.setenv("HARNESS_TRACES", "false")
    project = make_eval_project("yesno", YES_CASES, YES_CRITERIA)
    assert project(stub(answer_table({"question": "yes"})).base_url).ret == 0
    assert project(stub(answer_table({})).base_url).ret == 1  # 8 cases flip: McNemar p = 0.008
    client = mlflow.MlflowClient(project.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("mini-evals").experiment_id],
                              order_by=["attributes.start_time ASC"])
    good, bad = runs[0].info.run_id, runs[1].info.run_id
    uri = ["--tracking-uri", project.tracking_uri]

    worse = _compare(good, bad, "--markdown", *uri, cwd=None)  # pytester's directory, the project's: its criteria
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "| `passed` | 1 | 0 |" in worse.stdout and "**Flipped cases (8)**" in worse.stdout
    assert "- passed: case_pass/rate >= 0.5 (lower is worse)" in worse.stdout
    assert worse.stdout.rstrip().endswith("exit 1: passed regressed significantly (criterion metrics)")

    report_only = _compare(good, bad, "--report-only", *uri, cwd=None)
    assert report_only.returncode == 0, report_only.stderr
    assert "exit 0 (--report-only): passed regressed significantly" in report_only.stdout
    assert report_only.stdout.splitlines()[0].startswith(f"suite 'yesno': baseline {runs[0].info.run_name}")

    better = _compare(bad, good, *uri, cwd=None)
    assert better.returncode == 0 and "exit 0: no criterion metric regressed significantly" in better.stdout

    (tmp_path / "errors_only.toml").write_text('[[yesno]]\nmetric = "error"\naggregate = "rate"\nop = "<="\n'
                                               'threshold = 0.0\n')
    other_metric = _compare(good, bad, "--criteria", str(tmp_path / "errors_only.toml"), *uri, cwd=None)
    assert other_metric.returncode == 0, other_metric.stdout  # the pass rate fell, but no criterion reads it

    (tmp_path / "elsewhere").mkdir()
    elsewhere = _compare(good, bad, *uri, cwd=tmp_path / "elsewhere")  # no project here: the pass rate alone
    assert elsewhere.returncode == 1 and "only the pass rate (passed) decides the exit status" in elsewhere.stdout

    missing = _compare(good, "0" * 32, *uri, cwd=None)
    assert missing.returncode == 2 and "cannot read eval run" in missing.stderr
