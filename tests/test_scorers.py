"""Tests of the quality scorers, the result table and the promotion gate."""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core import Case
from harness.gates import Criterion, CriteriaError, Verdict, evaluate, load_criteria
from harness.results import CASE_PASS, ERROR, CaseResult, ResultTable, _merge
from harness.core import Score
from harness.scorers import CHECKS, score_case
from harness.scorers.quality import (
    contains, exact_match, json_check, length_check, list_items, normalize,
    not_contains, parse_json_answer, regex, rouge_l, token_f1,
)
from harness.core import Response

FAST = settings(max_examples=100, deadline=None, database=None)


def make_case(case_id: str = "c", *, checks=(), expected: str | None = None,
              critical: bool = False, prompt: str = "question?") -> Case:
    return Case(
        id=case_id,
        messages=(MappingProxyType({"role": "user", "content": prompt}),),
        expected=expected,
        checks=tuple(MappingProxyType(c) for c in checks),
        critical=critical,
        source=f"test.jsonl:{case_id}",
    )


def ok(text: str, latency_s: float = 0.5, **kw) -> Response:
    return Response(text=text, latency_s=latency_s, **kw)


def failed(error: str = "HTTP 500: boom", latency_s: float = 2.0, attempts: int = 3) -> Response:
    return Response(text="", latency_s=latency_s, error=error, attempts=attempts)


# --- normalize / exact_match -------------------------------------------------------------------

@pytest.mark.parametrize("raw, normalized", [
    ("The Capital is PARIS!", "capital is paris"),
    ("  an   apple,\ta pear.\n", "apple pear"),
    ("Theater", "theater"),  # 'the' inside a word is kept
    ("a", ""),
    ("", ""),
])
def test_normalize(raw, normalized):
    assert normalize(raw) == normalized


@pytest.mark.parametrize("answer, expected, passed", [
    ("Paris", "Paris", True),
    ("  paris. ", "Paris", True),
    ("The Paris!", "paris", True),
    ("GREEN", "Green", True),
    ("Paris, France", "Paris", False),
    ("Lyon", "Paris", False),
])
def test_exact_match(answer, expected, passed):
    score = exact_match(answer, {"type": "exact_match"}, expected)
    assert score.name == "exact_match"
    assert score.passed is passed
    assert score.value == float(passed)
    assert (score.rationale == "") is passed
    if not passed:
        assert repr(expected) in score.rationale


def test_exact_match_without_expected_fails():
    score = exact_match("anything", {"type": "exact_match"}, None)
    assert score.passed is False and score.value == 0.0


# --- contains / not_contains -------------------------------------------------------------------

@pytest.mark.parametrize("answer, check, passed", [
    ("The capital is Paris.", {"value": "Paris"}, True),
    ("the capital is PARIS.", {"value": "paris"}, True),
    ("The capital is Lyon.", {"value": "Paris"}, False),
    ("It is Tokyo", {"any_of": ["Kyoto", "tokyo"]}, True),
    ("It is Osaka", {"any_of": ["Kyoto", "Tokyo"]}, False),
])
def test_contains(answer, check, passed):
    score = contains(answer, {"type": "contains", **check}, None)
    assert score.name == "contains"
    assert (score.passed, score.value) == (passed, float(passed))
    if not passed:
        assert "none of" in score.rationale
        for needle in check.get("any_of", [check.get("value")]):
            assert needle in score.rationale


@pytest.mark.parametrize("answer, check, passed, found", [
    ("I cannot help with that", {"value": "sorry"}, True, []),
    ("SORRY, no", {"value": "sorry"}, False, ["sorry"]),
    ("As an AI model, I apologize", {"any_of": ["as an ai", "apologize", "refuse"]}, False,
     ["as an ai", "apologize"]),
    ("Here you go", {"any_of": ["as an ai", "apologize"]}, True, []),
])
def test_not_contains(answer, check, passed, found):
    score = not_contains(answer, {"type": "not_contains", **check}, None)
    assert score.name == "not_contains"
    assert (score.passed, score.value) == (passed, float(passed))
    if found:
        assert f"forbidden {found!r}" in score.rationale
    else:
        assert score.rationale == ""


