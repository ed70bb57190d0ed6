"""Runs: one suite run logged to MLflow (and first to local disk), a drift check logged as its
own run, and runs read back. The one owner of the per-case table's schema (eval_results.json):
`_table_frame` writes it, and every reader reads it through `score_columns`, `case_values`,
`load_run` and `read_baseline`, so the schema is known in one place."""

from __future__ import annotations

import json
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from harness.datasets import Dataset
from harness.gates import Baseline, Verdict
from harness.mlflow_env import quiet_mlflow_environment
from harness.paths import slug
from harness.results import ResultTable
from harness.tracking.client import TrackingError, _experiment_id, _open_store, git_commit
from harness.tracking.registry import champion_run_id, resolve_model_version
from harness.tracking.case_traces import TraceReport, write_case_traces
from harness.version import __version__

RESULTS_ARTIFACT = "eval_results.json"
VERDICT_ARTIFACT = "verdict.json"
_MAX_PARAM_LEN = 500  # MLflow rejects longer param values on some stores
# The tag MLflow's own evaluation runs carry (mlflow/genai/evaluation/base.py): its UI lists a
# run so tagged under the experiment's *Evaluation runs*.
RUN_TYPE_TAG, RUN_TYPE_EVALUATION = "mlflow.runType", "genai_evaluate"
_NOTE_FAILED_CASES = 50  # failed cases listed on the run page; the per-case table has them all


# --- the per-case table: its schema, written and read here only ------------------------------------


# The columns `_table_frame` writes for every case, in order; after them one column per score
# name (sorted), the score's value or None. "passed" is the case's pass, not a score.
_CASE_COLUMNS = ("case_id", "input", "expected", "response", "passed", "critical", "failures", "error",
                 "attempts", "finish_reason", "tags", "source", "judge_rationale")
_NOT_SCORES = frozenset(_CASE_COLUMNS)


def _table_frame(table: ResultTable):
    import pandas as pd

    score_names = sorted({name for row in table.rows for name in row.scores})
    records = []
    for row in table.rows:
        record: dict[str, Any] = {
            "case_id": row.case.id,
            "input": row.case.prompt,
            "expected": row.case.expected,
            "response": row.response.text,
            "passed": row.passed,
            "critical": row.case.critical,
            "failures": "; ".join(row.failures()),
            "error": row.response.error,
            "attempts": row.response.attempts,
            "finish_reason": row.response.finish_reason,
            "tags": ",".join(row.case.tags),
            "source": row.case.source,
            # the LLM judge's one-sentence reason, passed or failed (None when no judge ran)
            "judge_rationale": next((s.rationale for s in row.scores.values() if s.source == "judge" and s.rationale),
                                    None),
        }
        for name in score_names:
            score = row.scores.get(name)
            record[name] = None if score is None else score.value
        records.append(record)
    return pd.DataFrame.from_records(records)


def score_columns(frame, *, numeric: bool = True) -> list[str]:
    """The score columns of a per-case table (a DataFrame as `load_run` reads it, or as
    `_table_frame` writes it), in the frame's order: every column that is not one of the fixed
    per-case columns, "passed" included among those. With `numeric` (the default) only the
    columns of a numeric dtype (what a baseline or a distribution can be made of); without it
    every score column, whatever its values."""
    import pandas as pd

    return [column for column in frame.columns if column not in _NOT_SCORES
            and (not numeric or pd.api.types.is_numeric_dtype(frame[column]))]


def case_values(frame) -> dict[str, dict[str, float]]:
    """Metric -> case id -> value of a per-case table: `case_pass` (1.0 when the case passed),
    `error` (1.0 when the endpoint gave no usable answer) and every numeric score column, over
    the cases that have a value. The same metrics and values `ResultTable.values_by_case` gives
    for the table that was logged: what a baseline is compared with, case by case."""
    values: dict[str, dict[str, float]] = {
        "case_pass": {str(k): float(bool(v)) for k, v in zip(frame["case_id"], frame["passed"])},
        "error": {str(k): float(v is not None and v == v) for k, v in zip(frame["case_id"], frame["error"])},
    }
    for column in score_columns(frame):
        if column in values:
            continue
        values[column] = {str(k): float(v) for k, v in zip(frame["case_id"], frame[column]) if v == v}
    return values


