"""The robustness suite: perturbations keep what they must keep, generation is deterministic,
shrinking finds the smallest flip within its call budget, the relation fails flips (and fails
closed without an original answer), and end to end the gate fails a model that is not robust,
logs the invariance per kind and the smallest flips, and replays without model calls."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core import Case
from harness.results import ResultTable
from harness.suites.robustness import (
    INVARIANT,
    KINDS,
    RobustnessSuite,
    draw,
    perturbations,
    shrink,
)
from harness.scorers import score_case
from harness.core import Response

PROMPT = "Answer in one word. What is the capital of France?"

# prompts hypothesis invents: words of letters and digits, sentences ending in . or ?
words = st.from_regex(r"[A-Za-z][a-z]{0,9}|[0-9]{1,3}", fullmatch=True)
sentences = st.builds(lambda ws, end: " ".join(ws) + end, st.lists(words, min_size=2, max_size=8),
                      st.sampled_from([".", "?"]))
prompts = st.lists(sentences, min_size=1, max_size=3).map(" ".join)


def letters(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", text)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(prompts, st.sampled_from(KINDS), st.data())
def test_every_perturbation_changes_the_prompt_and_keeps_what_its_kind_must_keep(prompt, kind, data):
    strategy = perturbations(kind, prompt)
    if strategy is None:
        assert kind in ("reorder", "typos")  # a one-sentence prompt, or no word long enough
        return
    p = data.draw(strategy)
    assert p.kind == kind and p.text != prompt and p.change.startswith(
        {"case": "letter case", "whitespace": "whitespace", "punctuation": "punctuation", "typos": "typos",
         "distractor": "distractor", "reorder": "sentences", "paraphrase": "framed"}[kind])
    if kind == "case":
        assert p.text.lower() == prompt.lower()
    elif kind == "whitespace":
        assert p.text.split() == prompt.split()
    elif kind == "punctuation":
        assert letters(p.text) == letters(prompt)
    elif kind == "typos":
        changed = [(a, b) for a, b in zip(prompt.split(), p.text.split()) if a != b]
        assert len(p.text.split()) == len(prompt.split()) and 1 <= len(changed) <= 3
        assert all(a[0] == b[0] for a, b in changed)  # the first letter is kept: still readable
        assert not any(re.search(r"\d", a) for a, _ in changed)  # numbers are never misspelt
    elif kind in ("distractor", "paraphrase"):
        assert prompt in p.text
    elif kind == "reorder":
        assert sorted(p.text.split()) == sorted(prompt.split())


def test_typos_spare_quoted_text_and_capitalised_keywords():
    prompt = "Reply with the word 'banana' written in JSON format, please."
    for p in draw("q", "typos", prompt, 10):
        assert "'banana'" in p.text and "JSON" in p.text


def test_drawing_is_deterministic_and_distinct_per_case_and_kind():
    first = [draw("case-a", kind, PROMPT, 3) for kind in KINDS]
    again = [draw("case-a", kind, PROMPT, 3) for kind in KINDS]
    assert first == again
    for examples in first:
        assert len({p.text for p in examples}) == len(examples) >= 1
    assert draw("case-b", "typos", PROMPT, 3) != draw("case-a", "typos", PROMPT, 3)  # seeded per case


def test_shrinking_reports_the_smallest_perturbation_that_flips():
    # the model fails whenever "capital" is misspelt: the smallest flip is one typo in that word
    examples = draw("c", "typos", PROMPT, 3)
    assert any("capital" not in p.text for p in examples) and any(p.change.count("->") > 1 for p in examples)
    smallest = shrink("c", "typos", PROMPT, 3, lambda p: "capital" not in p.text)
    assert smallest is not None and smallest.change.count("->") == 1 and "'capital' ->" in smallest.change


def test_shrinking_finds_nothing_when_nothing_flips_and_stops_when_it_may_not_ask():
    assert shrink("c", "typos", PROMPT, 3, lambda p: False) is None
    asked = []

    def flips(p):  # only the drawn examples are known; no further calls allowed
        if p.text in {e.text for e in draw("c", "typos", PROMPT, 3)}:
            return "capital" not in p.text
        asked.append(p.text)
        return None

    smallest = shrink("c", "typos", PROMPT, 3, flips)
    assert smallest is not None and "capital" not in smallest.text  # the drawn flip itself, unshrunk


def _source(case_id="cap", prompt=PROMPT):
    return {"id": case_id, "input": prompt, "expected": "Paris", "checks": [{"type": "contains", "value": "Paris"}],
            "tags": ["smoke"]}


def _suite_dataset(tmp_path: Path, suite: RobustnessSuite, rows: list[dict]):
    path = tmp_path / "sources.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return suite.load(path)


def _answer(text: str) -> Response:
    return Response(text=text, latency_s=0.01)


def test_the_relation_fails_flips_shrinks_them_within_the_budget_and_fails_closed(tmp_path):
    suite = RobustnessSuite(examples=2, shrink_calls=3)
    dataset = _suite_dataset(tmp_path, suite, [_source(), _source("nobody", "Who is the mayor of Atlantis?")])
    cases = list(dataset.cases)
    assert cases[0].attributes["role"] == "original" and cases[0].id == "cap"
    assert {c.attributes["perturbation"] for c in cases if c.attributes["role"] == "perturbed"} == set(KINDS)

    def model(prompt: str) -> Response:  # right unless "capital" is misspelt
        return _answer("Paris." if "capital" in prompt.lower() else "I do not know.")

    responses = [model(c.prompt) if c.attributes["source_case"] == "cap"
                 else Response(text="", latency_s=0.0, error="HTTP 500") if c.id == "nobody"
                 else _answer("Atlantis has no mayor.") for c in cases]
    asked: list[str] = []

    def ask(batch):
        asked.extend(c.prompt for c in batch)
        return [model(c.prompt) for c in batch]

    all_cases, all_responses, scorer = suite.relate(cases, responses, score_case, ask)
    table = ResultTable.build(all_cases, all_responses, scorer)
    rows = {row.case.id: row for row in table.rows}
    flipped = [r for r in table.rows if r.case.attributes["role"] == "perturbed"
               and r.case.attributes["source_case"] == "cap" and not r.passed]
    assert flipped and all("capital" not in r.case.prompt.lower() for r in flipped)
    assert all("outcome flipped: the original passed" in r.scores[INVARIANT].rationale for r in flipped)
    # the check's own score is kept as a measurement, not a second verdict
    assert rows["cap~case-1"].scores["contains"].passed is None and rows["cap~case-1"].passed
    minimal = rows["cap~typos-minimal"]
    assert minimal.case.attributes["role"] == "minimal" and minimal.case.attributes["change"].count("->") == 1
    assert not minimal.passed and len(asked) <= suite.shrink_calls
    # the other source's original got no answer: its perturbations cannot be judged invariant
    other = [r for r in table.rows if r.case.attributes["source_case"] == "nobody" and r.case.id != "nobody"]
    assert other and all(not r.passed and "fails closed" in r.scores[INVARIANT].rationale for r in other)

    analysis = suite.analyze(table)
    drawn_typos = [r for r in table.rows if r.case.attributes["role"] == "perturbed"
                   and r.case.attributes["perturbation"] == "typos"]
    assert analysis.metrics["invariance/typos"] == pytest.approx(
        sum(r.scores[INVARIANT].value for r in drawn_typos) / len(drawn_typos))  # minimal rows excluded
    assert analysis.metrics["invariance/typos/ci_low"] < analysis.metrics["invariance/typos"] < 1
    assert analysis.metrics["invariance/case"] < 1  # nothing could be judged for "nobody"
    assert analysis.metrics["robustness/smallest_flips"] == 1
    flips = analysis.tables["robustness_smallest_flips"]
    assert list(flips["source_case"]) == ["cap"] and bool(flips["still_flips"].iloc[0])


ROBUSTNESS_SUITE = """
import pytest
from harness.plugin import EvalSuite
from harness.suites.robustness import RobustnessSuite