# --- regex -------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, pattern, passed", [
    ("7 + 5 = 12", r"\b12\b", True),
    ("7 + 5 = 125", r"\b12\b", False),
    ("The answer is ROME", r"\brome\b", True),  # case-insensitive
    ("line one\nanswer: yes", r"^answer: (yes|no)$", False),  # no MULTILINE: ^ is the start
    ("answer: no", r"^answer: (yes|no)$", True),
])
def test_regex(answer, pattern, passed):
    score = regex(answer, {"type": "regex", "pattern": pattern}, None)
    assert score.name == "regex"
    assert score.passed is passed
    if not passed:
        assert f"/{pattern}/" in score.rationale


# --- json --------------------------------------------------------------------------------------

SCHEMA = {"type": "object", "required": ["name", "tags"],
          "properties": {"name": {"type": "string"},
                         "tags": {"type": "array", "items": {"type": "string"}},
                         "meta": {"type": "object",
                                  "properties": {"age": {"type": "integer"}}}}}


@pytest.mark.parametrize("answer", [
    '{"a": 1}',
    '  {"a": 1}\n',
    '```json\n{"a": 1}\n```',
    '```JSON\n{"a": 1}\n```',
    '```\n{"a": 1}\n```',
    '\n```json\n{"a": 1}\n```\n',
    '```json{"a": 1}```',
])
def test_parse_json_answer_accepts_plain_and_fenced(answer):
    assert parse_json_answer(answer) == {"a": 1}


@pytest.mark.parametrize("answer", [
    '{"a": 1',
    "a equals one",
    'Here it is:\n```json\n{"a": 1}\n```',  # prose around the fence is not JSON
    "",
])
def test_json_check_rejects_invalid(answer):
    score = json_check(answer, {"type": "json"}, None)
    assert score.name == "json"
    assert score.passed is False and score.value == 0.0
    assert score.rationale.startswith("not valid JSON")


def test_json_check_with_schema_passes():
    answer = '```json\n{"name": "x", "tags": ["a", "b"], "meta": {"age": 3}}\n```'
    score = json_check(answer, {"type": "json", "schema": SCHEMA}, None)
    assert score.passed is True and score.value == 1.0


@pytest.mark.parametrize("answer, path, fragment", [
    ('{"name": "x", "tags": ["a", 2]}', "tags/1", "2 is not of type 'string'"),
    ('{"name": "x", "tags": [], "meta": {"age": "old"}}', "meta/age", "'old' is not of type"),
    ('{"name": "x"}', "(root)", "'tags' is a required property"),
    ('[1, 2]', "(root)", "is not of type 'object'"),
])
def test_json_check_schema_violation_names_path(answer, path, fragment):
    score = json_check(answer, {"type": "json", "schema": SCHEMA}, None)
    assert score.passed is False and score.value == 0.0
    assert score.rationale.startswith(f"schema violation at {path}: ")
    assert fragment in score.rationale


# --- length ------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, bounds, passed, fragment", [
    ("one two three", {"max_words": 3}, True, ""),
    ("one two three four", {"max_words": 3}, False, "4 words > 3"),
    ("one", {"min_words": 2}, False, "1 words < 2"),
    ("one two", {"min_words": 2}, True, ""),
    ("  abcde  ", {"max_chars": 5}, True, ""),  # surrounding whitespace is not counted
    ("abcdef", {"max_chars": 5}, False, "6 chars > 5"),
    ("abc", {"min_chars": 4}, False, "3 chars < 4"),
    ("", {"min_words": 0, "max_words": 0}, True, ""),
])
def test_length(answer, bounds, passed, fragment):
    score = length_check(answer, {"type": "length", **bounds}, None)
    assert score.name == "length"
    assert (score.passed, score.value) == (passed, float(passed))
    assert (fragment in score.rationale) if fragment else score.rationale == ""


