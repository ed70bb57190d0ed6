"""Tests of harness.datasets: loading, validation errors, selection and the content digest."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.datasets import Case, Dataset, DatasetError, load
from harness.scorers import CHECKS

REAL_DATASET = Path(__file__).parents[1] / "datasets/quality/cases.jsonl"

GOOD = {"id": "ok", "input": "What is 2 + 2?", "expected": "4",
        "checks": [{"type": "regex", "pattern": "\\b4\\b"}]}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_records(path: Path, records: list) -> Path:
    return write_lines(path, [json.dumps(r) for r in records])


def problems_of(tmp_path: Path, lines: list[str]) -> list[str]:
    """Load a file made of `lines` (strings are written verbatim, anything else as JSON) and
    return the DatasetError's problems; fail if it loads."""
    path = write_lines(tmp_path / "data.jsonl",
                       [line if isinstance(line, str) else json.dumps(line) for line in lines])
    with pytest.raises(DatasetError) as info:
        load(path)
    assert info.value.path == path
    return info.value.problems


def single_problem(tmp_path: Path, record, *, line: int = 2) -> str:
    """The only problem reported for `record` placed on `line` (after good lines), checked to
    start with "file:line: "."""
    lines = [{**GOOD, "id": f"good-{i}"} for i in range(line - 1)] + [record]
    problems = problems_of(tmp_path, lines)
    assert len(problems) == 1, problems
    prefix = f"{tmp_path / 'data.jsonl'}:{line}: "
    assert problems[0].startswith(prefix), problems[0]
    return problems[0][len(prefix):]


# --- errors: each reported with file, line and a clear message -------------------------------

def test_bad_json(tmp_path):
    message = single_problem(tmp_path, '{"id": "x", "input": "hi"', line=3)
    assert message.startswith("bad JSON:")
    assert "column" in message


def test_line_that_is_not_an_object(tmp_path):
    message = single_problem(tmp_path, '["id", "input"]')
    assert "must be a JSON object" in message and "list" in message


def test_missing_id(tmp_path):
    assert single_problem(tmp_path, {"input": "hello"}) == "missing id"


@pytest.mark.parametrize("bad_id", ["", "   ", True, None, 1.5, ["a"]])
def test_bad_id(tmp_path, bad_id):
    message = single_problem(tmp_path, {"id": bad_id, "input": "hello"})
    assert "'id' must be a non-empty string" in message


def test_integer_id_becomes_string(tmp_path):
    dataset = load(write_records(tmp_path / "d.jsonl", [{"id": 7, "input": "hello"}]))
    assert dataset.cases[0].id == "7"


def test_duplicate_id_names_first_line(tmp_path):
    path = write_lines(tmp_path / "data.jsonl", [
        json.dumps({"id": "a", "input": "one"}),
        "",
        json.dumps({"id": "b", "input": "two"}),
        json.dumps({"id": "a", "input": "three"}),
    ])
    with pytest.raises(DatasetError) as info:
        load(path)
    assert info.value.problems == [f"{path}:4: duplicate id 'a' (first used on line 1)"]


def test_integer_and_string_ids_collide(tmp_path):
    problems = problems_of(tmp_path, [{"id": 5, "input": "x"}, {"id": "5", "input": "y"}])
    assert problems == [f"{tmp_path / 'data.jsonl'}:2: duplicate id '5' (first used on line 1)"]


@pytest.mark.parametrize("field, value, type_name", [
    ("input", 42, "int"),
    ("input", ["hi"], "list"),
    ("system", 3.5, "float"),
    ("expected", 4, "int"),
])
def test_wrong_type(tmp_path, field, value, type_name):
    record = {"id": "x", "input": "hello", field: value}
    message = single_problem(tmp_path, record)
    assert message == f"field {field!r} must be a string, got {type_name}"


@pytest.mark.parametrize("field", ["input", "system", "expected"])
def test_empty_string_fields(tmp_path, field):
    record = {"id": "x", "input": "hello", field: "  \t "}
    assert single_problem(tmp_path, record) == f"field {field!r} is empty"