def _dataset_frame(dataset: Dataset):
    import pandas as pd

    return pd.DataFrame.from_records([{
        "id": c.id,
        "messages": json.dumps([dict(m) for m in c.messages], ensure_ascii=False),
        "expected": c.expected,
        "checks": json.dumps([dict(k) for k in c.checks], ensure_ascii=False),
        "tags": ",".join(c.tags),
        "critical": c.critical,
    } for c in dataset.cases])


# --- logging one suite run ------------------------------------------------------------------------

def write_local_record(directory: Path, *, suite: str, table: ResultTable, verdict: Verdict,
                       dataset: Dataset, target_info: Mapping[str, Any],
                       metrics: Mapping[str, float] | None = None, variant: str | None = None) -> Path:
    """The suite's verdict, metrics and per-case table as JSON on local disk, written before
    MLflow is tried, so an unreachable tracking store loses nothing. A `variant` (the run's
    label, its guards) is part of the file name: a guarded or labelled run of a suite never
    overwrites the plain one."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (f"{slug(suite)}--{slug(variant)}.json" if variant else f"{slug(suite)}.json")
    header = json.dumps({
        "suite": suite,
        "dataset": {"name": dataset.name, "path": str(dataset.path), "digest": dataset.digest},
        "target": dict(target_info),
        "verdict": verdict.to_dict(),
        "metrics": dict(metrics) if metrics is not None else table.summary(),
    }, ensure_ascii=False, default=str)
    # the per-case table is serialized by pandas in one pass: no list of per-row dicts
    cases = _table_frame(table).to_json(orient="records", force_ascii=False)
    tmp = path.with_suffix(".json.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(header[:-1] + ', "cases": ')
        fh.write(cases)
        fh.write("}")
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


@dataclass(frozen=True)
class LoggedRun:
    """A suite run as MLflow recorded it: its id, and what became of its per-case traces."""

    run_id: str
    traces: TraceReport | None = None


def log_suite_run(*, suite: str, table: ResultTable, verdict: Verdict, dataset: Dataset,
                  target_info: Mapping[str, Any], settings: Mapping[str, Any], tracking_uri: str,
                  experiment: str, root: Path, trace_limit: int = 0, full_traces: bool = False,
                  metrics: Mapping[str, float] | None = None,
                  tables: Mapping[str, Any] | None = None, figures: Mapping[str, Any] | None = None) -> LoggedRun:
    """Record one suite run as an MLflow evaluation run, with a trace per case (up to
    `trace_limit`) carrying its assessments (tracking/case_traces.py); `full_traces` puts the
    model call's span in each. Raises TrackingError if MLflow fails. `metrics` defaults to the
    table's summary; callers with more (engine figures) pass all. `tables` (name -> DataFrame)
    and `figures` (file name -> matplotlib Figure) are suite-level artifacts, such as the bias
    suites' per-group table and chart."""
    quiet_mlflow_environment()
    with warnings.catch_warnings():
        # MLflow's own deprecation noise (SQLAlchemy, pandas) is not the user's to act on
        warnings.simplefilter("ignore")
        return _log_suite_run(suite=suite, table=table, verdict=verdict, dataset=dataset,
                              target_info=target_info, settings=settings, tracking_uri=tracking_uri,
                              experiment=experiment, root=root, trace_limit=trace_limit, full_traces=full_traces,
                              metrics=dict(metrics) if metrics is not None else table.summary(),
                              tables=tables or {}, figures=figures or {})


def run_note(verdict: Verdict, table: ResultTable, traces: TraceReport | None = None) -> str:
    """The run page's description (Markdown): the verdict, the criteria it failed, and the
    failed cases with their reasons, so none of it needs an artifact download."""
    failed = [row for row in table.rows if not row.passed]
    lines = [f"**Verdict: {'PASSED' if verdict.passed else 'FAILED'}**", "", "```", verdict.report(), "```", "",
             f"**Failed cases: {len(failed)} of {len(table)}**" + (" (none)" if not failed else "")]
    for row in failed[:_NOTE_FAILED_CASES]:
        reason = "; ".join(row.failures()).replace("\n", " ")
        lines.append(f"- `{row.case.id}`: {reason[:300]}")
    if len(failed) > _NOTE_FAILED_CASES:
        lines.append(f"- ... and {len(failed) - _NOTE_FAILED_CASES} more: filter the Traces tab on "
                     f"`case_passed` = false, or read {RESULTS_ARTIFACT}")
    if traces is not None:
        lines += ["", f"Traces: {traces.line()}"]
    return "\n".join(lines)