def test_length_reports_every_violated_bound():
    score = length_check("word " * 10, {"type": "length", "max_words": 3, "max_chars": 5}, None)
    assert score.passed is False
    assert score.rationale == "10 words > 3; 49 chars > 5"


# --- list_items --------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    "- apple\n- pear\n- plum",
    "* apple\n* pear\n* plum",
    "1. apple\n2. pear\n3. plum",
    "1) apple\n2) pear\n3) plum",
    "• apple\n• pear\n• plum",
    "Fruits:\n  - apple\n  - pear\n  - plum\nEnjoy!",
    "10. apple\n11. pear\n12. plum",
])
def test_list_items_styles(answer):
    score = list_items(answer, {"type": "list_items", "count": 3}, None)
    assert score.name == "list_items"
    assert score.passed is True and score.value == 1.0


@pytest.mark.parametrize("answer, counted", [
    ("apple, pear, plum", 0),
    ("- apple\n- pear", 2),
    ("-apple\n-pear\n-plum", 0),  # a marker needs a space after it
    ("**apple**\n**pear**\n**plum**", 0),  # bold is not a bullet
    ("1.5 apples\n- pear\n- plum", 2),
    ("-  \n- pear\n- plum\n- fig", 3),  # an empty bullet is not an item
])
def test_list_items_counts(answer, counted):
    score = list_items(answer, {"type": "list_items", "count": 3}, None)
    assert score.passed is (counted == 3)
    if counted != 3:
        assert score.rationale == f"{counted} list items, expected 3"


BUILT_IN = {"exact_match": "quality", "contains": "quality", "not_contains": "quality", "regex": "quality",
            "json": "quality", "length": "quality", "list_items": "quality", "refusal": "safety", "leak": "safety",
            "canary": "safety", "injection": "safety", "pii": "safety", "toxicity": "safety", "decision": "bias",
            "sentiment": "bias", "bbq": "bias"}


def test_every_built_in_check_is_registered_with_its_family():
    from harness.scorers import registry

    assert set(BUILT_IN) <= set(registry.names())
    assert {name: registry.get(name).family for name in BUILT_IN} == BUILT_IN
    # the compatibility view reads the same functions
    assert CHECKS["contains"] is contains and CHECKS["json"] is json_check and "regex" in CHECKS
    assert {name for name in BUILT_IN if registry.get(name).needs} == {"refusal", "decision", "injection"}


# --- token_f1 / rouge_l ------------------------------------------------------------------------

def test_token_f1_known_values():
    assert token_f1("The cat sat.", "the cat sat") == 1.0
    assert token_f1("cat sat", "dog ran") == 0.0
    # pred [cat, sat], gold [cat, sat, down]: P = 1, R = 2/3, F1 = 0.8
    assert token_f1("The cat sat", "cat sat down") == pytest.approx(0.8)
    # duplicate tokens count once per occurrence: pred [a1 a1 a1] vs gold [a1]: P=1/3, R=1
    assert token_f1("x x x", "x") == pytest.approx(0.5)
    assert token_f1("", "") == 1.0
    assert token_f1("the", "paris") == 0.0  # nothing left of the answer after normalization


def test_rouge_l_known_values():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert rouge_l("alpha beta gamma", "delta epsilon zeta") == 0.0
    # stemming: cats/cat and running/run match
    assert rouge_l("cats running", "cat run") == pytest.approx(1.0)
    partial = rouge_l("the cat sat", "the cat sat on the mat")
    assert 0.0 < partial < 1.0
    # LCS 3 of 3 answer tokens and 6 reference tokens: P=1, R=0.5, F=2/3
    assert partial == pytest.approx(2 / 3)


_words = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@FAST
@given(_words, _words)
def test_token_f1_bounded_and_symmetric(a, b):
    value = token_f1(a, b)
    assert 0.0 <= value <= 1.0
    assert value == token_f1(b, a)