def test_expected_null_is_allowed(tmp_path):
    dataset = load(write_records(tmp_path / "d.jsonl", [{"id": "x", "input": "hi", "expected": None}]))
    assert dataset.cases[0].expected is None


def test_unknown_field(tmp_path):
    message = single_problem(tmp_path, {"id": "x", "input": "hello", "expectd": "typo"})
    assert message.startswith("unknown field(s) ['expectd']")
    assert "known fields are" in message and "'expected'" in message


@pytest.mark.parametrize("record", [
    {"id": "x", "input": "hi", "messages": [{"role": "user", "content": "hi"}]},
    {"id": "x"},
])
def test_exactly_one_of_input_or_messages(tmp_path, record):
    message = single_problem(tmp_path, record)
    assert message == "case 'x': give exactly one of 'input' or 'messages'"


def test_bad_message_role(tmp_path):
    record = {"id": "x", "messages": [{"role": "robot", "content": "beep"},
                                      {"role": "user", "content": "hi"}]}
    message = single_problem(tmp_path, record)
    assert "messages[0].role 'robot' is not one of" in message
    assert "'assistant'" in message and "'user'" in message


@pytest.mark.parametrize("messages, fragment", [
    ([], "'messages' must be a non-empty list"),
    ("hi", "'messages' must be a non-empty list"),
    ([{"role": "user"}], "messages[0] must be an object with 'role' and 'content'"),
    ([{"role": "user", "content": "a", "name": "bob"}], "messages[0] must be an object"),
    ([{"role": "user", "content": "  "}], "messages[0].content is empty or not a string"),
    ([{"role": "user", "content": 3}], "messages[0].content is empty or not a string"),
])
def test_malformed_messages(tmp_path, messages, fragment):
    assert fragment in single_problem(tmp_path, {"id": "x", "messages": messages})


def test_last_message_not_from_user(tmp_path):
    record = {"id": "x", "messages": [{"role": "user", "content": "hi"},
                                      {"role": "assistant", "content": "hello"}]}
    assert single_problem(tmp_path, record) == "case 'x': the last message must have role 'user'"


def test_system_field_and_system_message(tmp_path):
    record = {"id": "x", "system": "Be brief.",
              "messages": [{"role": "system", "content": "Be long."},
                           {"role": "user", "content": "hi"}]}
    assert "'system' given twice" in single_problem(tmp_path, record)


def test_unhashable_role_is_reported(tmp_path):
    record = {"id": "x", "messages": [{"role": ["user"], "content": "hi"}]}
    assert "messages[0].role" in single_problem(tmp_path, record)


def test_unknown_check_type(tmp_path):
    record = {"id": "x", "input": "hi", "checks": [{"type": "contains", "value": "a"},
                                                   {"type": "semantic"}]}
    message = single_problem(tmp_path, record)
    assert "checks[1] has unknown type 'semantic'" in message
    assert "known:" in message and "'regex'" in message


def test_unhashable_check_type_is_reported(tmp_path):
    record = {"id": "x", "input": "hi", "checks": [{"type": ["regex"]}]}
    assert "checks[0]" in single_problem(tmp_path, record)


def test_bad_regex(tmp_path):
    record = {"id": "x", "input": "hi", "checks": [{"type": "regex", "pattern": "(unclosed"}]}
    message = single_problem(tmp_path, record)
    assert "checks[0] bad regex:" in message
    assert "missing )" in message


def test_exact_match_without_expected(tmp_path):
    record = {"id": "x", "input": "hi", "checks": [{"type": "exact_match"}]}
    assert single_problem(tmp_path, record) == "case 'x': check 'exact_match' needs 'expected'"