def _log_suite_run(*, suite, table, verdict, dataset, target_info, settings, tracking_uri,
                   experiment, root, trace_limit, full_traces, metrics, tables, figures) -> LoggedRun:
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    try:
        mlflow.set_tracking_uri(tracking_uri)
        client = mlflow.MlflowClient()
        experiment_id = _experiment_id(client, experiment, tracking_uri)
        model = str(target_info.get("model", ""))
        label = settings.get("label")
        run = client.create_run(experiment_id, run_name=f"{suite} · {model}" + (f" · {label}" if label else ""))
        run_id = run.info.run_id
        params = {
            **{k: v for k, v in target_info.items()},
            "suite": suite,
            "dataset": dataset.name,
            "dataset_path": str(dataset.path),
            "dataset_digest": dataset.digest,
            "n_cases": len(dataset),
            "git_commit": git_commit(root),
            "harness_version": __version__,
            **{f"config.{k}": v for k, v in settings.items() if k not in target_info},
        }
        now = int(time.time() * 1000)
        status = "passed" if verdict.passed else "failed"
        tags = {
            "harness.suite": suite,
            "harness.verdict": status,
            "harness.dataset_digest": dataset.digest,
            **({"harness.label": str(label)} if label else {}),
            RUN_TYPE_TAG: RUN_TYPE_EVALUATION,
            "mlflow.note.content": run_note(verdict, table),
        }
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
            + [Metric("gate/passed", float(verdict.passed), now, 0)],
            params=[Param(k, "" if v is None else str(v)[:_MAX_PARAM_LEN]) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        with mlflow.start_run(run_id=run_id):
            mlflow.log_table(_table_frame(table), artifact_file=RESULTS_ARTIFACT)
            mlflow.log_dict(verdict.to_dict(), VERDICT_ARTIFACT)
            source = mlflow.data.from_pandas(_dataset_frame(dataset), source=str(dataset.path),
                                             name=dataset.name, digest=dataset.digest)
            mlflow.log_input(source, context="evaluation")
            for name, frame in tables.items():
                mlflow.log_table(frame, artifact_file=f"{name}.json")
            for name, figure in figures.items():
                mlflow.log_figure(figure, name)
        report = None
        if trace_limit > 0:
            report = write_case_traces(tracking_uri, experiment_id, run_id, table.rows, suite=suite,
                                       dataset=dataset.name, target_info=target_info,
                                       judge=settings.get("judge_model"), full=full_traces, limit=trace_limit)
            client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in report.metrics().items()],
                             tags=[RunTag("mlflow.note.content", run_note(verdict, table, report))])
        return LoggedRun(run_id, report)
    except Exception as exc:
        raise TrackingError(f"MLflow at {tracking_uri} could not record suite '{suite}': "
                            f"{type(exc).__name__}: {exc}") from exc


