"""Load and validate evaluation datasets (JSONL).

Every problem is reported with the file, the line and what is wrong, and all problems of a
file are collected before raising, so a curator fixes a dataset in one pass. A check may be of
any type registered with harness.scorers.registry (the built-ins, and a user's own registered
before the dataset is loaded); each validates its own parameters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Sequence

from harness.core import Case
from harness.scorers import registry  # registers the built-in checks (imports no model)

ROLES = frozenset({"system", "user", "assistant"})
_KNOWN_FIELDS = frozenset(
    {"id", "input", "messages", "system", "expected", "checks", "tags", "attributes", "critical"}
)


# Case attributes whose cases a sample keeps together (harness.datasets.Dataset.sample).
SAMPLE_GROUPS = ("template", "item")


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path
    cases: tuple[Case, ...]
    digest: str

    def __len__(self) -> int:
        return len(self.cases)

    def select(self, tags: Sequence[str] = (), limit: int | None = None) -> "Dataset":
        """A subset (cases carrying any of `tags`, then the first `limit`), same name and digest
        of the selected cases, so a subset run is never confused with a full run."""
        cases = [c for c in self.cases if not tags or set(tags) & set(c.tags)]
        if limit is not None:
            cases = cases[:limit]
        if len(cases) == len(self.cases):
            return self
        return Dataset(self.name, self.path, tuple(cases), digest_cases(cases))

    def sample(self, budget: int, seed: str, group_by: Sequence[str] = SAMPLE_GROUPS) -> "Dataset":
        """A fixed sample of at most `budget` cases (a suite's call budget), drawn in whole
        groups: cases sharing the first of `group_by` they carry (a bias template's
        counterfactual set, a BBQ item's two contexts) stay together, other cases are groups of
        one. Groups are taken in the order of a SHA-256 of (seed, group), so the sample does not
        depend on the file's order, and a grown dataset keeps most of an earlier sample. Groups
        with a critical or a `smoke` case come first: neither a critical case nor the smoke
        subset is ever sampled away."""
        if budget >= len(self.cases):
            return self
        groups: dict[str, list[int]] = {}
        for index, case in enumerate(self.cases):
            key = next((f"{a}={case.attributes[a]}" for a in group_by if a in case.attributes), f"id={case.id}")
            groups.setdefault(key, []).append(index)
        def kept(case: Case) -> bool:
            return case.critical or "smoke" in case.tags

        order = sorted(groups, key=lambda k: (not any(kept(self.cases[i]) for i in groups[k]),
                                              hashlib.sha256(f"{seed}\0{k}".encode()).hexdigest()))
        chosen: list[int] = []
        for key in order:
            if chosen and len(chosen) + len(groups[key]) > budget:
                continue
            chosen.extend(groups[key])
        cases = [self.cases[i] for i in sorted(chosen)]
        return Dataset(self.name, self.path, tuple(cases), digest_cases(cases))


class DatasetError(ValueError):
    """A dataset file is malformed. `problems` holds one "file:line: message" per problem."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"invalid dataset {path} ({len(problems)} problem(s)):\n  {shown}{more}")


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, JSON value, problem) for every non-blank line of a JSONL file; the value is
    None when the line has a problem. A missing or non-UTF-8 file raises DatasetError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(path, [f"{path}: file not found"]) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(path, [f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})"]) from None
    # Split on "\n" only: str.splitlines() also breaks on U+0085/U+2028/U+2029, which JSON
    # strings may legally contain raw.
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield lineno, None, f"{where}: bad JSON: {exc.msg} (column {exc.colno})"
            continue
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            yield lineno, None, f"{where}: invalid Unicode: a lone surrogate escape (e.g. \\ud800)"
            continue
        yield lineno, record, None


def load(path: str | Path, name: str | None = None) -> Dataset:
    """Load a JSONL dataset; raise DatasetError listing every malformed line."""
    path = Path(path)
    problems: list[str] = []
    cases: list[Case] = []
    first_line_of: dict[str, int] = {}
    for lineno, record, problem in iter_jsonl(path):
        if problem is not None:
            problems.append(problem)
            continue
        where = f"{path}:{lineno}"
        try:
            case = _parse_case(record, where)
        except _CaseProblem as exc:
            problems.append(f"{where}: {exc}")
            continue
        if case.id in first_line_of:
            problems.append(
                f"{where}: duplicate id {case.id!r} (first used on line {first_line_of[case.id]})"
            )
            continue
        first_line_of[case.id] = lineno
        cases.append(case)
    if not cases and not problems:
        problems.append(f"{path}: no cases")
    if problems:
        raise DatasetError(path, problems)
    return Dataset(name or path.stem, path, tuple(cases), digest_cases(cases))


def digest_cases(cases: Sequence[Case]) -> str:
    """Content digest independent of formatting, key order and file location."""
    h = hashlib.sha256()
    for case in cases:
        payload = {
            "id": case.id,
            "messages": [dict(m) for m in case.messages],
            "expected": case.expected,
            "checks": [dict(c) for c in case.checks],
            "tags": list(case.tags),
            "attributes": dict(case.attributes),
            "critical": case.critical,
        }
        h.update(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


class _CaseProblem(Exception):
    pass


def _require_str(record: dict, key: str, *, allow_empty: bool = False) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise _CaseProblem(f"field {key!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise _CaseProblem(f"field {key!r} is empty")
    return value


def _parse_case(record: Any, where: str) -> Case:
    if not isinstance(record, dict):
        raise _CaseProblem(f"each line must be a JSON object, got {type(record).__name__}")
    unknown = set(record) - _KNOWN_FIELDS
    if unknown:
        raise _CaseProblem(
            f"unknown field(s) {sorted(unknown)}; known fields are {sorted(_KNOWN_FIELDS)}"
        )
    if "id" not in record:
        raise _CaseProblem("missing id")
    case_id = record["id"]
    if isinstance(case_id, int) and not isinstance(case_id, bool):
        case_id = str(case_id)
    if not isinstance(case_id, str) or not case_id.strip():
        raise _CaseProblem("field 'id' must be a non-empty string")

    has_input, has_messages = "input" in record, "messages" in record
    if has_input == has_messages:
        raise _CaseProblem(f"case {case_id!r}: give exactly one of 'input' or 'messages'")
    messages: list[dict[str, str]] = []
    if "system" in record:
        messages.append({"role": "system", "content": _require_str(record, "system")})
    if has_input:
        messages.append({"role": "user", "content": _require_str(record, "input")})
    else:
        messages.extend(_parse_messages(record["messages"], case_id))
        if "system" in record and sum(m["role"] == "system" for m in messages) > 1:
            raise _CaseProblem(f"case {case_id!r}: 'system' given twice (field and message)")

    expected = None
    if record.get("expected") is not None:
        expected = _require_str(record, "expected")

    checks = _parse_checks(record.get("checks", []), case_id)
    if any(c["type"] == "exact_match" for c in checks) and expected is None:
        raise _CaseProblem(f"case {case_id!r}: check 'exact_match' needs 'expected'")
    for check in checks:  # the detector compares the answer with the instruction it was given
        injected = check.get("injected") if check["type"] == "injection" else None
        if injected and not any(injected in m["content"] for m in messages if m["role"] != "system"):
            raise _CaseProblem(f"case {case_id!r}: the injection check's 'injected' text is not in the "
                               "case's input: copy it verbatim")

    tags = record.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise _CaseProblem(f"case {case_id!r}: 'tags' must be a list of non-empty strings")
    attributes = record.get("attributes", {})
    if not isinstance(attributes, dict):
        raise _CaseProblem(f"case {case_id!r}: 'attributes' must be an object")
    critical = record.get("critical", False)
    if not isinstance(critical, bool):
        raise _CaseProblem(f"case {case_id!r}: 'critical' must be true or false")

    return Case(
        id=case_id,
        messages=tuple(MappingProxyType(m) for m in messages),
        expected=expected,
        checks=tuple(MappingProxyType(c) for c in checks),
        tags=tuple(tags),
        attributes=MappingProxyType(dict(attributes)),
        critical=critical,
        source=where,
    )


def _parse_messages(raw: Any, case_id: str) -> list[dict[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise _CaseProblem(f"case {case_id!r}: 'messages' must be a non-empty list")
    messages = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise _CaseProblem(
                f"case {case_id!r}: messages[{i}] must be an object with 'role' and 'content'"
            )
        if not isinstance(m["role"], str) or m["role"] not in ROLES:
            raise _CaseProblem(
                f"case {case_id!r}: messages[{i}].role {m['role']!r} is not one of {sorted(ROLES)}"
            )
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise _CaseProblem(f"case {case_id!r}: messages[{i}].content is empty or not a string")
        messages.append({"role": m["role"], "content": m["content"]})
    if messages[-1]["role"] != "user":
        raise _CaseProblem(f"case {case_id!r}: the last message must have role 'user'")
    return messages


def _parse_checks(raw: Any, case_id: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise _CaseProblem(f"case {case_id!r}: 'checks' must be a list")
    checks = []
    for i, check in enumerate(raw):
        if not isinstance(check, dict) or "type" not in check:
            raise _CaseProblem(f"case {case_id!r}: checks[{i}] must be an object with a 'type'")
        kind = check["type"]
        spec = registry.find(kind) if isinstance(kind, str) else None
        if spec is None:
            raise _CaseProblem(
                f"case {case_id!r}: checks[{i}] has unknown type {kind!r}; "
                f"known: {registry.names()}"
            )
        if spec.validate is not None:
            try:
                spec.validate(check)
            except ValueError as exc:
                label = f"({kind}) " if getattr(exc, "labelled", True) else ""
                raise _CaseProblem(f"case {case_id!r}: checks[{i}] {label}{exc}") from None
        checks.append(dict(check))
    return checks
