"""Traces read back: a deployed model's traces as plain data (`load_traces`, for drift). The
harness's own per-case traces are written in case_traces.py."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from harness.mlflow_env import quiet_mlflow_environment
from harness.tracking.client import TrackingError


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