@FAST
@given(_words.filter(lambda s: normalize(s) != ""))
def test_token_f1_identity(text):
    assert token_f1(text, text) == 1.0


@FAST
@given(_words)
def test_normalize_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once


@settings(max_examples=60, deadline=None, database=None)
@given(st.text("abc xyz ABC.,!", max_size=30), st.text("abc xyz ABC.,!", max_size=30))
def test_rouge_l_bounded(a, b):
    assert 0.0 <= rouge_l(a, b) <= 1.0


# --- score_case --------------------------------------------------------------------------------

ALL_CHECKS = [
    {"type": "exact_match"},
    {"type": "contains", "value": "Paris"},
    {"type": "not_contains", "value": "London"},
    {"type": "regex", "pattern": "paris"},
    {"type": "json"},
    {"type": "length", "max_words": 5},
    {"type": "list_items", "count": 1},
]


def test_score_case_good_response():
    case = make_case(checks=[{"type": "contains", "value": "Paris"}, {"type": "length", "max_words": 5}],
                     expected="Paris")
    scores = score_case(case, ok("Paris", latency_s=0.25, prompt_tokens=10, completion_tokens=2))
    by_name = {s.name: s for s in scores}
    assert [s.name for s in scores] == ["contains", "length", "screen_pii", "screen_toxicity", "token_f1",
                                        "rouge_l", "total_tokens", "latency_s"]  # no system prompt: 2 screens
    assert by_name["contains"].passed is True and by_name["length"].passed is True
    assert by_name["token_f1"].value == 1.0 and by_name["token_f1"].passed is None
    assert by_name["rouge_l"].value == pytest.approx(1.0)
    assert by_name["total_tokens"].value == 12.0
    assert by_name["latency_s"].value == 0.25 and by_name["latency_s"].passed is None


def test_score_case_without_expected_or_tokens_has_no_reference_metrics():
    scores = score_case(make_case(checks=[{"type": "regex", "pattern": "x"}]), ok("no"))
    assert [s.name for s in scores] == ["regex", "screen_pii", "screen_toxicity", "latency_s"]
    assert scores[0].passed is False


def test_score_case_error_fails_every_check():
    case = make_case(checks=ALL_CHECKS, expected="Paris")
    scores = score_case(case, failed("HTTP 503: overloaded", latency_s=4.0))
    checks = [s for s in scores if s.name != "latency_s"]
    assert [s.name for s in checks] == [c["type"] for c in ALL_CHECKS]
    for s in checks:
        assert s.passed is False and s.value == 0.0
        assert "HTTP 503: overloaded" in s.rationale
    # no reference measurements of an answer that does not exist
    assert not {"token_f1", "rouge_l", "total_tokens"} & {s.name for s in scores}
    assert scores[-1] == Score("latency_s", 4.0)


def test_error_response_is_never_a_pass_even_when_checks_would_pass_on_empty_text():
    # not_contains and length would pass on the empty text of an error response
    case = make_case(checks=[{"type": "not_contains", "value": "sorry"},
                             {"type": "length", "max_words": 3}])
    table = ResultTable.build([case], [failed()], score_case)
    row = table.rows[0]
    assert row.passed is False
    assert all(s.passed is False for n, s in row.scores.items() if n != "latency_s")
    assert row.failures() == ["error after 3 attempt(s): HTTP 500: boom"]


def test_error_response_without_checks_is_not_a_pass():
    table = ResultTable.build([make_case()], [failed()], score_case)
    assert table.rows[0].passed is False
    assert table.aggregate(CASE_PASS, "rate") == 0.0


# --- ResultTable -------------------------------------------------------------------------------

def _fixed_scorer(scores_by_id):
    return lambda case, response: list(scores_by_id[case.id])


