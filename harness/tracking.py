"""Everything MLflow. The only module that imports mlflow, and only lazily, so collecting tests
stays fast and a broken MLflow install cannot break dataset loading or scoring."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from harness.mlflow_env import quiet_mlflow_environment
from harness.version import __version__
from harness.datasets import Dataset
from harness.gates import Verdict
from harness.paths import slug
from harness.results import ResultTable

RESULTS_ARTIFACT = "eval_results.json"
VERDICT_ARTIFACT = "verdict.json"
_MAX_PARAM_LEN = 500  # MLflow rejects longer param values on some stores


class TrackingError(RuntimeError):
    """MLflow could not record the run."""


@lru_cache(maxsize=8)
def git_commit(root: Path) -> str:
    """The checkout's commit (with -dirty), asked once per process: it does not change mid-run."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        # GIT_OPTIONAL_LOCKS=0: never take the index lock of a checkout someone is working in
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5,
                               env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"}).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass(frozen=True)
class TraceWindow:
    """Traces of the calls made since `started_ms` in one experiment: linked to the suite's run
    once it exists (the run is created after the answers are scored)."""

    experiment_id: str
    started_ms: int
    ended_ms: int | None = None  # set when the suite's calls are done: the next suite's are not its

    def closed(self) -> "TraceWindow":
        """The window up to now. Runs are recorded in the background while the next suite is
        queried, so a window must end where its suite's calls ended."""
        from dataclasses import replace

        return replace(self, ended_ms=int(time.time() * 1000) + 1)


def begin_traces(tracking_uri: str, experiment: str) -> TraceWindow:
    """Trace each OpenAI client call (mlflow.openai.autolog) into `experiment`. Raises
    TrackingError when the store is unreachable (the caller goes on without traces)."""
    quiet_mlflow_environment()
    import mlflow

    try:
        mlflow.set_tracking_uri(tracking_uri)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            experiment_id = _experiment_id(mlflow.MlflowClient(), experiment, tracking_uri)
        mlflow.set_experiment(experiment_id=experiment_id)
        mlflow.openai.autolog(silent=True)
    except Exception as exc:
        raise TrackingError(f"cannot trace into MLflow at {tracking_uri}: {type(exc).__name__}: {exc}") from exc
    return TraceWindow(experiment_id, int(time.time() * 1000))


def _link_traces(client, window: TraceWindow, run_id: str) -> int:
    """Link the window's traces to the run; returns how many were found."""
    import mlflow

    mlflow.flush_trace_async_logging()
    trace_ids: list[str] = []
    page_token = None
    window_filter = f"trace.timestamp_ms >= {window.started_ms}"
    if window.ended_ms is not None:
        window_filter += f" AND trace.timestamp_ms < {window.ended_ms}"
    while True:
        page = client.search_traces(
            locations=[window.experiment_id], filter_string=window_filter,
            max_results=500, page_token=page_token)
        trace_ids.extend(t.info.trace_id for t in page)
        page_token = page.token
        if not page_token:
            break
    for start in range(0, len(trace_ids), 100):  # the API links at most 100 per call
        client.link_traces_to_run(trace_ids[start:start + 100], run_id)
    return len(trace_ids)


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


def _experiment_id(client, name: str, tracking_uri: str) -> str:
    """The experiment's id, creating it if needed. With a SQLite store the artifacts live next
    to the database file (not in whatever directory pytest happened to start in)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        if not db.is_absolute():
            db = Path.cwd() / db
        location = (db.parent / "mlruns" / slug(name)).as_uri()
    return client.create_experiment(name, artifact_location=location)


JUDGE_VERDICTS = ("judge_correct", "judge_safe")  # the judge's pass/fail scores, which carry its rationale


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
            "judge_rationale": next((row.scores[n].rationale for n in JUDGE_VERDICTS if n in row.scores), None),
        }
        for name in score_names:
            score = row.scores.get(name)
            record[name] = None if score is None else score.value
        records.append(record)
    return pd.DataFrame.from_records(records)


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


def log_suite_run(*, suite: str, table: ResultTable, verdict: Verdict, dataset: Dataset,
                  target_info: Mapping[str, Any], settings: Mapping[str, Any], tracking_uri: str,
                  experiment: str, root: Path, traces: TraceWindow | None = None,
                  metrics: Mapping[str, float] | None = None,
                  tables: Mapping[str, Any] | None = None, figures: Mapping[str, Any] | None = None) -> str:
    """Record one suite run; returns the run id. Raises TrackingError if MLflow fails.
    `metrics` defaults to the table's summary; callers with more (engine figures) pass all.
    `tables` (name -> DataFrame) and `figures` (file name -> matplotlib Figure) are suite-level
    artifacts, such as the bias suites' per-group table and chart."""
    quiet_mlflow_environment()
    with warnings.catch_warnings():
        # MLflow's own deprecation noise (SQLAlchemy, pandas) is not the user's to act on
        warnings.simplefilter("ignore")
        return _log_suite_run(suite=suite, table=table, verdict=verdict, dataset=dataset,
                              target_info=target_info, settings=settings, tracking_uri=tracking_uri,
                              experiment=experiment, root=root, traces=traces,
                              metrics=dict(metrics) if metrics is not None else table.summary(),
                              tables=tables or {}, figures=figures or {})