class SuiteLogger:
    """Records suite runs (`log_suite_run`) off the pipeline's path, one at a time and in order,
    from a worker process that imports mlflow and opens the store while the first suite is
    queried: the next suite is queried and scored while MLflow writes the last one's run and
    traces, and on 2 cores the two overlap instead of taking turns on one interpreter lock
    (MLflow's store spends ~10 ms of CPU per trace with its assessments)."""

    def __init__(self, tracking_uri: str):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_open_store, initargs=(tracking_uri,))

    def submit(self, **run: Any) -> "Future[LoggedRun]":
        """`log_suite_run(**run)` later; the future's result is the LoggedRun, or raises
        TrackingError (a worker that died becomes one too)."""
        return self._pool.submit(log_suite_run, **run)

    @staticmethod
    def result(future: "Future[LoggedRun]") -> LoggedRun:
        try:
            return future.result()
        except TrackingError:
            raise
        except Exception as exc:  # the worker process died, or a result could not be pickled
            raise TrackingError(f"the MLflow logging worker failed: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# --- a drift check, logged as its own run ---------------------------------------------------------

def log_drift_run(*, suite: str, reference_run_id: str, current_run_id: str | None, metrics: Mapping[str, float],
                  report_text: str, tracking_uri: str, experiment: str,
                  current_traces: Mapping[str, Any] | None = None, status: str = "checked") -> str:
    """A drift check as its own MLflow run (tag harness.kind=drift), beside the eval runs. When the
    current side is a window of traces rather than a run, `current_traces` describes it (logged
    as `current_traces.*` params, tag harness.drift.current=traces). `status` is "checked", or
    why no check could be made (a window too small to test is logged too, so a dashboard shows
    the gap instead of silence)."""
    quiet_mlflow_environment()
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    try:
        mlflow.set_tracking_uri(tracking_uri)
        client = mlflow.MlflowClient()
        run = client.create_run(_experiment_id(client, experiment, tracking_uri), run_name=f"drift · {suite}")
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v == v and abs(v) != float("inf")],
            params=[Param("suite", suite), Param("reference_run_id", reference_run_id)]
            + ([Param("current_run_id", current_run_id)] if current_run_id is not None else [])
            + [Param(f"current_traces.{k}", str(v)[:_MAX_PARAM_LEN]) for k, v in (current_traces or {}).items()],
            tags=[RunTag("harness.kind", "drift"), RunTag("harness.suite", suite),
                  RunTag("harness.drift.current", "traces" if current_traces is not None else "run"),
                  RunTag("harness.drift.status", status),
                  RunTag("mlflow.note.content", f"```\n{report_text}\n```")])
        client.log_text(run.info.run_id, report_text, "drift_report.txt")
        client.set_terminated(run.info.run_id)
        return run.info.run_id
    except Exception as exc:
        raise TrackingError(f"MLflow at {tracking_uri} could not record the drift check: "
                            f"{type(exc).__name__}: {exc}") from exc


# --- reading runs back (compare, drift, baselines) ------------------------------------------------

@dataclass(frozen=True)
class RecordedRun:
    run_id: str
    name: str
    suite: str
    params: dict[str, str]
    metrics: dict[str, float]
    cases: Any  # the per-case table (pandas DataFrame) logged as eval_results.json


def load_run(run_id: str, tracking_uri: str) -> RecordedRun:
    """An eval run as the harness logged it: params, metrics and the per-case table."""
    quiet_mlflow_environment()
    import mlflow
    import pandas as pd

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
        path = Path(client.download_artifacts(run_id, RESULTS_ARTIFACT))
    except Exception as exc:
        raise TrackingError(f"MLflow at {tracking_uri}: cannot read eval run {run_id}: "
                            f"{type(exc).__name__}: {exc}") from None
    table = json.loads(path.read_text(encoding="utf-8"))
    frame = pd.DataFrame(table["data"], columns=table["columns"])
    return RecordedRun(run_id, run.info.run_name or run_id, run.data.tags.get("harness.suite", ""),
                       dict(run.data.params), dict(run.data.metrics), frame)


def read_baseline(ref: str, suite: str, tracking_uri: str, *, model: str, alias: str) -> Baseline | None:
    """The baseline run of `suite`, read back from MLflow: None when `ref` is empty (no baseline
    configured); a Baseline carrying the error when one is configured but cannot be read.
    `ref` is "champion" (the run of `suite` that cleared the version of `model` that `alias`
    points to), "suite=run_id,suite2=run_id2", or one run id."""
    if not ref:
        return None
    try:
        if ref == "champion":
            name, _ = resolve_model_version(model, tracking_uri)  # validates the reference
            run_id = champion_run_id(name, suite, tracking_uri, alias)
        elif "=" in ref:
            pairs = dict(item.split("=", 1) for item in ref.split(",") if "=" in item)
            if suite not in pairs:
                return Baseline(error=f"no baseline run given for suite '{suite}'")
            run_id = pairs[suite].strip()
        else:
            run_id = ref
        recorded = load_run(run_id, tracking_uri)
    except TrackingError as exc:
        return Baseline(error=str(exc))
    if recorded.suite != suite:
        return Baseline(run_id, error=f"run {run_id} is of suite '{recorded.suite}', not '{suite}'")
    return Baseline(run_id, case_values(recorded.cases))
