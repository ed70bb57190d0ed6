"""Quality scorers: pure functions. Pass/fail checks take (answer, check, expected) and are
declared per case in the dataset (registered, with the validation of their parameters, as checks
of the "quality" family: harness.scorers.registry); token F1 and ROUGE-L measure an answer
against its reference. `harness.scorers.score_case` applies them to a case."""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from functools import lru_cache
from typing import Any, Mapping

from harness.core import Score
from harness.scorers import registry
from harness.scorers.registry import InvalidParameters, is_int

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_LIST_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S")


def normalize(text: str) -> str:
    """SQuAD-style normalization: lowercase, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- pass/fail checks -------------------------------------------------------------------------

@registry.check("exact_match", family="quality")
def exact_match(answer: str, check: Mapping[str, Any], expected: str | None) -> Score:
    ok = expected is not None and normalize(answer) == normalize(expected)
    return Score("exact_match", float(ok), ok, "" if ok else f"expected {expected!r}")


def _needles(check: Mapping[str, Any]) -> list[str]:
    return [check["value"]] if "value" in check else list(check["any_of"])


def _validate_needles(check: Mapping[str, Any]) -> None:
    value, any_of = check.get("value"), check.get("any_of")
    valid_value = "value" in check and isinstance(value, str) and value != ""
    valid_any_of = "any_of" in check and isinstance(any_of, list) and bool(any_of) and all(
        isinstance(v, str) and v for v in any_of)
    # exactly one of them, valid: a stray empty needle would match every answer
    if ("value" in check) == ("any_of" in check) or not (valid_value or valid_any_of):
        raise ValueError("needs 'value' (string) or 'any_of' (list of strings), not both, none empty")


@registry.check("contains", validate=_validate_needles, family="quality")
def contains(answer: str, check: Mapping[str, Any], expected: str | None) -> Score:
    needles = _needles(check)
    found = [n for n in needles if n.lower() in answer.lower()]
    ok = bool(found)
    return Score("contains", float(ok), ok, "" if ok else f"none of {needles!r} in answer")


@registry.check("not_contains", validate=_validate_needles, family="quality")
def not_contains(answer: str, check: Mapping[str, Any], expected: str | None) -> Score:
    found = [n for n in _needles(check) if n.lower() in answer.lower()]
    ok = not found
    return Score("not_contains", float(ok), ok, "" if ok else f"forbidden {found!r} in answer")


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _validate_regex(check: Mapping[str, Any]) -> None:
    pattern = check.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("needs 'pattern'")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidParameters(f"bad regex: {exc}", labelled=False) from None


@registry.check("regex", validate=_validate_regex, family="quality")
def regex(answer: str, check: Mapping[str, Any], expected: str | None) -> Score:
    ok = _compiled(check["pattern"]).search(answer) is not None
    return Score("regex", float(ok), ok, "" if ok else f"no match for /{check['pattern']}/")


def parse_json_answer(answer: str) -> Any:
    """Parse an answer as JSON, accepting one surrounding ```json fence (models add it)."""
    fenced = _FENCE.match(answer)
    return json.loads(fenced.group(1) if fenced else answer)


def _validate_json(check: Mapping[str, Any]) -> None:
    if "schema" not in check:
        return
    schema = check["schema"]
    if not isinstance(schema, dict):
        raise ValueError("'schema' must be an object")
    import jsonschema  # lazy: only datasets with schemas pay for the import

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise ValueError(f"invalid JSON Schema: {exc.message}") from None


@registry.check("json", validate=_validate_json, family="quality")
def json_check(answer: str, check: Mapping[str, Any], expected: str | None) -> Score:
    try:
        document = parse_json_answer(answer)
    except ValueError as exc:
        return Score("json", 0.0, False, f"not valid JSON: {exc}")
    schema = check.get("schema")
    if schema is not None:
        import jsonschema  # lazy: only datasets with schemas pay for the import

        error = jsonschema.exceptions.best_match(
            jsonschema.validators.validator_for(schema)(schema).iter_errors(document)
        )
        if error is not None:
            path = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return Score("json", 0.0, False, f"schema violation at {path}: {error.message}")
    return Score("json", 1.0, True)


_LENGTH_BOUNDS = ("min_words", "max_words", "min_chars", "max_chars")


def _validate_length(check: Mapping[str, Any]) -> None:
    bounds = {k: check[k] for k in _LENGTH_BOUNDS if k in check}
    if not bounds or not all(is_int(v) and v >= 0 for v in bounds.values()):
        raise ValueError("needs non-negative integer min_words/max_words/min_chars/max_chars")


@registry.check("length", validate=_validate_length, family="quality")
def length_check(answer: str, check: Mapping[str, Any], expected: str | None) -> Score:
    words, chars = len(answer.split()), len(answer.strip())
    problems = []
    if "min_words" in check and words < check["min_words"]:
        problems.append(f"{words} words < {check['min_words']}")
    if "max_words" in check and words > check["max_words"]:
        problems.append(f"{words} words > {check['max_words']}")
    if "min_chars" in check and chars < check["min_chars"]:
        problems.append(f"{chars} chars < {check['min_chars']}")
    if "max_chars" in check and chars > check["max_chars"]:
        problems.append(f"{chars} chars > {check['max_chars']}")
    ok = not problems
    return Score("length", float(ok), ok, "; ".join(problems))


def _validate_list_items(check: Mapping[str, Any]) -> None:
    count = check.get("count")
    if not is_int(count) or count < 1:
        raise ValueError("needs 'count' >= 1")


@registry.check("list_items", validate=_validate_list_items, family="quality")
def list_items(answer: str, check: Mapping[str, Any], expected: str | None) -> Score:
    count = sum(1 for line in answer.splitlines() if _LIST_LINE.match(line))
    ok = count == check["count"]
    return Score("list_items", float(ok), ok, "" if ok else f"{count} list items, expected {check['count']}")


# --- measurements against the reference -------------------------------------------------------

def token_f1(answer: str, reference: str) -> float:
    """SQuAD token F1 between normalized answer and reference."""
    pred, gold = normalize(answer).split(), normalize(reference).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score package, Porter stemming)."""
    return _rouge_scorer().score(reference, answer)["rougeL"].fmeasure