def test_result_table_case_pass_and_error_rate():
    cases = [make_case("a", checks=[{"type": "contains", "value": "yes"}]),
             make_case("b", checks=[{"type": "contains", "value": "yes"}]),
             make_case("c", checks=[{"type": "contains", "value": "yes"}]),
             make_case("d")]
    responses = [ok("yes"), ok("no"), failed(), ok("whatever")]
    table = ResultTable.build(cases, responses, score_case)
    assert len(table) == 4
    assert table.values(CASE_PASS) == [1.0, 0.0, 0.0, 1.0]
    assert table.values(ERROR) == [0.0, 0.0, 1.0, 0.0]
    assert table.aggregate(CASE_PASS, "rate") == 0.5
    assert table.aggregate(CASE_PASS, "count") == 2.0
    assert table.aggregate(ERROR, "rate") == 0.25
    assert table.is_pass_fail("contains") and not table.is_pass_fail("latency_s")
    assert table.rows[1].failures() == ["contains: none of ['yes'] in answer"]


LATENCIES = [0.1, 0.4, 0.2, 3.0, 0.3, 0.25, 1.5, 0.05, 0.9, 0.6, 0.35]


def test_result_table_aggregates_against_numpy():
    cases = [make_case(f"c{i}") for i in range(len(LATENCIES))]
    responses = [ok("x", latency_s=v) for v in LATENCIES]
    table = ResultTable.build(cases, responses, score_case)
    assert table.values("latency_s") == LATENCIES
    assert table.aggregate("latency_s", "mean") == pytest.approx(numpy.mean(LATENCIES))
    assert table.aggregate("latency_s", "p95") == pytest.approx(numpy.percentile(LATENCIES, 95))
    assert table.aggregate("latency_s", "p50") == pytest.approx(numpy.median(LATENCIES))
    assert table.aggregate("latency_s", "max") == 3.0 and table.aggregate("latency_s", "min") == 0.05
    # the p95 is interpolated between the two largest values, not one of them
    assert 1.5 < table.aggregate("latency_s", "p95") < 3.0
    summary = table.summary()
    assert summary["n_cases"] == 11.0
    assert summary["latency_s/p95"] == pytest.approx(numpy.percentile(LATENCIES, 95))
    assert summary["case_pass/rate"] == 1.0 and "case_pass/mean" not in summary


def test_rate_of_a_pass_fail_metric():
    scores = {"a": [Score("regex", 1.0, True)], "b": [Score("regex", 0.0, False)],
              "c": [Score("regex", 1.0, True)], "d": []}
    cases = [make_case(i) for i in "abcd"]
    table = ResultTable.build(cases, [ok("")] * 4, _fixed_scorer(scores))
    assert table.values("regex") == [1.0, 0.0, 1.0]  # only cases that have the metric
    assert table.aggregate("regex", "rate") == pytest.approx(2 / 3)
    assert table.aggregate("regex", "mean") == pytest.approx(2 / 3)


def test_aggregate_absent_metric_is_none_and_unknown_aggregate_raises():
    table = ResultTable.build([make_case()], [ok("x")], score_case)
    assert table.aggregate("token_f1", "mean") is None
    with pytest.raises(ValueError, match="unknown aggregate 'median'"):
        table.aggregate("latency_s", "median")


def test_build_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 cases but 1 responses"):
        ResultTable.build([make_case("a"), make_case("b")], [ok("x")], score_case)


def test_duplicate_check_names_merged_all_must_pass():
    case = make_case(checks=[{"type": "regex", "pattern": r"\bParis\b"},
                             {"type": "regex", "pattern": r"\bFrance\b"}])
    both = ResultTable.build([case], [ok("Paris, France")], score_case).rows[0]
    assert both.scores["regex"].passed is True and both.passed

    one = ResultTable.build([case], [ok("Paris, Texas")], score_case).rows[0]
    merged = one.scores["regex"]
    assert merged.passed is False and merged.value == 0.0
    assert "France" in merged.rationale and "Paris" not in merged.rationale
    assert one.passed is False
    assert one.failures() == [r"regex: no match for /\bFrance\b/"]


