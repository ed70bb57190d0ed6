"""Comparing two runs case by case: a candidate that is truly worse shows as a significant
change with its flipped cases; the command reads runs back from a real MLflow store."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.compare import compare_cases


def _cases(passed: list[bool], rouge: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"case_id": [f"c{i}" for i in range(len(passed))], "passed": passed,
                         "contains": [float(p) for p in passed], "rouge_l": rouge, "response": "x"})


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


def test_compare_command_reads_runs_from_mlflow(stub, eval_project, monkeypatch):
    import subprocess
    import sys

    import mlflow
    from mini_project import BAD_ANSWERS, GOOD_ANSWERS
    from stub_server import answer_table

    monkeypatch.setenv("HARNESS_TRACES", "false")
    assert eval_project(stub(answer_table(GOOD_ANSWERS)).base_url).ret == 0
    assert eval_project(stub(answer_table(BAD_ANSWERS)).base_url).ret == 1
    client = mlflow.MlflowClient(eval_project.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("mini-evals").experiment_id],
                              order_by=["attributes.start_time ASC"])
    good, bad = runs[0].info.run_id, runs[1].info.run_id
    out = subprocess.run([sys.executable, "-m", "harness", "compare", good, bad, "--markdown",
                          "--tracking-uri", eval_project.tracking_uri], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "| `passed` | 1 | 0.2 |" in out.stdout and "**Flipped cases (4)**" in out.stdout
    missing = subprocess.run([sys.executable, "-m", "harness", "compare", good, "0" * 32,
                              "--tracking-uri", eval_project.tracking_uri], capture_output=True, text=True)
    assert missing.returncode == 2 and "cannot read eval run" in missing.stderr
