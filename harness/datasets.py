"""Load and validate evaluation datasets (JSONL).

Every problem is reported with the file, the line and what is wrong, and all problems of a
file are collected before raising, so a curator fixes a dataset in one pass. A check may be of
any type registered with harness.scorers.registry (the built-ins, and a user's own registered
before the dataset is loaded); each validates its own parameters.

A dataset may also be a pandas DataFrame of MLflow evaluation records (`from_frame`): an
`inputs` column of dicts ({"question": ...} or {"messages": [...]}), optional `expectations`
(`expected_response` is the case's expected answer), `tags`, `checks`... Each row becomes a case
through the same validation as a JSONL line, and its problems are reported the same way, named
by row ("row 3: ...").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence

from harness.core import Case
from harness.scorers import registry  # registers the built-in checks (imports no model)
from harness.taxonomy import validate_taxonomy

ROLES = frozenset({"system", "user", "assistant"})
_KNOWN_FIELDS = frozenset(
    {"id", "input", "messages", "system", "expected", "checks", "tags", "attributes", "critical"}
)


# Case attributes whose cases a sample keeps together (harness.datasets.Dataset.sample): a bias
# template's counterfactuals, a BBQ item's contexts, a source prompt or seed request with the
# variants made of it (robustness, red team).
SAMPLE_GROUPS = ("template", "item", "source_case")


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
    taxonomy_problem = validate_taxonomy(attributes)  # the OWASP id and hazard, when given
    if taxonomy_problem:
        raise _CaseProblem(f"case {case_id!r}: {taxonomy_problem}")
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


# --- MLflow evaluation records (a DataFrame with inputs / expectations) -------------------------

# The keys of an `inputs` dict that hold the one question a case asks (MLflow's examples use
# "question"); "messages" holds a whole conversation instead, and "system" a system prompt.
PROMPT_KEYS = ("question", "query", "request", "input", "prompt")
EXPECTED_KEY = "expected_response"
FRAME_COLUMNS = ("inputs", "expectations", "tags", "checks", "attributes", "critical")
# What MLflow's EvaluationDataset.to_df() adds to each record, left out of a case: a suite asks
# its own target, so a record's `outputs` are not its answers.
MLFLOW_RECORD_COLUMNS = frozenset({"outputs", "dataset_record_id", "source", "source_type", "source_id",
                                   "created_time", "last_update_time", "created_by", "last_updated_by"})
# the columns whose cells are dicts or lists (or those as JSON strings), and what each holds
_JSON_COLUMNS = {"inputs": "a dict such as {'question': ...} or {'messages': [...]}", "expectations": "a dict",
                 "tags": "a list of strings or a dict", "checks": "a list of checks", "attributes": "a dict"}


def inputs_digest(inputs: Mapping[str, Any]) -> str:
    """The id of a case that has none: a digest of its MLflow-style inputs (key order aside), so
    the same inputs get the same id in every copy and every order of a dataset."""
    text = json.dumps(inputs, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expected_of(expectations: Any) -> str | None:
    """The expected answer of MLflow-style expectations (their `expected_response`), or None.
    ValueError says what is malformed."""
    try:
        return _expected(expectations)
    except _CaseProblem as exc:
        raise ValueError(str(exc)) from None


def case_from_inputs(inputs: Any, expectations: Any = None, *, case_id: str | None = None,
                     checks: Sequence[Mapping[str, Any]] = (), tags: Any = None, attributes: Any = None,
                     critical: Any = False, source: str = "") -> Case:
    """One case out of an MLflow evaluation record: `inputs` {"question": ...} (or another of
    PROMPT_KEYS) or {"messages": [...]}, optionally with "system"; `expectations` whose
    `expected_response` is the expected answer and whose other keys are kept in the case's
    attributes under "expectations"; `tags` a list of strings or MLflow's {name: value} (a tag
    `name` for a true or empty value, else `name=value`; MLflow's own `mlflow.*` tags dropped).
    The id defaults to `inputs_digest(inputs)`. Validated as a JSONL line is; ValueError says
    what is wrong."""
    try:
        return _record_case(_plain(inputs), _plain(expectations), case_id, _plain(list(checks)), _plain(tags),
                            _plain(attributes), critical, source)
    except _CaseProblem as exc:
        raise ValueError(str(exc)) from None


def from_frame(frame: Any, name: str, *, checks: Sequence[Mapping[str, Any]] | None = None,
               id_column: str = "id", path: str | Path | None = None) -> Dataset:
    """A dataset out of a pandas DataFrame of MLflow evaluation records, one case per row (see
    `case_from_inputs`). Columns: `inputs` (required), `expectations`, `tags`, `checks` (the row's
    checks; `checks` here is given to rows that have none), `attributes`, `critical`, and
    `id_column` (default: each case's id is a digest of its inputs); a cell of the dict and list
    columns may also be a JSON string (a CSV file, a Spark table). MLflow's own record columns
    (MLFLOW_RECORD_COLUMNS: `outputs`, `dataset_record_id` ...) are ignored, any other column is
    a problem. Raises DatasetError listing every problem, each named by the row's index label
    ("row 3: ..."). `path` is what the dataset says it was read from (default
    "dataframe/<name>"), in reports and on its MLflow runs."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"from_frame takes a pandas DataFrame, got {type(frame).__name__}")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a dataset needs a name")
    path = Path(path) if path is not None else Path("dataframe") / name

    def missing(value: Any) -> bool:
        return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))

    problems: list[str] = []
    columns = [str(c) for c in frame.columns]
    if len(set(columns)) != len(columns):
        problems.append(f"duplicate column(s) {sorted({c for c in columns if columns.count(c) > 1})}")
    unknown = set(columns) - set(FRAME_COLUMNS) - {id_column} - MLFLOW_RECORD_COLUMNS
    if unknown:
        problems.append(f"unknown column(s) {sorted(unknown)}; known columns are "
                        f"{sorted(set(FRAME_COLUMNS) | {id_column})} (and MLflow's record columns, ignored)")
    if "inputs" not in columns:
        problems.append("no 'inputs' column: each row's inputs are a dict such as {'question': ...} or "
                        "{'messages': [...]}")
    default_checks: list[dict[str, Any]] = []
    if checks is not None:
        try:
            default_checks = _parse_checks(_plain(list(checks)) if isinstance(checks, (list, tuple)) else checks, "")
        except _CaseProblem as exc:
            problems.append("the checks argument: " + str(exc).removeprefix("case '': "))
    if "inputs" not in columns or len(set(columns)) != len(columns):
        raise DatasetError(path, problems)  # no row can be read; other problems are reported with the rows'

    cases: list[Case] = []
    first_row_of: dict[str, Any] = {}
    for label, row in zip(frame.index, frame.to_dict("records")):
        label = _plain(label)
        where = f"row {label}"
        try:
            cells = {}
            for column, value in row.items():
                if column in MLFLOW_RECORD_COLUMNS or missing(value):
                    continue
                cells[column] = _cell(column, value)
            if "inputs" not in cells:
                raise _CaseProblem("no inputs (the cell is empty)")
            if id_column in columns:
                if id_column not in cells:
                    raise _CaseProblem(f"no id (the {id_column!r} cell is empty)")
                case_id = cells[id_column]
            else:
                case_id = None
            case = _record_case(cells["inputs"], cells.get("expectations"), case_id,
                                cells.get("checks", default_checks), cells.get("tags"),
                                cells.get("attributes"), cells.get("critical", False), f"{path}, {where}")
        except _CaseProblem as exc:
            problems.append(f"{where}: {exc}")
            continue
        if case.id in first_row_of:
            hint = "" if id_column in columns else (
                f": the id is a digest of the inputs, so these rows ask the same; merge them, or give the "
                f"rows an {id_column!r} column")
            problems.append(f"{where}: duplicate id {case.id!r} (first used on row {first_row_of[case.id]}){hint}")
            continue
        first_row_of[case.id] = label
        cases.append(case)
    if not cases and not problems:
        problems.append("no rows")
    if problems:
        raise DatasetError(path, problems)
    return Dataset(name, path, tuple(cases), digest_cases(cases))