def test_merge_keeps_all_rationales_and_measurements_stay_unjudged():
    merged = _merge([Score("regex", 0.0, False, "no match for /a/"),
                     Score("regex", 0.0, False, "no match for /b/"),
                     Score("latency_s", 1.0), Score("latency_s", 2.0)])
    assert merged["regex"].rationale == "no match for /a/; no match for /b/"
    assert merged["latency_s"].passed is None and merged["latency_s"].value == 1.0
    # failing first, passing second: still failed
    assert _merge([Score("x", 0.0, False), Score("x", 1.0, True)])["x"].passed is False


def test_critical_failures():
    cases = [make_case("crit-ok", checks=[{"type": "contains", "value": "y"}], critical=True),
             make_case("crit-bad", checks=[{"type": "contains", "value": "y"}], critical=True),
             make_case("plain-bad", checks=[{"type": "contains", "value": "y"}]),
             make_case("crit-err", critical=True)]
    table = ResultTable.build(cases, [ok("y"), ok("n"), ok("n"), failed()], score_case)
    assert [r.case.id for r in table.critical_failures()] == ["crit-bad", "crit-err"]


# --- gates: load_criteria ----------------------------------------------------------------------

GOOD_CRITERIA = """
[[quality]]
metric = "case_pass"
aggregate = "rate"
op = ">="
threshold = 0.8
why = "most cases must pass"

[[quality]]
metric = "latency_s"
aggregate = "p95"
op = "<"
threshold = 2

[[other]]
metric = "error"
aggregate = "rate"
op = "<="
threshold = 0.0
"""


def write_criteria(tmp_path, text: str):
    path = tmp_path / "criteria.toml"
    path.write_text(text)
    return path


def test_load_criteria(tmp_path):
    criteria = load_criteria(write_criteria(tmp_path, GOOD_CRITERIA))
    assert set(criteria) == {"quality", "other"}
    first, second = criteria["quality"]
    assert first == Criterion("case_pass", "rate", ">=", 0.8, "most cases must pass")
    assert second.threshold == 2.0 and isinstance(second.threshold, float)
    assert second.describe() == "latency_s/p95 < 2"


def test_load_criteria_file_not_found(tmp_path):
    with pytest.raises(CriteriaError, match="criteria file not found"):
        load_criteria(tmp_path / "nope.toml")