@pytest.mark.parametrize("checks, fragment", [
    ({"type": "regex"}, "'checks' must be a list"),
    (["regex"], "checks[0] must be an object with a 'type'"),
    ([{"pattern": "x"}], "checks[0] must be an object with a 'type'"),
    ([{"type": "contains"}], "checks[0] (contains) needs 'value' (string) or 'any_of'"),
    ([{"type": "not_contains", "any_of": []}], "checks[0] (not_contains) needs 'value'"),
    ([{"type": "contains", "any_of": ["a", ""]}], "checks[0] (contains) needs 'value'"),
    ([{"type": "contains", "value": 3}], "checks[0] (contains) needs 'value'"),
    ([{"type": "regex", "pattern": ""}], "checks[0] (regex) needs 'pattern'"),
    ([{"type": "json", "schema": "object"}], "checks[0] (json) 'schema' must be an object"),
    ([{"type": "length"}], "checks[0] (length) needs non-negative integer"),
    ([{"type": "length", "max_words": -1}], "checks[0] (length) needs non-negative integer"),
    ([{"type": "length", "max_words": 2.5}], "checks[0] (length) needs non-negative integer"),
    ([{"type": "list_items"}], "checks[0] (list_items) needs 'count' >= 1"),
    ([{"type": "list_items", "count": 0}], "checks[0] (list_items) needs 'count' >= 1"),
])
def test_malformed_checks(tmp_path, checks, fragment):
    assert fragment in single_problem(tmp_path, {"id": "x", "input": "hi", "checks": checks})


@pytest.mark.parametrize("record, fragment", [
    ({"tags": "smoke"}, "'tags' must be a list of non-empty strings"),
    ({"tags": ["smoke", ""]}, "'tags' must be a list of non-empty strings"),
    ({"attributes": ["easy"]}, "'attributes' must be an object"),
    ({"critical": "yes"}, "'critical' must be true or false"),
    ({"critical": 1}, "'critical' must be true or false"),
])
def test_bad_tags_attributes_critical(tmp_path, record, fragment):
    message = single_problem(tmp_path, {"id": "x", "input": "hi", **record})
    assert message == f"case 'x': {fragment}"


def test_invalid_json_schema_is_reported(tmp_path):
    record = {"id": "x", "input": "hi", "checks": [{"type": "json", "schema": {"type": "objekt"}}]}
    assert "schema" in single_problem(tmp_path, record)


@pytest.mark.parametrize("check", [{"type": "length", "max_words": True},
                                   {"type": "list_items", "count": True}])
def test_boolean_bounds_are_rejected(tmp_path, check):
    single_problem(tmp_path, {"id": "x", "input": "hi", "checks": [check]})


def test_contains_with_empty_value_and_any_of_is_not_a_silent_pass(tmp_path):
    record = {"id": "x", "input": "Capital of France?",
              "checks": [{"type": "contains", "value": "", "any_of": ["Paris"]}]}
    path = write_records(tmp_path / "d.jsonl", [record])
    try:
        dataset = load(path)
    except DatasetError:
        return  # rejecting the check is a fine fix
    check = dataset.cases[0].checks[0]
    assert CHECKS["contains"]("London", check, None).passed is False