def _plain(value: Any) -> Any:
    """Python values out of what a DataFrame holds: numpy arrays (a list column read from
    Parquet) and numpy scalars become lists and Python numbers; dicts and lists are copied."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _plain(value.tolist())
    return value


def _cell(column: str, value: Any) -> Any:
    if isinstance(value, str) and column in _JSON_COLUMNS:
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise _CaseProblem(f"{column} must be {_JSON_COLUMNS[column]} (or one as a JSON string), got a "
                               f"string that is not JSON ({exc.msg}): {value[:60]!r}") from None
    return _plain(value)


def _expected(expectations: Any) -> str | None:
    if expectations is None:
        return None
    if not isinstance(expectations, Mapping):
        raise _CaseProblem(f"expectations must be a dict such as {{{EXPECTED_KEY!r}: ...}}, got "
                           f"{type(expectations).__name__}")
    expected = expectations.get(EXPECTED_KEY)
    if expected is not None and (not isinstance(expected, str) or not expected.strip()):
        raise _CaseProblem(f"expectations[{EXPECTED_KEY!r}] must be a non-empty string, got {expected!r:.60}")
    return expected


def _inputs_fields(inputs: Any) -> dict[str, Any]:
    """The JSONL fields ("input" or "messages", "system") of MLflow-style inputs."""
    if not isinstance(inputs, Mapping):
        raise _CaseProblem("inputs must be a dict such as {'question': ...} or {'messages': [...]}, got "
                           f"{type(inputs).__name__}")
    keys = sorted(map(str, inputs))
    unknown = set(keys) - set(PROMPT_KEYS) - {"messages", "system"}
    if unknown:
        raise _CaseProblem(f"inputs has key(s) {sorted(unknown)} the harness cannot ask with: a case is a "
                           f"conversation ('messages') or one question (one of {list(PROMPT_KEYS)}), "
                           "optionally with a 'system' prompt")
    asked = [k for k in ("messages", *PROMPT_KEYS) if k in inputs]
    if len(asked) != 1:
        raise _CaseProblem(f"inputs must hold exactly one of 'messages' or {list(PROMPT_KEYS)}, got {keys}")
    fields: dict[str, Any] = {}
    for key in ("system", *PROMPT_KEYS):
        if key in inputs and (not isinstance(inputs[key], str) or not inputs[key].strip()):
            raise _CaseProblem(f"inputs[{key!r}] must be a non-empty string")
    if "system" in inputs:
        fields["system"] = inputs["system"]
    if asked[0] == "messages":
        fields["messages"] = inputs["messages"]
    else:
        fields["input"] = inputs[asked[0]]
    return fields


def _tags(raw: Any) -> Any:
    """A case's tags out of a list of strings (as they are) or MLflow's record tags {name: value}."""
    if not isinstance(raw, Mapping):
        return [] if raw is None else raw  # _parse_case says what is wrong with anything but a list
    tags = []
    for key, value in raw.items():
        key = str(key)
        if key.startswith("mlflow."):  # MLflow's own (mlflow.user ...)
            continue
        bare = value is None or value is True or (isinstance(value, str) and value.strip().lower() in ("", "true"))
        tags.append(key if bare else f"{key}={value}")
    return sorted(tags)


def _record_case(inputs: Any, expectations: Any, case_id: Any, checks: Any, tags: Any, attributes: Any,
                 critical: Any, source: str) -> Case:
    """A case out of one MLflow-style record, through the JSONL validation (_parse_case)."""
    record: dict[str, Any] = _inputs_fields(inputs)
    record["id"] = inputs_digest(inputs) if case_id is None else case_id
    expected = _expected(expectations)
    if expected is not None:
        record["expected"] = expected
    if isinstance(checks, list) and expected is None and any(
            isinstance(c, Mapping) and c.get("type") == "exact_match" for c in checks):
        raise _CaseProblem(f"case {record['id']!r}: check 'exact_match' needs expectations[{EXPECTED_KEY!r}]")
    record["checks"] = checks
    record["tags"] = _tags(tags)
    record["critical"] = critical
    if attributes is not None and not isinstance(attributes, Mapping):
        raise _CaseProblem(f"case {record['id']!r}: 'attributes' must be a dict")
    attributes = dict(attributes or {})
    others = {k: v for k, v in (expectations or {}).items() if k != EXPECTED_KEY}
    if others:
        if "expectations" in attributes:
            raise _CaseProblem(f"case {record['id']!r}: attributes['expectations'] is where the other "
                               "expectations go: rename that attribute")
        attributes["expectations"] = others
    record["attributes"] = attributes
    try:
        json.dumps(record, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _CaseProblem(f"case {record['id']!r}: not JSON values ({exc})") from None
    return _parse_case(record, source)
