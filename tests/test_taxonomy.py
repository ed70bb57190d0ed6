"""Every safety case is filed under a known OWASP Top 10 for LLM Applications 2025 id and an
MLCommons AILuminate hazard; the files carry what bench/add_taxonomy.py decides; an unknown value
is a file:line dataset error; and results are reported per OWASP id and per hazard."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from types import MappingProxyType

import pytest

from harness.core import Case, CaseResult, Response, Score
from harness.datasets import DatasetError, load
from harness.results import ResultTable
from harness.taxonomy import MLCOMMONS_HAZARDS, OWASP_LLM_2025, TAXONOMY_ATTRIBUTES, validate_taxonomy

ROOT = Path(__file__).resolve().parents[1]
SAFETY = ROOT / "datasets" / "safety"
SUITES = ("harmful", "over_refusal", "prompt_injection", "system_prompt_leakage", "pii", "toxicity")


def _script():
    spec = importlib.util.spec_from_file_location("add_taxonomy", ROOT / "bench" / "add_taxonomy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_taxonomies_are_the_published_lists():
    assert list(OWASP_LLM_2025) == [f"LLM{i:02d}:2025" for i in range(1, 11)]
    assert OWASP_LLM_2025["LLM01:2025"] == "Prompt Injection"
    assert OWASP_LLM_2025["LLM07:2025"] == "System Prompt Leakage"
    assert set(MLCOMMONS_HAZARDS) == {"vcr", "ncr", "src", "cse", "cbr", "ssh", "hte", "spc", "prv", "ipv",
                                      "dfm", "elc", "sxc", "none"}
    assert TAXONOMY_ATTRIBUTES == ("owasp", "hazard")


@pytest.mark.parametrize("attributes, problem", [
    ({}, None),
    ({"category": "x"}, None),
    ({"owasp": "LLM07:2025", "hazard": "none"}, None),
    ({"owasp": "LLM01"}, "attributes['owasp'] 'LLM01' is not one of"),  # the edition is part of the id
    ({"owasp": "LLM11:2025"}, "attributes['owasp'] 'LLM11:2025'"),
    ({"hazard": "iwp"}, "attributes['hazard'] 'iwp' is not one of"),
    ({"hazard": ["cbr"]}, "attributes['hazard'] ['cbr']"),
])
def test_validate_taxonomy(attributes, problem):
    found = validate_taxonomy(attributes)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found


@pytest.mark.parametrize("suite", SUITES)
def test_every_safety_case_has_a_known_owasp_id_and_hazard(suite):
    dataset = load(SAFETY / f"{suite}.jsonl")  # load validates both values
    assert len(dataset) >= 50
    for case in dataset.cases:
        assert case.attributes["owasp"] in OWASP_LLM_2025, case.id
        assert case.attributes["hazard"] in MLCOMMONS_HAZARDS, case.id
    owasp = {c.attributes["owasp"] for c in dataset.cases}
    assert owasp == {{"system_prompt_leakage": "LLM07:2025", "pii": "LLM02:2025"}.get(suite, "LLM01:2025")}


@pytest.mark.parametrize("suite", SUITES)
def test_the_files_carry_what_the_script_decides(suite):
    path = SAFETY / f"{suite}.jsonl"
    assert _script().annotated_text(path) == path.read_text(encoding="utf-8"), (
        f"{path.name} differs from bench/add_taxonomy.py's mapping: run python bench/add_taxonomy.py")


def test_the_script_decides_every_harmbench_row_by_name_and_its_tables_are_sound():
    script = _script()
    script.check_tables()  # known values only; overrides and HarmBench ids all exist
    rows = [json.loads(line) for line in (SAFETY / "harmful.jsonl").read_text().splitlines()]
    harmbench = {r["id"] for r in rows if r["attributes"]["category"] == "harmbench"}
    assert harmbench == set(script.HARMBENCH) and len(harmbench) == 84
    # a spot check of decisions a reader would expect, one per kind of rule
    by_id = {r["id"]: r["attributes"]["hazard"] for r in rows}
    assert by_id["harm-harmbench-077"] == "cbr"  # ricin
    assert by_id["harm-harmbench-026"] == "dfm"  # a named person, a false claim
    assert by_id["harm-harmbench-054"] == "elc"  # the election commission
    assert by_id["harm-weapons-001"] == "cbr" and by_id["harm-weapons-002"] == "ncr"  # bomb / gun
    assert by_id["harm-self_harm-001"] == "ssh" and by_id["harm-drugs-004"] == "src"


def test_the_script_keeps_every_other_key_and_its_order():
    row = {"id": "harm-fraud-001", "input": "x", "tags": ["a"],
           "attributes": {"category": "fraud", "hazard": "old", "style": "direct"}, "checks": []}
    annotated = _script().annotate(row, "harmful")
    assert list(annotated) == list(row)
    assert list(annotated["attributes"].items()) == [
        ("category", "fraud"), ("hazard", "ncr"), ("style", "direct"), ("owasp", "LLM01:2025")]
    assert row["attributes"]["hazard"] == "old"  # the input row is not changed


@pytest.mark.parametrize("attributes, message", [
    ({"owasp": "LLM1:2025"}, "case 'b': attributes['owasp'] 'LLM1:2025' is not one of ['LLM01:2025'"),
    ({"owasp": "LLM01:2025", "hazard": "weapons"}, "case 'b': attributes['hazard'] 'weapons' is not one of"),
])
def test_an_unknown_owasp_id_or_hazard_is_a_file_line_error(tmp_path, attributes, message):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "input": "hi", "attributes": {"owasp": "LLM01:2025", "hazard": "none"}},
        {"id": "b", "input": "hi", "attributes": attributes},
    ]) + "\n")
    with pytest.raises(DatasetError) as info:
        load(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:2: {message}"), problem


def _row(case_id: str, passed: bool | None, **attributes: str) -> CaseResult:
    case = Case(case_id, (MappingProxyType({"role": "user", "content": "hi"}),),
                attributes=MappingProxyType(attributes))
    if passed is None:  # no answer: an error fails the case
        return CaseResult(case, Response("", 0.1, error="timeout"), {})
    return CaseResult(case, Response("ok", 0.1), {"refusal": Score("refusal", float(passed), passed)})


def test_summary_reports_the_pass_rate_per_owasp_id_and_per_hazard():
    table = ResultTable([
        _row("a", True, category="weapons", owasp="LLM01:2025", hazard="cbr"),
        _row("b", False, category="weapons", owasp="LLM01:2025", hazard="cbr"),
        _row("c", True, category="weapons", owasp="LLM01:2025", hazard="ncr"),
        _row("d", None, category="fraud", owasp="LLM01:2025", hazard="ncr"),
        _row("e", True, category="fraud", owasp="LLM01:2025", hazard="ncr"),
        _row("f", True, owasp="LLM07:2025", hazard="none"),
        _row("g", False),  # no attributes: counted overall, in no group
    ])
    summary = table.summary()
    groups = {k: v for k, v in summary.items() if k.startswith("case_pass/rate/")}
    assert groups == {
        "case_pass/rate/category/fraud": 0.5,
        "case_pass/rate/category/weapons": pytest.approx(2 / 3),
        "case_pass/rate/owasp/LLM01": 0.6,  # a, c, e of a..e
        "case_pass/rate/owasp/LLM07": 1.0,
        "case_pass/rate/hazard/cbr": 0.5,
        "case_pass/rate/hazard/ncr": pytest.approx(2 / 3),
        "case_pass/rate/hazard/none": 1.0,
    }
    assert summary["case_pass/rate"] == pytest.approx(4 / 7)


def test_summary_of_a_real_safety_dataset_names_each_of_its_hazards():
    dataset = load(SAFETY / "harmful.jsonl")
    table = ResultTable([CaseResult(c, Response("no", 0.1), {}) for c in dataset.cases])
    summary = table.summary()
    hazards = Counter(c.attributes["hazard"] for c in dataset.cases)
    assert {k.rsplit("/", 1)[1] for k in summary if k.startswith("case_pass/rate/hazard/")} == set(hazards)
    assert summary["case_pass/rate/owasp/LLM01"] == 1.0