def test_lone_surrogate_is_reported_or_loaded(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", ['{"id": "x", "input": "bad \\ud800 text"}'])
    try:
        load(path)
    except DatasetError as exc:
        assert f"{path}:1:" in exc.problems[0]


@pytest.mark.parametrize("char", ["\x85", "\u2028", "\u2029"])
def test_unicode_line_separator_inside_a_string(tmp_path, char):
    path = write_lines(tmp_path / "d.jsonl", [
        json.dumps({"id": "a", "input": f"one{char}two"}, ensure_ascii=False),
        json.dumps({"id": "b", "input": "three"}),
    ])
    dataset = load(path)
    assert dataset.cases[0].prompt == f"one{char}two"
    assert dataset.cases[1].source == f"{path}:2"


def test_several_problems_reported_together(tmp_path):
    path = write_lines(tmp_path / "data.jsonl", [
        json.dumps({"id": "a", "input": "fine"}),
        "{not json",
        json.dumps({"id": "b", "input": 12}),
        "",
        json.dumps({"id": "a", "input": "again"}),
        json.dumps({"id": "c", "input": "x", "checks": [{"type": "regex", "pattern": "["}]}),
        json.dumps({"id": "d", "input": "fine too"}),
        json.dumps({"id": "e", "input": "x", "colour": "red"}),
    ])
    with pytest.raises(DatasetError) as info:
        load(path)
    problems = info.value.problems
    assert [p.split(": ", 1)[0] for p in problems] == [f"{path}:{n}" for n in (2, 3, 5, 6, 8)]
    assert "bad JSON" in problems[0]
    assert "'input' must be a string, got int" in problems[1]
    assert "duplicate id 'a' (first used on line 1)" in problems[2]
    assert "bad regex" in problems[3]
    assert "unknown field(s) ['colour']" in problems[4]
    text = str(info.value)
    assert "5 problem(s)" in text
    assert all(p in text for p in problems)


def test_many_problems_message_is_truncated_but_problems_complete(tmp_path):
    path = write_lines(tmp_path / "data.jsonl", ["{bad"] * 60)
    with pytest.raises(DatasetError) as info:
        load(path)
    assert len(info.value.problems) == 60
    assert "60 problem(s)" in str(info.value)
    assert "... and 10 more" in str(info.value)
    assert f"{path}:60:" not in str(info.value)


def test_file_not_found(tmp_path):
    path = tmp_path / "missing.jsonl"
    with pytest.raises(DatasetError) as info:
        load(path)
    assert info.value.problems == [f"{path}: file not found"]
    assert info.value.path == path


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps({"id": "x", "input": "caf\u00e9"}, ensure_ascii=False)
                     .encode("latin-1"))
    with pytest.raises(DatasetError) as info:
        load(path)
    assert info.value.problems[0].startswith(f"{path}: not UTF-8")


