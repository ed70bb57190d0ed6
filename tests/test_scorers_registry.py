"""The open registry of check types (harness.scorers.registry): a check defined outside the
harness, in an eval project's own file or an installed package's entry point, is validated by
datasets, scored by score_case, read by the judge by its family; a name is never taken twice."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest

from harness.core import Case, Response, Score
from harness.datasets import DatasetError, load
from harness.judge import rubric_for
from harness import scorers
from harness.scorers import CHECKS, ScoreCache, check_score_name, quality, registry, score_case
from stub_server import answer_table

# --- a user's check in an eval project, run by pytest -------------------------------------------

MINE_SUITE = '''
import pytest

from harness.core import Score
from harness.scorers import registry


def _needs_word(params):
    word = params.get("word")
    if not isinstance(word, str) or not word.isalpha():
        raise ValueError("needs 'word': letters only")


@registry.check("shouty", validate=_needs_word, family="quality")
def shouty(answer, params, expected):
    word = params["word"].upper()
    ok = word in answer
    return Score("shouty", float(ok), ok, "shouted" if ok else f"{word!r} not shouted")


pytestmark = pytest.mark.eval_suite("mine", dataset="datasets/mine.jsonl")


def test_case(eval_case):
    eval_case.check()


def test_gate(eval_suite):
    eval_suite.check()
'''

MINE_CASES = [
    {"id": "loud", "input": "Greet me loudly.", "checks": [{"type": "shouty", "word": "hello"}]},
    {"id": "quiet", "input": "Greet me quietly.", "checks": [{"type": "shouty", "word": "hello"}]},
]
MINE_CRITERIA = '[[mine]]\nmetric = "case_pass"\naggregate = "rate"\nop = ">="\nthreshold = 0.5\n'


@pytest.fixture
def mine_project(make_eval_project, pytester):
    """An eval project whose suite lives in evals/test_mine.py, next to the check it defines."""

    def make(cases):
        run = make_eval_project("mine", cases, MINE_CRITERIA)
        (pytester.path / "evals").mkdir()
        (pytester.path / "evals" / "test_mine.py").write_text(MINE_SUITE)
        return lambda base_url: run(base_url, "evals")  # the project's own suite, not the template's

    return make


def test_a_check_defined_in_an_eval_file_scores_its_cases(stub, mine_project):
    server = stub(answer_table({"loudly": "HELLO THERE!", "quietly": "hello there."}))
    result = mine_project(MINE_CASES)(server.base_url)
    result.assert_outcomes(passed=2, xfailed=1)  # loud and the gate pass; quiet fails its check
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*quiet: shouty: 'HELLO' not shouted*"])
    assert "loud: shouty" not in result.stdout.str()
    assert len(server.requests) == 2


def test_a_bad_parameter_of_a_user_check_is_a_dataset_error_naming_file_and_line(stub, mine_project):
    cases = [MINE_CASES[0], {**MINE_CASES[1], "checks": [{"type": "shouty", "word": "hel lo"}]}]
    result = mine_project(cases)("http://127.0.0.1:9/v1")
    assert result.ret == 2  # interrupted by a collection error, before any call to the model
    result.stdout.fnmatch_lines(["*mine.jsonl:2: case 'quiet': checks[[]0] (shouty) needs 'word': letters only*"])


# --- registered in this process --------------------------------------------------------------------

def _write_cases(path: Path, cases: list[dict]) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    return path


def test_datasets_validate_and_score_case_applies_a_registered_check(tmp_path):
    seen = []  # (the session's score cache is not asked: the check is not the harness's)

    def positive(params):
        if not isinstance(params.get("at_least"), int) or params["at_least"] < 1:
            raise ValueError("'at_least' must be a positive integer")

    @registry.check("test_reg_words", validate=positive, needs=("request", "messages"),
                    score=lambda params: f"words_{params['at_least']}")
    def words(answer, params, expected, request, messages):
        seen.append((request, [m["role"] for m in messages]))
        ok = len(answer.split()) >= params["at_least"]
        return Score(f"words_{params['at_least']}", float(ok), ok, f"{len(answer.split())} words")

    path = _write_cases(tmp_path / "words.jsonl", [
        {"id": "a", "system": "Be brief.", "input": "Say three words.", "checks": [{"type": "test_reg_words", "at_least": 3}]},
        {"id": "b", "input": "Say it.", "checks": [{"type": "test_reg_words", "at_least": 0}]},
    ])
    with pytest.raises(DatasetError) as caught:
        load(path)
    assert caught.value.problems == [f"{path}:2: case 'b': checks[0] (test_reg_words) 'at_least' must be a positive integer"]

    _write_cases(path, [{"id": "a", "system": "Be brief.", "input": "Say three words.",
                         "checks": [{"type": "test_reg_words", "at_least": 3}]}])
    case = load(path).cases[0]
    scores = {s.name: s for s in score_case(case, Response(text="one two", latency_s=0.1))}
    assert scores["words_3"] == Score("words_3", 0.0, False, "2 words")
    assert seen == [("Say three words.", ["system", "user"])]  # given what it declared it needs
    # a case with no answer fails the check under the name its parameters give it
    failed = score_case(case, Response(text="", latency_s=0.1, error="HTTP 503"))
    assert [s.name for s in failed if s.passed is False] == ["words_3"] == [check_score_name(case.checks[0])]


def test_the_judge_reads_a_case_by_the_family_of_its_checks():
    registry.check("test_reg_polite", family="quality")(lambda answer, params, expected: Score("polite", 1.0, True))
    registry.check("test_reg_unfamilied")(lambda answer, params, expected: Score("x", 1.0, True))

    def case(*types: str) -> Case:
        return Case(id="c", messages=({"role": "user", "content": "hi"},), checks=tuple({"type": t} for t in types))

    assert rubric_for(case("contains", "test_reg_polite")) == "quality"
    assert rubric_for(case("test_reg_polite", "test_reg_unfamilied")) is None
    assert rubric_for(case("test_reg_polite", "refusal")) == "safety"
    assert rubric_for(case("leak")) is None and rubric_for(case()) is None


def test_an_unknown_name_is_an_error_listing_the_known_ones():
    with pytest.raises(registry.UnknownCheckError) as caught:
        registry.get("semantic")
    message = str(caught.value)
    assert message.startswith("no check type 'semantic' is registered; known: [")
    assert "'contains'" in message and "'refusal'" in message and "'bbq'" in message
    assert registry.find("semantic") is None and "semantic" not in CHECKS


def test_a_name_is_never_taken_by_another_function():
    with pytest.raises(registry.DuplicateCheckError,
                       match=r"check 'contains' is already registered by harness\.scorers\.quality\.contains"):
        registry.check("contains")(lambda answer, params, expected: Score("contains", 1.0, True))
    assert registry.get("contains").function is quality.contains  # untouched

    def one(answer, params, expected):
        return Score("one", 1.0, True)

    def two(answer, params, expected):
        return Score("two", 1.0, True)

    registry.check("test_reg_taken")(one)
    registry.check("test_reg_taken")(one)  # the same function again: no conflict
    with pytest.raises(registry.DuplicateCheckError, match="test_reg_taken"):
        registry.check("test_reg_taken")(two)
    assert registry.get("test_reg_taken").function is one


def test_a_re_imported_module_registers_its_checks_again(tmp_path, monkeypatch):
    (tmp_path / "test_reg_reloaded.py").write_text(textwrap.dedent('''
        from harness.core import Score
        from harness.scorers import registry

        @registry.check("test_reg_reloaded", family="quality")
        def reloaded(answer, params, expected):
            return Score("reloaded", 1.0, True)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("test_reg_reloaded")
    first = registry.get("test_reg_reloaded").function
    module = importlib.reload(module)  # a new function object, the same qualified name
    assert registry.get("test_reg_reloaded").function is module.reloaded is not first


def test_a_decorator_with_bad_arguments_fails_at_once():
    with pytest.raises(ValueError, match=r"unknown needs \['answer'\]"):
        registry.check("test_reg_bad", needs=("answer",))
    with pytest.raises(ValueError, match="non-empty string"):
        registry.check("")
    assert registry.find("test_reg_bad") is None


def test_a_check_defined_outside_the_harness_is_never_served_from_the_score_cache(tmp_path, monkeypatch):
    calls = []

    @registry.check("test_reg_counted")
    def counted(answer, params, expected):
        calls.append(answer)
        return Score("test_reg_counted", 1.0, True)

    monkeypatch.setattr(scorers, "_cache", ScoreCache(tmp_path))  # the cache knows harness/scorers' code only
    case = Case(id="c", messages=({"role": "user", "content": "Hi"},),
                checks=({"type": "test_reg_counted"}, {"type": "length", "max_words": 3}))
    first = score_case(case, Response(text="Hello.", latency_s=0.1))
    assert score_case(case, Response(text="Hello.", latency_s=0.1)) == first
    assert calls == ["Hello.", "Hello."]  # its code may have changed: scored each time
    assert scorers._cache._added == 2  # the built-in length check and the screens: cached, once each


def test_compatibility_view_wraps_a_check_and_keeps_its_metadata(monkeypatch):
    monkeypatch.setattr(scorers, "_cache", None)  # the session's score cache may know this answer
    calls = []

    def counted(answer, check, expected, request=None):
        calls.append(request)
        return quality.contains(answer, check, expected)

    monkeypatch.setitem(CHECKS, "refusal", counted)  # a test wrapping a check: its needs are kept
    case = Case(id="c", messages=({"role": "user", "content": "Capital?"},),
                checks=({"type": "refusal", "expected": "refuse", "value": "Paris"},))
    score_case(case, Response(text="Paris", latency_s=0.1))
    assert calls == ["Capital?"]
    monkeypatch.undo()
    assert CHECKS["refusal"] is registry.get("refusal").function and registry.get("refusal").needs == {"request"}
    with pytest.raises(KeyError):
        CHECKS["test_reg_never_registered"] = counted


# --- an installed package's entry points --------------------------------------------------------

def _distribution(site: Path, name: str, entry_points: str, modules: dict[str, str]) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINTS}]\n{entry_points}")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


POINTY = '''
    from harness.core import Score
    from harness.scorers import registry

    def _needs_tip(params):
        if "tip" not in params:
            raise ValueError("needs 'tip'")

    @registry.check("test_reg_pointy", validate=_needs_tip, family="quality")
    def pointy(answer, params, expected):
        ok = answer.endswith(params["tip"])
        return Score("test_reg_pointy", float(ok), ok, "" if ok else f"does not end with {params['tip']!r}")
'''
SPIKY = '''
    from harness.core import Score
    from harness.scorers import registry

    @registry.check("test_reg_spiky")
    def spiky(answer, params, expected):
        return Score("test_reg_spiky", float("!" in answer), "!" in answer)
'''


def test_checks_of_an_installed_package_are_found_by_name(tmp_path, monkeypatch):
    site = tmp_path / "site"
    # one entry point names the decorated function, the other a module whose import registers
    _distribution(site, "pointy-checks", "pointy = test_reg_pointy_checks:pointy\nspiky = test_reg_spiky_checks\n",
                  {"test_reg_pointy_checks": POINTY, "test_reg_spiky_checks": SPIKY})
    monkeypatch.syspath_prepend(str(site))
    assert "test_reg_pointy_checks" not in sys.modules  # nothing imported before a name is missed

    spec = registry.get("test_reg_pointy")
    assert spec.family == "quality" and spec.function.__module__ == "test_reg_pointy_checks"
    assert "test_reg_spiky" in registry.names()

    path = _write_cases(tmp_path / "pointy.jsonl", [
        {"id": "p", "input": "Point.", "checks": [{"type": "test_reg_pointy", "tip": "."}, {"type": "test_reg_spiky"}]}])
    case = load(path).cases[0]
    scores = {s.name: s for s in score_case(case, Response(text="To the point!", latency_s=0.1))}
    assert scores["test_reg_pointy"].passed is False and scores["test_reg_pointy"].rationale == "does not end with '.'"
    assert scores["test_reg_spiky"].passed is True
    _write_cases(path, [{"id": "p", "input": "Point.", "checks": [{"type": "test_reg_pointy"}]}])
    with pytest.raises(DatasetError, match=r"pointy\.jsonl:1: case 'p': checks\[0\] \(test_reg_pointy\) needs 'tip'"):
        load(path)


def test_a_broken_entry_point_is_an_error_naming_it(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _distribution(site, "broken-checks", "cracked = test_reg_cracked_checks\n",
                  {"test_reg_cracked_checks": "import a_module_that_is_not_installed\n"})
    monkeypatch.syspath_prepend(str(site))
    assert registry.get("contains").function is quality.contains  # known names need no entry point
    with pytest.raises(registry.CheckEntryPointError) as caught:
        registry.get("test_reg_from_the_broken_package")
    message = str(caught.value)
    assert "'cracked' = 'test_reg_cracked_checks' (distribution broken-checks)" in message
    assert "ModuleNotFoundError" in message and "a_module_that_is_not_installed" in message
    with pytest.raises(registry.CheckEntryPointError):  # tried again, never forgotten
        registry.names()
    monkeypatch.undo()  # uninstalled: lookups work again
    assert "contains" in registry.names()
