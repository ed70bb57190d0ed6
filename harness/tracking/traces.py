"""Traces: each model call traced into the suite's experiment while it is queried
(`begin_traces`), the window of those traces linked to the suite's run once it exists, and a
deployed model's traces read back as plain data (`load_traces`, for drift)."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

from harness.mlflow_env import quiet_mlflow_environment
from harness.tracking.client import TrackingError, _experiment_id


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
