"""The harness and `mlflow.genai.evaluate`, both ways.

- `scorer_for(check, **params)`: one of the harness's registered offline checks as an MLflow
  scorer (`mlflow.genai.scorers.scorer`), for an evaluation run the MLflow way:

      mlflow.genai.evaluate(data=frame, scorers=[scorer_for("exact_match"),
                                                 scorer_for("contains", value="Paris")])

  It reads MLflow's `inputs` ({"question": ...} or {"messages": [...]}), `outputs` (a string or
  an OpenAI-style chat completion) and `expectations` (`expected_response`: the expected answer),
  and returns one `Feedback` per row: the check's pass (a bool) for a pass/fail check, else its
  number; the failure's reason as the rationale; source CODE named after the check.
  `scorers_for(checks)` does that for a dataset's `checks` list.
- `dataset_from_mlflow(dataset_or_name)`: an MLflow evaluation dataset (its `to_df()`) as a
  harness Dataset, through `harness.datasets.from_frame` (the same validation as a JSONL file).

mlflow is imported lazily, as by the other tracking modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from harness.core import Score
from harness.datasets import (
    Dataset,
    DatasetError,
    case_from_inputs,
    expected_of,
    from_frame,
    inputs_digest,
)
from harness.mlflow_env import quiet_mlflow_environment
from harness.scorers import registry
from harness.tracking.client import TrackingError

if TYPE_CHECKING:
    from mlflow.entities import Feedback
    from mlflow.genai.scorers import Scorer

__all__ = ["ModelAssistedCheckError", "dataset_from_mlflow", "scorer_for", "scorers_for"]

# What a scorer can give a check out of MLflow's inputs (registry.NEEDS): the request and the
# conversation. A check needing anything else (a model to ask) is not an offline check.
_GIVEN = frozenset({"request", "messages"})
# who judged (harness.core.SOURCES) -> MLflow's AssessmentSourceType
_SOURCE_TYPES = {"code": "CODE", "judge": "LLM_JUDGE", "human": "HUMAN"}


class ModelAssistedCheckError(ValueError):
    """The check asks a model (a judge, the target): it cannot run as an offline MLflow scorer."""


def scorer_for(check: str | Mapping[str, Any], /, *, scorer_name: str | None = None, **params: Any) -> Scorer:
    """An MLflow scorer that runs one registered offline check: `check` is its type name (with
    its parameters as keywords: `scorer_for("contains", value="Paris")`) or a dataset's check
    object (`{"type": "contains", "value": "Paris"}`). The scorer, and its feedback, is named
    `scorer_name` (default: the check's type). Bad parameters raise ValueError naming the check
    (its own validator's words); an unknown type raises registry.UnknownCheckError; a check that
    asks a model raises ModelAssistedCheckError.

    Each row's Feedback: for a check that passes or fails, value True/False (a check reporting
    several scores passes when none of them failed) and the failures' reasons as rationale; for
    a measurement, its number. A check's several scores are also in the metadata
    (`harness.<score>`). No outputs (the app failed) is an error Feedback (ENDPOINT_ERROR), never
    a pass, as the harness's own per-case traces record a missing answer (case_traces.py).
    Malformed inputs/outputs/expectations, or exact_match without `expected_response`, raise:
    MLflow records the row's error for this scorer (SCORER_ERROR)."""
    spec, params = _offline_check(check, params)
    name = scorer_name or spec.name
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a scorer's name is a non-empty string, got {name!r}")
    quiet_mlflow_environment()
    from mlflow.genai.scorers import scorer

    frozen = MappingProxyType(params)

    def harness_check(inputs: Any = None, outputs: Any = None, expectations: Any = None) -> Feedback | None:
        return _feedback(spec, frozen, name, inputs, outputs, expectations)

    shown = ", ".join(f"{k}={v!r}" for k, v in params.items() if k != "type")
    return scorer(harness_check, name=name,
                  description=f"harness check {spec.name!r}" + (f" ({shown})" if shown else ""))


def scorers_for(checks: Iterable[str | Mapping[str, Any]]) -> list[Scorer]:
    """A scorer per check of a list such as a dataset's `checks` (check objects or type names).
    Two checks of one type are told apart by a suffix: `contains`, `contains_2` ..."""
    scorers: list[Scorer] = []
    taken: dict[str, int] = {}
    for check in checks:
        kind = check if isinstance(check, str) else check.get("type") if isinstance(check, Mapping) else None
        if not isinstance(kind, str):
            raise TypeError(f"each check is a type name or an object with a 'type', got {check!r}")
        taken[kind] = taken.get(kind, 0) + 1
        scorers.append(scorer_for(check, scorer_name=kind if taken[kind] == 1 else f"{kind}_{taken[kind]}"))
    return scorers


def dataset_from_mlflow(dataset_or_name: Any, *, name: str | None = None,
                        checks: Sequence[Mapping[str, Any]] | None = None, id_column: str = "id") -> Dataset:
    """A harness Dataset out of an MLflow evaluation dataset: an `mlflow.genai.datasets
    .EvaluationDataset` (or anything with its `to_df()`, `name` and `dataset_id`), or the name
    of one in the current tracking store (`mlflow.genai.datasets.get_dataset`). Its records'
    inputs, expectations and tags become cases as `harness.datasets.from_frame` makes them;
    `checks` are given to every case (MLflow records carry none); ids are digests of the
    inputs. The dataset is named `name` (default: the MLflow dataset's name) and says it was
    read from `mlflow-dataset/<dataset_id>`. DatasetError for malformed records or no dataset
    of that name, TrackingError when the store cannot be read."""
    quiet_mlflow_environment()
    from mlflow.exceptions import MlflowException

    try:
        if isinstance(dataset_or_name, str):
            from mlflow.genai.datasets import get_dataset

            try:
                dataset = get_dataset(name=dataset_or_name)
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise
                where = Path("mlflow-dataset") / dataset_or_name
                raise DatasetError(where, [f"{where}: {exc.message}"]) from None
        else:
            dataset = dataset_or_name
        if not callable(getattr(dataset, "to_df", None)):
            raise TypeError("dataset_from_mlflow takes an MLflow EvaluationDataset or its name, got "
                            f"{type(dataset).__name__}")
        frame = dataset.to_df()
        label, dataset_id = dataset.name, dataset.dataset_id
    except MlflowException as exc:
        raise TrackingError(f"could not read the MLflow dataset {dataset_or_name!r}: {exc}") from exc
    return from_frame(frame, name or label, checks=checks, id_column=id_column,
                      path=Path("mlflow-dataset") / str(dataset_id))


# --- one row scored ------------------------------------------------------------------------------

def _offline_check(check: str | Mapping[str, Any], params: dict[str, Any]) -> tuple[registry.Check, dict[str, Any]]:
    if isinstance(check, Mapping):
        if params:
            raise TypeError("give a check object or a type name with keyword parameters, not both")
        params = dict(check)
    elif isinstance(check, str):
        if "type" in params:
            raise TypeError("the check's type is the first argument, not a 'type' parameter")
        params = {"type": check, **params}
    else:
        raise TypeError(f"a check is a type name or a check object, got {type(check).__name__}")
    kind = params.get("type")
    if not isinstance(kind, str):
        raise TypeError(f"a check object needs a 'type' (a check type name), got {kind!r}")
    spec = registry.get(kind)
    asks = spec.needs - _GIVEN
    if asks:
        raise ModelAssistedCheckError(
            f"check {kind!r} needs {sorted(asks)}: it asks a model, and a scorer made by the harness runs "
            "offline checks only (use MLflow's judges in mlflow.genai.evaluate, or the harness's judge "
            "in a suite run)")
    if spec.validate is not None:
        try:
            spec.validate(params)
        except ValueError as exc:
            raise ValueError(f"check {kind!r}: {exc}") from None
    return spec, params


def _answer(outputs: Any) -> str:
    """The answer text out of MLflow's `outputs`: a string, or a chat completion (a dict, or the
    OpenAI client's object), read as the harness reads an MLflow model's output."""
    from harness.targets.base import TargetError
    from harness.targets.mlflow_model import answer_text

    if hasattr(outputs, "model_dump") and not isinstance(outputs, Mapping):  # openai's ChatCompletion
        outputs = outputs.model_dump()
    try:
        return answer_text(outputs)
    except TargetError:
        raise ValueError("outputs must be a string or an OpenAI-style chat completion "
                         f"({{'choices': [{{'message': {{'content': ...}}}}]}}), got {str(outputs)[:200]}") from None


def _feedback(spec: registry.Check, params: Mapping[str, Any], name: str, inputs: Any, outputs: Any,
              expectations: Any) -> Feedback | None:
    from mlflow.entities import AssessmentError, AssessmentSource, Feedback

    expected = expected_of(expectations)
    if spec.name == "exact_match" and expected is None:
        raise ValueError("check 'exact_match' needs expectations['expected_response']")

    def source(score: Score | None = None) -> AssessmentSource:
        return AssessmentSource(source_type=_SOURCE_TYPES.get(score.source if score else "code", "CODE"),
                                source_id=spec.name)

    if outputs is None:  # no answer is never a pass: an error, as the suite's traces record one
        return Feedback(name=name, source=source(), error=AssessmentError(
            error_code="ENDPOINT_ERROR", error_message="no answer: the row's outputs are None"))
    answer = _answer(outputs)
    extra: dict[str, Any] = {}
    if spec.needs:
        if inputs is None:
            raise ValueError(f"check {spec.name!r} reads the request: the row has no inputs")
        case = case_from_inputs(inputs, case_id=inputs_digest(inputs) if isinstance(inputs, Mapping) else "inputs")
        extra = spec.inputs(case.prompt, case.messages)
    outcome = spec.function(answer, params, expected, **extra)
    scores = outcome if isinstance(outcome, list) else [outcome]
    if not scores:
        return None
    metadata = {f"harness.{s.name}": repr(s.value) for s in scores} if len(scores) > 1 else None
    verdicts = [s for s in scores if s.passed is not None]
    if verdicts:
        failed = [s for s in verdicts if not s.passed]
        if failed:
            reasons = [s.rationale if len(scores) == 1 else f"{s.name}: {s.rationale}" for s in failed]
            return Feedback(name=name, value=False, rationale="; ".join(reasons), source=source(failed[0]),
                            metadata=metadata)
        shown = _primary(spec, params, verdicts)
        return Feedback(name=name, value=True, rationale=shown.rationale or None, source=source(shown),
                        metadata=metadata)
    shown = _primary(spec, params, scores)
    return Feedback(name=name, value=float(shown.value), rationale=shown.rationale or None, source=source(shown),
                    metadata=metadata)


def _primary(spec: registry.Check, params: Mapping[str, Any], scores: list[Score]) -> Score:
    """The score a check is known by (its registered score name), else its first."""
    wanted = spec.score_name(params)
    return next((s for s in scores if s.name == wanted), scores[0])