def test_load_criteria_bad_toml(tmp_path):
    path = write_criteria(tmp_path, "[[quality]\nmetric = \n")
    with pytest.raises(CriteriaError) as info:
        load_criteria(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("body, fragment", [
    ('[quality]\nmetric = "x"\n', "[quality] must be an array of tables ([[quality]])"),
    ('[[quality]]\nmetric = "x"\naggregate = "rate"\n', "#1: missing ['op', 'threshold']"),
    ('[[quality]]\nmetric = "x"\naggregate = "rate"\nop = ">="\nthreshold = 1\ncolour = "red"\n',
     "#1: unknown ['colour']"),
    ('[[quality]]\nmetric = "x"\naggregate = "median"\nop = ">="\nthreshold = 1\n',
     "aggregate 'median' not in"),
    ('[[quality]]\nmetric = "x"\naggregate = "rate"\nop = "=>"\nthreshold = 1\n',
     "op '=>' not in"),
    ('[[quality]]\nmetric = "x"\naggregate = "rate"\nop = ">="\nthreshold = "0.8"\n',
     "threshold must be a number"),
    ('[[quality]]\nmetric = "x"\naggregate = "rate"\nop = ">="\nthreshold = true\n',
     "threshold must be a number"),
])
def test_load_criteria_malformed(tmp_path, body, fragment):
    path = write_criteria(tmp_path, body)
    with pytest.raises(CriteriaError) as info:
        load_criteria(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_load_criteria_reports_every_problem(tmp_path):
    body = GOOD_CRITERIA + (
        '\n[[quality]]\nmetric = "x"\n'
        '\n[[other]]\nmetric = "y"\naggregate = "nope"\nop = ">="\nthreshold = 1\n')
    with pytest.raises(CriteriaError) as info:
        load_criteria(write_criteria(tmp_path, body))
    message = str(info.value)
    assert "[[quality]] #3: missing" in message
    assert "[[other]] #2: aggregate 'nope'" in message


def test_load_criteria_array_of_non_tables(tmp_path):
    with pytest.raises(CriteriaError):
        load_criteria(write_criteria(tmp_path, "quality = [1, 2]\n"))


# --- gates: evaluate / Verdict -----------------------------------------------------------------

def _table(n_pass: int, n_fail: int, *, critical_fail: bool = False) -> ResultTable:
    check = [{"type": "contains", "value": "yes"}]
    cases = [make_case(f"p{i}", checks=check) for i in range(n_pass)]
    cases += [make_case(f"f{i}", checks=check, critical=critical_fail) for i in range(n_fail)]
    responses = [ok("yes", latency_s=0.5)] * n_pass + [ok("no", latency_s=0.5)] * n_fail
    return ResultTable.build(cases, responses, score_case)


CRITERIA = [Criterion("case_pass", "rate", ">=", 0.8), Criterion("error", "rate", "<=", 0.0),
            Criterion("latency_s", "p95", "<", 1.0)]


def test_evaluate_passes_on_good_results():
    verdict = evaluate("quality", _table(9, 1), CRITERIA)
    assert verdict.passed is True
    assert [r.passed for r in verdict.results] == [True, True, True]
    assert verdict.results[0].value == pytest.approx(0.9)
    assert verdict.n_cases == 10 and verdict.problems == () and verdict.critical_failures == ()


def test_evaluate_fails_on_metric_below_threshold():
    verdict = evaluate("quality", _table(7, 3), CRITERIA)
    assert verdict.passed is False
    assert [r.passed for r in verdict.results] == [False, True, True]
    assert verdict.results[0].value == pytest.approx(0.7)


@pytest.mark.parametrize("op, threshold, passed", [
    (">=", 0.9, True), (">", 0.9, False), ("<=", 0.9, True), ("<", 0.9, False),
    (">", 0.89, True), ("<", 0.91, True),
])
def test_evaluate_operators_at_the_boundary(op, threshold, passed):
    verdict = evaluate("q", _table(9, 1), [Criterion("case_pass", "rate", op, threshold)])
    assert verdict.passed is passed


@pytest.mark.parametrize("criteria", [None, []])
def test_evaluate_fails_closed_without_criteria(criteria):
    verdict = evaluate("quality", _table(10, 0), criteria)
    assert verdict.passed is False
    assert verdict.problems == ("no promotion criteria declared for suite 'quality'",)
    assert "cannot decide: no promotion criteria" in verdict.report()


def _result(verdict, name):
    return next(r for r in verdict.results if r.criterion.name == name)


def test_evaluate_fails_closed_when_metric_absent():
    verdict = evaluate("quality", _table(10, 0), [Criterion("case_pass", "rate", ">=", 0.8),
                                                  Criterion("token_f1", "mean", ">=", 0.5)])
    assert verdict.passed is False
    absent = _result(verdict, "token_f1/mean")
    assert absent.value is None and absent.passed is False
    assert absent.note == "no case produced this metric"
    assert _result(verdict, "case_pass/rate").passed is True


def test_default_error_budget_applies_unless_declared():
    table = ResultTable.build([make_case("a"), make_case("b")],
                              [ok("x"), Response(text="", latency_s=0.1, error="HTTP 503")], score_case)
    implicit = evaluate("q", table, [Criterion("latency_s", "max", "<", 10)])
    assert [r.criterion.name for r in implicit.results] == ["error/rate", "latency_s/max"]
    assert implicit.passed is False and _result(implicit, "error/rate").value == 0.5
    # a declared budget replaces the default one instead of doubling it
    budget = evaluate("q", table, [Criterion("error", "rate", "<=", 0.5)])
    assert [r.criterion.name for r in budget.results] == ["error/rate"] and budget.passed


def test_evaluate_fails_with_no_cases():
    verdict = evaluate("quality", ResultTable([]), CRITERIA)
    assert verdict.passed is False
    assert "no cases were evaluated" in verdict.problems


def test_critical_failure_fails_the_verdict_even_when_criteria_pass():
    verdict = evaluate("quality", _table(19, 1, critical_fail=True), CRITERIA)
    assert all(r.passed for r in verdict.results)
    assert verdict.critical_failures == ("f0",)
    assert verdict.passed is False
    assert verdict.to_dict()["critical_failures"] == ["f0"]
    report = verdict.report()
    assert "critical cases failed: f0" in report
    assert "FAILED" in report.splitlines()[0]


def test_verdict_report_contains_metric_value_threshold_and_result():
    verdict = evaluate("quality", _table(7, 3), CRITERIA + [Criterion("token_f1", "mean", ">=", 0.5)])
    lines = verdict.report().splitlines()
    assert lines[0] == "promotion gate 'quality': FAILED (10 cases)"
    row = {line.split()[0]: line for line in lines[1:]}
    # value, its 95% interval (Wilson for rates), threshold, result (and a note: 10 cases is few)
    # ... and the minimum detectable regression of a rate (10 cases at 0.7: 37.3 points)
    assert row["case_pass/rate"].split()[:9] == ["case_pass/rate", "0.7", "[0.397,", "0.892]", ">=", "0.8",
                                                 "37.3", "pts", "FAIL"]
    assert row["error/rate"].split()[:7] == ["error/rate", "0", "[0,", "0.278]", "<=", "0", "14.9"]
    assert "  smallest regression this gate detects (95% confidence, 80% power): 37.3 points (case_pass/rate)" in lines
    assert row["latency_s/p95"].split() == ["latency_s/p95", "0.5", "[0.5,", "0.5]", "<", "1", "pass"]
    assert row["token_f1/mean"].split()[:5] == ["token_f1/mean", "n/a", ">=", "0.5", "FAIL"]
    assert "(no case produced this metric)" in row["token_f1/mean"]
    assert "criterion" in row and "threshold" in row["criterion"]


def test_verdict_report_passed():
    verdict = evaluate("quality", _table(10, 0), CRITERIA)
    report = verdict.report()
    assert report.splitlines()[0] == "promotion gate 'quality': PASSED (10 cases)"
    assert "FAIL" not in report
    assert verdict.to_dict()["passed"] is True
    assert [c["metric"] for c in verdict.to_dict()["criteria"]] == ["case_pass", "error", "latency_s"]


def test_verdict_with_nan_value_fails():
    # a NaN aggregate compares false with every threshold: the criterion fails, never passes
    verdict = Verdict("q", ())
    assert verdict.passed is True  # baseline: nothing to fail
    table = ResultTable([CaseResult(make_case(), ok("x"), {"m": Score("m", math.nan)})])
    result = evaluate("q", table, [Criterion("m", "mean", "<=", 1.0)])
    assert result.passed is False and math.isnan(_result(result, "m/mean").value)
    assert _result(result, "m/mean").note == "the value is NaN: cannot decide"


def test_summary_reports_pass_rate_per_category_under_mlflow_safe_names():
    check = ({"type": "contains", "value": "yes"},)
    cases = [Case(id=f"c{i}", messages=({"role": "user", "content": "q"},), checks=check,
                  attributes=MappingProxyType({"category": cat})) for i, cat in enumerate(["a b", "a b", "x=y"])]
    table = ResultTable.build(cases, [ok("yes"), ok("no"), ok("yes")], score_case)
    summary = table.summary()
    assert summary["case_pass/rate/category/a b"] == 0.5
    assert summary["case_pass/rate/category/x_y"] == 1.0