def _log_suite_run(*, suite, table, verdict, dataset, target_info, settings, tracking_uri,
                   experiment, root, traces, metrics, tables, figures) -> str:
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
            "mlflow.note.content": f"```\n{verdict.report()}\n```",
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
        if traces is not None:
            linked = _link_traces(client, traces, run_id)
            attempts = sum(row.response.attempts for row in table.rows)
            # every attempt is one client call, so one trace: fewer means traces were dropped
            client.log_batch(run_id, metrics=[Metric("traces/linked", float(linked), now, 0),
                                              Metric("traces/missing", float(max(0, attempts - linked)), now, 0)])
        return run_id
    except Exception as exc:
        raise TrackingError(f"MLflow at {tracking_uri} could not record suite '{suite}': "
                            f"{type(exc).__name__}: {exc}") from exc


class SuiteLogger:
    """Records suite runs (`log_suite_run`) off the pipeline's path, one at a time and in order,
    so the next suite is queried and scored while MLflow writes the last one.

    `processes=True` (replays, which make no model calls and trace nothing) logs from a worker
    process that imports mlflow and opens the store while the first suite is scored: on 2 cores
    the two overlap instead of taking turns on one interpreter lock. Otherwise a thread does it,
    in this process, where the traces of the calls are (it links them to the run)."""

    def __init__(self, tracking_uri: str, *, processes: bool):
        if processes:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_open_store, initargs=(tracking_uri,))
        else:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harness-mlflow")

    def submit(self, **run: Any) -> "Future[str]":
        """`log_suite_run(**run)` later; the future's result is the run id, or raises
        TrackingError (a worker that died becomes one too)."""
        return self._pool.submit(log_suite_run, **run)

    @staticmethod
    def result(future: "Future[str]") -> str:
        try:
            return future.result()
        except TrackingError:
            raise
        except Exception as exc:  # the worker process died, or a result could not be pickled
            raise TrackingError(f"the MLflow logging worker failed: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _open_store(tracking_uri: str) -> None:
    """A logging worker's start: import mlflow and open (migrate-check) the store once."""
    quiet_mlflow_environment()
    try:
        import mlflow

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlflow.MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
    except Exception:  # noqa: S110 - the first log_suite_run reports it, with the suite's name
        pass


# --- the model registry ---------------------------------------------------------------------------

_MODEL_REF = re.compile(r"^(?:models:/)?(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


def resolve_model_version(ref: str, tracking_uri: str) -> tuple[str, str]:
    """(name, version) of `models:/name/version` or `models:/name@alias` (the version the alias
    points to now). Raises TrackingError when the registry has no such version."""
    match = _MODEL_REF.match(ref.strip())
    if match is None:
        raise TrackingError(f"not a registered model version: {ref!r} (models:/name/version or models:/name@alias)")
    quiet_mlflow_environment()
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = match["name"]
    try:
        if match["alias"]:
            return name, str(client.get_model_version_by_alias(name, match["alias"]).version)
        return name, str(client.get_model_version(name, match["version"]).version)
    except Exception as exc:
        raise TrackingError(f"registry at {tracking_uri}: cannot find {ref}: {type(exc).__name__}: {exc}") from None


def promote_model_version(name: str, version: str, *, alias: str, run_ids: Mapping[str, str],
                          tracking_uri: str) -> None:
    """Point `alias` at the version and tag it with the eval runs that cleared it. Called only
    when every gate passed (the plugin decides; this function does not second-guess it)."""
    _record_verdict_on_version(name, version, "passed", run_ids, tracking_uri, alias=alias)


def mark_model_version_failed(name: str, version: str, *, run_ids: Mapping[str, str], tracking_uri: str) -> None:
    """Tag a version that did not pass, so the registry shows why it has no alias."""
    _record_verdict_on_version(name, version, "failed", run_ids, tracking_uri)


def _record_verdict_on_version(name: str, version: str, verdict: str, run_ids: Mapping[str, str],
                               tracking_uri: str, alias: str | None = None) -> None:
    quiet_mlflow_environment()
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        if alias is not None:
            client.set_registered_model_alias(name, alias, version)
        client.set_model_version_tag(name, version, "harness.verdict", verdict)
        client.set_model_version_tag(name, version, "harness.eval_run_ids",
                                     ",".join(f"{suite}={run_id}" for suite, run_id in run_ids.items()))
    except Exception as exc:
        action = f"set alias {alias!r} on" if alias else "tag"
        raise TrackingError(f"registry at {tracking_uri}: could not {action} {name} version {version}: "
                            f"{type(exc).__name__}: {exc}") from None

# --- reading runs back (compare, baselines) -------------------------------------------------------

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


def champion_run_id(model_name: str, suite: str, tracking_uri: str, alias: str = "champion") -> str:
    """The eval run of `suite` that cleared the version the alias points to (recorded on the
    version by promotion)."""
    quiet_mlflow_environment()
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(model_name, alias)
    except Exception as exc:
        raise TrackingError(f"registry at {tracking_uri}: no {model_name}@{alias}: {type(exc).__name__}: {exc}") from None
    runs = dict(item.split("=", 1) for item in version.tags.get("harness.eval_run_ids", "").split(",") if "=" in item)
    if suite not in runs:
        raise TrackingError(f"{model_name}@{alias} (version {version.version}) has no recorded eval run of suite '{suite}'")
    return runs[suite]


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


# --- reading traces back (drift of a deployed model) ----------------------------------------------

_TRACE_PAGE = 500  # traces per search request: spans included, so pages stay a few MB


@dataclass(frozen=True)
class SpanRecord:
    """One span of a trace, as plain data: drift reads shapes without importing mlflow."""

    name: str
    span_type: str
    parent_id: str | None
    start_ns: int
    end_ns: int | None
    inputs: Any
    outputs: Any


@dataclass(frozen=True)
class TraceRecord:
    trace_id: str
    timestamp_ms: int
    state: str  # OK, ERROR or IN_PROGRESS
    spans: tuple[SpanRecord, ...]
    assessments: dict[str, float]  # numeric or boolean feedback by name (e.g. a production scorer)


@dataclass(frozen=True)
class TraceBatch:
    """The traces of one experiment logged in [since_ms, until_ms), newest first."""

    experiment: str
    experiment_id: str
    since_ms: int
    until_ms: int
    traces: list[TraceRecord]
    truncated: bool  # more traces than max_traces were in the window: the newest were kept


def load_traces(experiment: str, tracking_uri: str, *, since_ms: int, until_ms: int, max_traces: int) -> TraceBatch:
    """The newest `max_traces` traces of `experiment` with a start time in [since_ms, until_ms).
    Raises TrackingError when the store or the experiment cannot be read."""
    quiet_mlflow_environment()
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = client.get_experiment_by_name(experiment)
            if found is None:
                raise TrackingError(f"MLflow at {tracking_uri} has no experiment '{experiment}'")
            records: list[TraceRecord] = []
            page_token = None
            truncated = False
            while True:
                # one more than asked for: that is how a truncated window is told apart
                page = client.search_traces(
                    locations=[found.experiment_id],
                    filter_string=f"trace.timestamp_ms >= {int(since_ms)} AND trace.timestamp_ms < {int(until_ms)}",
                    order_by=["timestamp_ms DESC"], max_results=min(_TRACE_PAGE, max_traces + 1 - len(records)),
                    page_token=page_token)
                records.extend(_trace_record(t) for t in page)
                if len(records) > max_traces:
                    records, truncated = records[:max_traces], True
                    break
                page_token = page.token
                if not page_token:
                    break
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(f"MLflow at {tracking_uri}: cannot read traces of experiment '{experiment}': "
                            f"{type(exc).__name__}: {exc}") from None
    return TraceBatch(experiment, found.experiment_id, since_ms, until_ms, records, truncated)


def _trace_record(trace) -> TraceRecord:
    info = trace.info
    spans = tuple(SpanRecord(s.name, str(s.span_type or ""), s.parent_id, s.start_time_ns, s.end_time_ns,
                             s.inputs, s.outputs) for s in trace.data.spans)
    assessments = {}
    for assessment in info.assessments or []:
        value = getattr(assessment, "value", None) if getattr(assessment, "feedback", None) is not None else None
        # an overridden assessment (valid False) was superseded by a later one of the same name
        if getattr(assessment, "valid", True) is not False and isinstance(value, (bool, int, float)):
            assessments[assessment.name] = float(value)
    state = getattr(info.state, "value", str(info.state))
    return TraceRecord(info.trace_id, int(info.timestamp_ms), state, spans, assessments)