@pytest.mark.parametrize("content", ["", "\n\n   \n\t\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError) as info:
        load(path)
    assert info.value.problems == [f"{path}: no cases"]


# --- successful loads --------------------------------------------------------------------------

def test_blank_lines_skipped_and_sources_keep_real_line_numbers(tmp_path):
    path = write_lines(tmp_path / "data.jsonl", [
        "",
        json.dumps({"id": "a", "input": "one"}),
        "   ",
        "",
        json.dumps({"id": "b", "input": "two"}),
        "\t",
    ])
    dataset = load(path)
    assert [c.id for c in dataset.cases] == ["a", "b"]
    assert [c.source for c in dataset.cases] == [f"{path}:2", f"{path}:5"]
    assert len(dataset) == 2
    assert dataset.name == "data"
    assert load(path, name="custom").name == "custom"


def test_system_and_input_build_messages(tmp_path):
    path = write_records(tmp_path / "d.jsonl", [
        {"id": "x", "system": "Answer in one word.", "input": "Capital of Japan?"}])
    case = load(path).cases[0]
    assert [dict(m) for m in case.messages] == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of Japan?"},
    ]
    assert case.prompt == "Capital of Japan?"


def test_input_alone_is_one_user_message(tmp_path):
    case = load(write_records(tmp_path / "d.jsonl", [{"id": "x", "input": "hi"}])).cases[0]
    assert [dict(m) for m in case.messages] == [{"role": "user", "content": "hi"}]


def test_system_field_prepended_to_messages(tmp_path):
    record = {"id": "x", "system": "Be terse.",
              "messages": [{"role": "user", "content": "2+2?"},
                           {"role": "assistant", "content": "4"},
                           {"role": "user", "content": "and 3+3?"}]}
    case = load(write_records(tmp_path / "d.jsonl", [record])).cases[0]
    assert [m["role"] for m in case.messages] == ["system", "user", "assistant", "user"]
    assert case.messages[0]["content"] == "Be terse."
    assert case.prompt == "and 3+3?"


def test_full_record_fields(tmp_path):
    record = {"id": "x", "input": "hi", "expected": "hello", "critical": True,
              "checks": [{"type": "contains", "value": "hel"}],
              "tags": ["smoke", "greeting"], "attributes": {"difficulty": "easy", "n": 2}}
    case = load(write_records(tmp_path / "d.jsonl", [record])).cases[0]
    assert case.expected == "hello"
    assert case.critical is True
    assert [dict(c) for c in case.checks] == [{"type": "contains", "value": "hel"}]
    assert case.tags == ("smoke", "greeting")
    assert dict(case.attributes) == {"difficulty": "easy", "n": 2}
    with pytest.raises(TypeError):
        case.attributes["n"] = 3  # read-only: a scorer cannot corrupt the dataset


# --- select ------------------------------------------------------------------------------------

@pytest.fixture
def tagged(tmp_path) -> Dataset:
    return load(write_records(tmp_path / "tagged.jsonl", [
        {"id": "a", "input": "1", "tags": ["smoke", "math"]},
        {"id": "b", "input": "2", "tags": ["math"]},
        {"id": "c", "input": "3", "tags": ["geo"]},
        {"id": "d", "input": "4"},
        {"id": "e", "input": "5", "tags": ["smoke"]},
    ]))


def test_select_by_tags(tagged):
    assert [c.id for c in tagged.select(tags=["smoke"]).cases] == ["a", "e"]
    assert [c.id for c in tagged.select(tags=["geo", "math"]).cases] == ["a", "b", "c"]
    assert len(tagged.select(tags=["nope"])) == 0


def test_select_limit_and_tags_then_limit(tagged):
    assert [c.id for c in tagged.select(limit=2).cases] == ["a", "b"]
    assert [c.id for c in tagged.select(tags=["math", "smoke"], limit=2).cases] == ["a", "b"]
    assert len(tagged.select(limit=0)) == 0


def test_select_everything_returns_same_dataset(tagged):
    assert tagged.select() is tagged
    assert tagged.select(limit=100) is tagged


def test_select_subset_keeps_name_and_gets_subset_digest(tagged, tmp_path):
    subset = tagged.select(tags=["smoke"])
    assert subset.name == tagged.name and subset.path == tagged.path
    assert subset.digest != tagged.digest
    # the digest of a subset is the digest of a file holding just those cases
    alone = load(write_records(tmp_path / "alone.jsonl", [
        {"id": "a", "input": "1", "tags": ["smoke", "math"]},
        {"id": "e", "input": "5", "tags": ["smoke"]},
    ]))
    assert subset.digest == alone.digest


# --- digest ------------------------------------------------------------------------------------

RECORDS = [
    {"id": "a", "system": "Be brief.", "input": "hi", "expected": "hello",
     "checks": [{"type": "length", "max_words": 3, "min_words": 1}], "tags": ["x"],
     "attributes": {"k": 1, "j": [1, 2]}},
    {"id": "b", "messages": [{"role": "user", "content": "yo"}], "critical": True},
]


def test_digest_ignores_formatting_key_order_and_location(tmp_path):
    compact = load(write_lines(tmp_path / "one.jsonl", [json.dumps(r) for r in RECORDS]))
    other_dir = tmp_path / "elsewhere"
    other_dir.mkdir()
    reordered = [dict(reversed(list(r.items()))) for r in RECORDS]
    reordered[0]["checks"] = [{"min_words": 1, "max_words": 3, "type": "length"}]
    reordered[0]["attributes"] = {"j": [1, 2], "k": 1}
    spaced = load(write_lines(other_dir / "two.jsonl",
                              ["", *(json.dumps(r, separators=(" ,  ", " :  ")) for r in reordered), ""]))
    assert [c.id for c in spaced.cases] == ["a", "b"]
    assert spaced.digest == compact.digest
    assert re.fullmatch(r"[0-9a-f]{16}", compact.digest)


@pytest.mark.parametrize("change", [
    lambda rs: rs[0].update(expected="hullo"),
    lambda rs: rs[0].update(input="hi!"),
    lambda rs: rs[0].update(tags=["y"]),
    lambda rs: rs[0].update(attributes={"k": 2, "j": [1, 2]}),
    lambda rs: rs[0]["checks"][0].update(max_words=4),
    lambda rs: rs[1].update(critical=False),
    lambda rs: rs.reverse(),
    lambda rs: rs.pop(),
])
def test_digest_changes_when_content_changes(tmp_path, change):
    original = load(write_records(tmp_path / "a.jsonl", RECORDS)).digest
    records = json.loads(json.dumps(RECORDS))
    change(records)
    assert load(write_records(tmp_path / "b.jsonl", records)).digest != original


# Hypothesis: generated valid cases, written with random key order and indentation-free
# formatting variations, load back equal and with the same digest.
# Lone surrogates are excluded: they are rejected by design (test above). The Unicode line
# breaks json.dumps leaves raw (U+0085, U+2028, U+2029) are included on purpose.
_text = st.text(st.characters(blacklist_categories=("Cs",)),
                min_size=1, max_size=20).filter(lambda s: s.strip())
_tag = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8)
_check = st.one_of(
    st.builds(lambda v: {"type": "contains", "value": v}, _text),
    st.builds(lambda v: {"type": "not_contains", "any_of": v}, st.lists(_text, min_size=1, max_size=3)),
    st.builds(lambda p: {"type": "regex", "pattern": p}, st.sampled_from(["\\d+", "^a", "x|y"])),
    st.builds(lambda n: {"type": "list_items", "count": n}, st.integers(1, 9)),
    st.builds(lambda a, b: {"type": "length", "min_words": a, "max_chars": b},
              st.integers(0, 10), st.integers(0, 500)),
    st.just({"type": "json"}),
)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), _text)