SUITE = RobustnessSuite(examples=2, shrink_calls=4)


@pytest.mark.eval_suite("robust", dataset="datasets/robust.jsonl", loader=SUITE.load, relation=SUITE.relate,
                        analysis=SUITE.analyze)
class TestRobust(EvalSuite):
    pass
"""

ROBUSTNESS_CRITERIA = """
[[robust]]
metric = "invariance/rate"
aggregate = "value"
op = ">="
threshold = 0.9
"""


@pytest.fixture
def robust_project(make_eval_project, pytester):
    sources = [_source(), {"id": "add", "input": "What is 7 + 5? Reply with the number.", "expected": "12",
                           "checks": [{"type": "regex", "pattern": "\\b12\\b"}]}]
    run = make_eval_project("robust", sources, ROBUSTNESS_CRITERIA)
    (pytester.path / "test_robust_suite.py").write_text(ROBUSTNESS_SUITE)
    return run


def _answers(messages):
    prompt = messages[-1]["content"].lower()
    return "Paris." if "capital" in prompt else "12" if "7 + 5" in prompt else "I do not know."


def _brittle(messages):  # the same model, but any change to the wording throws it
    prompt = messages[-1]["content"]
    if prompt in (PROMPT, "What is 7 + 5? Reply with the number."):
        return _answers(messages)
    return "I do not know."


def test_the_gate_passes_a_robust_model_and_fails_a_brittle_one(robust_project, stub):
    import mlflow

    robust = robust_project(stub(_answers).base_url, "--harness-journal", "journal-robust")
    assert robust.ret == 0, robust.stdout.str()
    brittle = robust_project(stub(_brittle).base_url, "--harness-journal", "journal-brittle")
    assert brittle.ret == 1, brittle.stdout.str()
    out = brittle.stdout.str()
    assert "invariance/rate" in out and "fail" in out and "outcome flipped: the original passed" in out

    client = mlflow.MlflowClient(tracking_uri=robust_project.tracking_uri)
    experiment = client.get_experiment_by_name("mini-evals")
    runs = {r.data.tags["harness.verdict"]: r for r in client.search_runs([experiment.experiment_id])}
    failed = runs["failed"]
    assert failed.data.metrics["invariance/rate"] < 0.9 <= runs["passed"].data.metrics["invariance/rate"]
    for kind in ("case", "whitespace", "punctuation", "typos", "distractor", "paraphrase"):
        assert f"invariance/{kind}" in failed.data.metrics and f"invariance/{kind}/ci_low" in failed.data.metrics
    assert failed.data.metrics["robustness/smallest_flips"] >= 1
    assert failed.data.metrics["engine/followup_calls"] >= 1
    path = client.download_artifacts(failed.info.run_id, "robustness_smallest_flips.json")
    flips = json.loads(Path(path).read_text())
    assert flips["data"] and "change" in flips["columns"]
    # each flip is on its case's trace, as a failed `invariant` feedback saying what flipped
    traces = client.search_traces(locations=[experiment.experiment_id], run_id=failed.info.run_id, max_results=500)
    invariant = [a for t in traces for a in t.info.assessments if a.name == "invariant"]
    assert invariant and any(a.value is False and "outcome flipped" in a.rationale for a in invariant)
    assert len(traces) == failed.data.metrics["traces/traced"]


def test_a_replay_reproduces_the_run_and_its_shrinking_without_model_calls(robust_project, stub):
    import mlflow

    server = stub(_brittle)
    first = robust_project(server.base_url, "--harness-journal", "journal")
    assert first.ret == 1, first.stdout.str()
    asked = len(server.requests)
    replay = robust_project(server.base_url, "--harness-journal", "journal", "--harness-replay")
    assert replay.ret == 1, replay.stdout.str()
    assert len(server.requests) == asked  # the endpoint saw nothing
    client = mlflow.MlflowClient(tracking_uri=robust_project.tracking_uri)
    experiment = client.get_experiment_by_name("mini-evals")
    original, replayed = sorted(client.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time)
    assert replayed.data.metrics["engine/calls"] == 0 and replayed.data.metrics["engine/followup_calls"] == 0
    assert replayed.data.metrics["engine/followup_reused"] == original.data.metrics["engine/followup_calls"] > 0
    for name in ("invariance/rate", "robustness/smallest_flips", "invariance/typos"):
        assert replayed.data.metrics[name] == original.data.metrics[name]
    # a replay makes no calls but its cases still get (minimal) traces with their assessments
    traces = client.search_traces(locations=[experiment.experiment_id], run_id=replayed.info.run_id, max_results=500)
    assert len(traces) == replayed.data.metrics["traces/traced"] > 0
    assert all(len(t.data.spans) == 1 for t in traces)
    assert all(any(a.name == "case_passed" for a in t.info.assessments) for t in traces)


def test_an_unknown_perturbation_kind_is_refused():
    with pytest.raises(ValueError, match="unknown perturbation kind"):
        perturbations("emoji", PROMPT)


def test_perturbed_cases_keep_the_source_checks_and_system_message(tmp_path):
    row = {**_source(), "system": "Answer briefly."}
    dataset = _suite_dataset(tmp_path, RobustnessSuite(examples=1), [row])
    for case in dataset.cases:
        assert case.messages[0] == MappingProxyType({"role": "system", "content": "Answer briefly."}) \
            or dict(case.messages[0]) == {"role": "system", "content": "Answer briefly."}
        assert case.checks == dataset.cases[0].checks and "smoke" in case.tags
    assert isinstance(dataset.cases[1], Case) and dataset.cases[1].prompt != PROMPT
