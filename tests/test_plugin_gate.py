"""End to end through pytest: a suite against the stub server passes on good answers, fails the
build on bad ones with a readable table, and reports each case in the terminal and JUnit XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from mini_project import BAD_ANSWERS, GOOD_ANSWERS
from stub_server import Fault, answer_table


def test_gate_passes_on_good_answers(stub, eval_project):
    server = stub(answer_table(GOOD_ANSWERS))
    result = eval_project(server.base_url)
    result.assert_outcomes(passed=6)  # 5 cases + the gate
    assert result.ret == 0
    out = result.stdout.str()
    assert "promotion gate 'mini': PASSED" in out
    assert "FAILED" not in out
    assert "xfailed" not in out  # no failed case, no note about them
    assert len(server.requests) == 5  # one call per case, not per item


def test_gate_fails_on_bad_answers_with_readable_table(stub, eval_project, pytester):
    server = stub(answer_table(BAD_ANSWERS))
    result = eval_project(server.base_url, "--junitxml=report.xml")
    assert result.ret == 1
    # four non-critical cases fail (reported as xfail with the reason), the critical one passes,
    # and the gate fails: the build fails because of the criterion, and only because of it
    result.assert_outcomes(passed=1, xfailed=4, failed=1)
    out = result.stdout.str()
    assert "promotion gate 'mini': FAILED" in out
    assert "pytest reports failed non-critical cases as 'xfailed'" in out  # said, once
    assert out.count("reports failed non-critical cases") == 1
    result.stdout.fnmatch_lines([
        "*criterion*value*threshold*result*",
        "*case_pass/rate*0.2*>= 0.8*FAIL*",
        "*error/rate*0*<= 0*pass*",
    ])
    # per case: which case failed, on which scorer, with the model's answer
    result.stdout.fnmatch_lines(["*add: regex: no match for*answer: '7 + 5 = 13'*"])
    result.stdout.fnmatch_lines(["*one-word: exact_match*length: 4 words > 1*"])

    suite = ET.parse(pytester.path / "report.xml").getroot().find("testsuite")
    cases = {tc.get("name"): tc for tc in suite.iter("testcase")}
    add = cases["test_case[add]"]
    assert "no match" in add.find("skipped").get("message")
    props = {p.get("name"): p.get("value") for p in add.iter("property")}
    assert props["answer"] == "7 + 5 = 13"
    assert props["score.regex"] == "0.0"
    assert cases["test_gate"].find("failure") is not None
    assert cases["test_case[capital]"].find("failure") is None


def test_failed_critical_case_fails_the_build_even_when_criteria_pass(stub, eval_project, pytester):
    answers = dict(GOOD_ANSWERS, **{"capital of France": "Lyon"})
    server = stub(answer_table(answers))
    # relax the rate so only the critical case can fail the build
    (pytester.path / "criteria.toml").write_text(
        '[[mini]]\nmetric = "case_pass"\naggregate = "rate"\nop = ">="\nthreshold = 0.5\n')
    result = eval_project(server.base_url)
    assert result.ret == 1
    result.assert_outcomes(passed=4, failed=2)  # the critical case item and the gate
    result.stdout.fnmatch_lines(["*CRITICAL case capital*failed: contains: none of*Paris*",
                                 "*critical cases failed*1*== 0*FAIL*"])


def test_dead_endpoint_fails_fast_and_never_passes(stub, eval_project):
    server = stub(lambda messages: Fault(status=503))
    result = eval_project(server.base_url)
    assert result.ret == 1
    out = result.stdout.str()
    assert "HTTP 503" in out
    result.stdout.fnmatch_lines(["*error/rate*1*<= 0*FAIL*"])
    # bounded retries: 1 retry configured -> exactly 2 attempts per case
    assert len(server.requests) == 10


def test_suite_without_criteria_fails_closed(stub, eval_project, pytester):
    (pytester.path / "criteria.toml").write_text("# nothing declared\n")
    server = stub(answer_table(GOOD_ANSWERS))
    result = eval_project(server.base_url)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*cannot decide: no promotion criteria declared for suite 'mini'*"])


def test_subset_selection_queries_only_selected_cases(stub, eval_project):
    server = stub(answer_table(GOOD_ANSWERS))
    result = eval_project(server.base_url, "--harness-limit", "2")
    result.assert_outcomes(passed=3)
    assert len(server.requests) == 2
    result.stdout.fnmatch_lines(["*a subset ran (2 of 5 cases)*"])


def test_malformed_dataset_is_a_collection_error_naming_file_and_line(stub, eval_project, pytester):
    path = pytester.path / "datasets" / "mini.jsonl"
    path.write_text(path.read_text() + '{"id": "capital", "input": "again"}\n{"input": "x"}\n')
    result = eval_project("http://127.0.0.1:9/v1")
    assert result.ret == 2  # pytest: interrupted by collection errors
    result.stdout.fnmatch_lines([
        "*mini.jsonl:6: duplicate id 'capital' (first used on line 1)*",
        "*mini.jsonl:7: missing id*",
    ])


def test_bad_configuration_is_a_usage_error(eval_project):
    result = eval_project("http://127.0.0.1:9/v1", "--harness-temperature", "warm")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--harness-temperature: invalid value 'warm' for temperature*"])


def test_markdown_report_for_ci(stub, eval_project, pytester):
    result = eval_project(stub(answer_table(BAD_ANSWERS)).base_url, "--harness-report", "out/report.md")
    assert result.ret == 1
    report = (pytester.path / "out" / "report.md").read_text()
    assert report.startswith("## Promotion gates: FAILED")
    assert "| `mini` | 5 | ❌ failed |" in report
    assert "| `case_pass/rate` | 0.2 [0.0362, 0.624] | >= 0.8 | 100.0 pts | **FAIL** (only 5 cases" in report
    assert "4 failed case(s)" in report and "| `add` | regex: no match" in report


def test_repeats_give_pass_at_k_pass_all_k_and_consistency(stub, eval_project, pytester):
    """Three samples per case from a stub that gets '7 + 5' right only on its second try: the
    case passes at k (one of three), not at all k, and is inconsistent; each sample is asked
    (and journalled) separately."""
    calls: dict[str, int] = {}

    def flaky_adder(messages):
        prompt = messages[-1]["content"]
        calls[prompt] = calls.get(prompt, 0) + 1
        if "7 + 5" in prompt:
            return "12" if calls[prompt] == 2 else "13"
        return answer_table(GOOD_ANSWERS)(messages)

    server = stub(flaky_adder)
    result = eval_project(server.base_url, "--harness-samples", "3", "--harness-temperature", "0.7",
                          "--harness-concurrency", "1")
    assert len(server.requests) == 5 * 3
    record = json.loads((pytester.path / ".harness" / "results" / "mini.json").read_text())
    add = next(c for c in record["cases"] if c["case_id"] == "add")
    assert (add["pass_at_k"], add["pass_all_k"], add["consistency"]) == (1.0, 0.0, 0.0)
    others = [c for c in record["cases"] if c["case_id"] != "add"]
    assert all((c["pass_at_k"], c["pass_all_k"], c["consistency"]) == (1.0, 1.0, 1.0) for c in others)
    assert record["metrics"]["pass_at_k/mean"] == 1.0 and record["metrics"]["pass_all_k/mean"] == 0.8
    # the table's row is the first answer (wrong), so case_pass is 4/5: just at the 0.8 criterion
    assert record["metrics"]["case_pass/rate"] == 0.8 and result.ret == 0


def test_a_suite_budget_asks_a_fixed_sample_and_full_asks_everything(stub, make_eval_project, pytester):
    cases = [{"id": f"q{i}", "input": f"Say ok number {i}.", "checks": [{"type": "contains", "value": "ok"}]}
             for i in range(30)]
    run = make_eval_project("budgeted", cases, "[[budgeted]]\nmetric = \"contains\"\naggregate = \"rate\"\n"
                                               "op = \">=\"\nthreshold = 1.0\n")
    pytester.makepyfile(test_budgeted_suite="""
import pytest
pytestmark = pytest.mark.eval_suite("budgeted", dataset="datasets/budgeted.jsonl", budget=10)
def test_case(eval_case):
    eval_case.check()
def test_gate(eval_suite):
    eval_suite.check()
""")
    server = stub(lambda messages: "ok")
    sampled = run(server.base_url)
    assert sampled.ret == 0
    sampled.assert_outcomes(passed=11)  # 10 cases and the gate
    assert "the suite's call budget sampled 10 of its 30 cases; --harness-full runs them all" in sampled.stdout.str()
    assert len(server.requests) == 10
    full = run(server.base_url, "--harness-full")
    full.assert_outcomes(passed=31)
    assert len(server.requests) == 10 + 30