@st.composite
def _record(draw, case_id: str) -> dict:
    record: dict = {"id": case_id}
    if draw(st.booleans()):
        record["input"] = draw(_text)
    else:
        history = draw(st.lists(st.sampled_from(["user", "assistant"]), max_size=3))
        record["messages"] = [{"role": r, "content": draw(_text)} for r in history + ["user"]]
    if draw(st.booleans()):
        record["system"] = draw(_text)
    if draw(st.booleans()):
        record["expected"] = draw(_text)
    record["checks"] = draw(st.lists(_check, max_size=3))
    if "expected" in record and draw(st.booleans()):
        record["checks"].append({"type": "exact_match"})
    record["tags"] = draw(st.lists(_tag, max_size=3))
    record["attributes"] = draw(st.dictionaries(_tag, _scalar, max_size=3))
    record["critical"] = draw(st.booleans())
    return record


@st.composite
def _records(draw) -> list[dict]:
    n = draw(st.integers(1, 4))
    return [draw(_record(f"case-{i}")) for i in range(n)]


def _shuffled(value, rng: random.Random):
    """The same JSON value with every object's keys in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def _case_content(case: Case) -> tuple:
    return (case.id, [dict(m) for m in case.messages], case.expected,
            [dict(c) for c in case.checks], case.tags, dict(case.attributes), case.critical)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=_records(), seed=st.integers(0, 2**32 - 1),
       separators=st.sampled_from([(",", ":"), (", ", ": "), (" ,  ", " :\t")]),
       ensure_ascii=st.booleans(), blank_lines=st.integers(0, 2))
def test_generated_cases_round_trip_with_stable_digest(tmp_path, records, seed, separators,
                                                       ensure_ascii, blank_lines):
    rng = random.Random(seed)
    plain = write_records(tmp_path / "plain.jsonl", records)
    lines = []
    for record in records:
        lines.extend([""] * blank_lines)
        lines.append(json.dumps(_shuffled(record, rng), separators=separators,
                                ensure_ascii=ensure_ascii))
    fancy = write_lines(tmp_path / "fancy.jsonl", lines)

    a, b = load(plain), load(fancy)
    assert [_case_content(c) for c in a.cases] == [_case_content(c) for c in b.cases]
    assert a.digest == b.digest
    assert [c.id for c in a.cases] == [r["id"] for r in records]
    for case, record in zip(a.cases, records):
        assert case.prompt == record.get("input", (record.get("messages") or [{}])[-1].get("content"))
        first = "system" if "system" in record else (
            record["messages"][0]["role"] if "messages" in record else "user")
        assert case.messages[0]["role"] == first
        assert len(case.messages) == ("system" in record) + len(record.get("messages", [0]))


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=_records(), new_expected=_text)
def test_generated_content_change_changes_digest(tmp_path, records, new_expected):
    before = load(write_records(tmp_path / "a.jsonl", records)).digest
    changed = json.loads(json.dumps(records))
    if changed[0].get("expected") == new_expected:
        new_expected += "!"
    changed[0]["expected"] = new_expected
    assert load(write_records(tmp_path / "b.jsonl", changed)).digest != before


# --- the real dataset --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_dataset() -> Dataset:
    return load(REAL_DATASET)


def test_real_dataset_size_and_name(real_dataset):
    assert len(real_dataset) >= 60
    assert real_dataset.name == "cases"
    assert len({c.id for c in real_dataset.cases}) == len(real_dataset)


def test_real_dataset_every_case_has_expected_and_checks(real_dataset):
    missing = [c.id for c in real_dataset.cases if c.expected is None or not c.checks]
    assert missing == []


def test_real_dataset_expected_passes_its_own_checks(real_dataset):
    failures = []
    for case in real_dataset.cases:
        for check in case.checks:
            score = CHECKS[check["type"]](case.expected, check, case.expected)
            if score.passed is not True:
                failures.append(f"{case.source} {case.id}: {dict(check)} -> {score.rationale}")
    assert failures == []


def _grouped(n_templates: int, per: int) -> Dataset:
    from types import MappingProxyType

    cases = tuple(Case(id=f"t{t}:{v}", messages=({"role": "user", "content": f"{t} {v}"},),
                       attributes=MappingProxyType({"template": f"t{t}"}))
                  for t in range(n_templates) for v in range(per))
    return Dataset("d", Path("d.jsonl"), cases, "digest")


@settings(max_examples=40, deadline=None)
@given(budget=st.integers(1, 60), seed=st.text(max_size=5))
def test_a_budget_samples_whole_groups_within_the_budget_and_always_the_same(budget, seed):
    dataset = _grouped(10, 4)
    sample = dataset.sample(budget, seed)
    assert sample.cases == dataset.sample(budget, seed).cases  # fixed
    assert len(sample) <= max(budget, 4) and (len(sample) == 40 or len(sample) > budget - 4)
    templates = {c.attributes["template"] for c in sample.cases}
    assert len(sample) == 4 * len(templates)  # every chosen template whole, counterfactuals together
    assert [c.id for c in sample.cases] == [c.id for c in dataset.cases if c in sample.cases]  # file order


def test_a_grown_dataset_keeps_most_of_its_sample():
    small, grown = _grouped(20, 1), _grouped(24, 1)
    kept = {c.id for c in small.sample(10, "s").cases} & {c.id for c in grown.sample(10, "s").cases}
    assert len(kept) >= 6


def test_a_budget_never_samples_a_critical_or_smoke_case_away():
    from types import MappingProxyType

    cases = tuple(Case(id=f"c{i}", messages=({"role": "user", "content": str(i)},), critical=i in (3, 17),
                       tags=("smoke",) if i == 11 else (), attributes=MappingProxyType({})) for i in range(20))
    sample = Dataset("d", Path("d.jsonl"), cases, "x").sample(5, "any seed")
    assert len(sample) == 5 and {"c3", "c11", "c17"} <= {c.id for c in sample.cases}
