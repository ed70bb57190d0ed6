"""Per-case traces that carry their evaluation, recorded the way `mlflow.genai.evaluate` records
its rows (mlflow/genai/evaluation/harness.py and genai/utils/trace_utils.py, MLflow 3.17), so
MLflow's evaluation UI shows each case's checks, the expected answer and, against another run,
what changed:

- one trace per case in the run's experiment, its metadata `mlflow.sourceRun` the run's id,
  `mlflow.traceInputs`/`mlflow.traceOutputs` and the request/response previews the JSON of the
  inputs ({"messages": [...]}) and of the answer, like a static-data row of genai.evaluate;
- the case id and suite as trace tags (`harness.case_id`, `harness.suite`);
- the reference as the expectation `expected_response` (source HUMAN, the dataset's name);
- each score as a Feedback named after it: value the pass (bool) for pass/fail checks, the
  number for measurements, rationale the failure reason, source CODE (the check's name) or
  LLM_JUDGE (the judge's model), metadata `mlflow.assessment.sourceRunId` the run's id, span id
  the root span's, as `_log_assessments` sets them;
- `case_passed`, the case's own pass, so the UI filters to the failed cases;
- an endpoint error: the trace in ERROR state, the root span's status the error, and a Feedback
  per check of the case carrying the error (AssessmentError ENDPOINT_ERROR), never a pass.

The assessments go into the TraceInfo before it is written (`start_trace` stores them in the
trace's own transaction) instead of one `log_assessment` call each afterwards, and the spans of
many traces go in one `log_spans` call. With `full` spans a case's trace holds, under its root
span, the model call's span (the request as sent, the answer, token usage); without, the root
span alone ("minimal", as genai.evaluate makes for static data: replays, traces off).

Above `limit` cases a run traces every failed or errored case first, then passed cases chosen by
a hash of their id (the same ones in every run of the suite, so two runs line up), up to the
limit; the per-case table and the metrics always hold every case. Writes are synchronous:
nothing is dropped silently, and a trace the store refused is counted, with the first reason.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from harness.core import CaseResult

CASE_PASSED = "case_passed"  # the feedback holding the case's own pass
EXPECTED_RESPONSE = "expected_response"  # genai.evaluate's name for the reference answer
CASE_ID_TAG = "harness.case_id"
SUITE_TAG = "harness.suite"
_PREVIEW_CHARS = 1000  # MLflow truncates previews on its side too; no need to send megabytes
_SPANS_PER_CALL = 500


@dataclass(frozen=True)
class TraceReport:
    """What became of a run's per-case traces."""

    cases: int
    traced: int  # written, assessments included
    sampled_out: int  # not traced: above the limit (passed cases first)
    lost: int  # the store refused them
    limit: int
    why_lost: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        text = f"{self.traced}/{self.cases} cases traced"
        if self.sampled_out:
            text += (f" ({self.sampled_out} passed cases not traced: above trace_limit={self.limit} a run traces"
                     f" its failed cases first, then passed ones sampled by case id)")
        if self.lost:
            text += f"; {self.lost} LOST: the store refused them ({self.why_lost})"
        return text

    def metrics(self) -> dict[str, float]:
        return {"traces/traced": float(self.traced), "traces/sampled_out": float(self.sampled_out),
                "traces/lost": float(self.lost), "traces/write_s": round(self.seconds, 3)}


def chosen(rows: Sequence[CaseResult], limit: int) -> list[int]:
    """The indices of the rows to trace, in table order: all of them up to `limit`; above it
    the failed and errored rows first, then passed rows ranked by a hash of their id."""
    if limit <= 0:
        return []
    if len(rows) <= limit:
        return list(range(len(rows)))
    failed = [i for i, row in enumerate(rows) if not row.passed]
    passed = sorted((i for i, row in enumerate(rows) if row.passed),
                    key=lambda i: hashlib.sha256(rows[i].case.id.encode()).digest())
    return sorted((failed + passed)[:limit])


def write_case_traces(tracking_uri: str, experiment_id: str, run_id: str, rows: Sequence[CaseResult], *,
                      suite: str, dataset: str, target_info: Mapping[str, Any], judge: str | None,
                      full: bool, limit: int) -> TraceReport:
    """Trace `rows` (up to `limit`) into the experiment, linked to `run_id`; see the module's
    docstring. Raises nothing for a trace the store refuses: the report counts it."""
    from mlflow.entities import TraceData
    from mlflow.tracing.client import TracingClient
    from mlflow.utils.uri import is_databricks_uri

    started = time.perf_counter()
    picked = chosen(rows, limit)
    client = TracingClient(tracking_uri)
    now_ms = int(time.time() * 1000)
    built = [_case_trace(rows[i], experiment_id, run_id, suite=suite, dataset=dataset, target_info=target_info,
                         judge=judge, full=full, now_ms=now_ms) for i in picked]
    lost, why = 0, ""
    written: list[tuple[Any, list]] = []  # (the trace info the store returned, its spans)
    for info, spans in built:
        try:
            written.append((client.start_trace(info), spans))
        except Exception as exc:  # noqa: BLE001 - the store's refusal is data: counted and reported
            lost += 1
            why = why or f"{type(exc).__name__}: {exc}"[:300]
    # spans into the store, many traces per call; a store that takes no spans (Databricks
    # outside Unity Catalog tables) gets each trace's spans as its artifact, as MLflow's own
    # exporter does (mlflow/tracing/export/mlflow_v3.py)
    as_artifacts = 0 if is_databricks_uri(tracking_uri) else len(written)  # from here on
    for start in range(0, as_artifacts, _SPANS_PER_CALL):
        chunk = written[start:start + _SPANS_PER_CALL]
        try:
            client.log_spans(experiment_id, [span for _, spans in chunk for span in spans])
        except NotImplementedError:
            as_artifacts = start
            break
        except Exception as exc:  # noqa: BLE001 - traces without their spans: the UI cannot open them
            lost += len(chunk)
            why = why or f"spans: {type(exc).__name__}: {exc}"[:300]
    for info, spans in written[as_artifacts:]:
        try:
            client._upload_trace_data(info, TraceData(spans))
        except Exception as exc:  # noqa: BLE001 - as above
            lost += 1
            why = why or f"spans: {type(exc).__name__}: {exc}"[:300]
    return TraceReport(len(rows), len(built) - lost, len(rows) - len(built), lost, limit, why,
                       time.perf_counter() - started)


# --- one case's trace --------------------------------------------------------------------------

def _case_trace(row: CaseResult, experiment_id: str, run_id: str, *, suite: str, dataset: str,
                target_info: Mapping[str, Any], judge: str | None, full: bool, now_ms: int):
    from mlflow.entities import TraceInfo, TraceLocation, TraceState

    case, response = row.case, row.response
    otel_trace_id = uuid.uuid4().int
    trace_id = f"tr-{otel_trace_id:032x}"
    root_id = uuid.uuid4().int >> 64
    ended_ms = now_ms if response.started_at is None else int((response.started_at + response.latency_s) * 1000)
    started_ms = ended_ms - int(response.latency_s * 1000)
    inputs = {"messages": [dict(m) for m in case.messages]}
    outputs = response.text if response.ok else None
    spans = [_span(trace_id, otel_trace_id, root_id, None, suite, "CHAIN", started_ms, ended_ms,
                   inputs, outputs, response.error)]
    if full and response.attempts > 0:
        spans.append(_call_span(trace_id, otel_trace_id, root_id, row, target_info, started_ms, ended_ms))
    request = json.dumps(inputs, ensure_ascii=False)
    answer = json.dumps(outputs, ensure_ascii=False)
    metadata = {
        "mlflow.sourceRun": run_id,
        "mlflow.trace_schema.version": "3",
        "mlflow.traceInputs": request[:_PREVIEW_CHARS],
        "mlflow.traceOutputs": answer[:_PREVIEW_CHARS],
    }
    if response.prompt_tokens is not None and response.completion_tokens is not None:
        metadata["mlflow.trace.tokenUsage"] = json.dumps({
            "input_tokens": response.prompt_tokens, "output_tokens": response.completion_tokens,
            "total_tokens": response.prompt_tokens + response.completion_tokens})
    info = TraceInfo(
        trace_id=trace_id,
        trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=started_ms,
        state=TraceState.OK if response.ok else TraceState.ERROR,
        execution_duration=ended_ms - started_ms,
        request_preview=request[:_PREVIEW_CHARS],
        response_preview=(answer if response.ok else json.dumps(response.error))[:_PREVIEW_CHARS],
        client_request_id=case.id,
        trace_metadata=metadata,
        tags={"mlflow.traceName": suite, CASE_ID_TAG: case.id, SUITE_TAG: suite,
              **({"harness.tags": ",".join(case.tags)} if case.tags else {})},
        assessments=_assessments(row, run_id, f"{root_id:016x}", dataset=dataset, judge=judge),
    )
    return info, spans


def _assessments(row: CaseResult, run_id: str, span_id: str, *, dataset: str, judge: str | None) -> list:
    from mlflow.entities import AssessmentError, AssessmentSource, Expectation, Feedback

    metadata = {"mlflow.assessment.sourceRunId": run_id}
    out: list = []
    if row.case.expected is not None:
        out.append(Expectation(name=EXPECTED_RESPONSE, value=row.case.expected, span_id=span_id, metadata=metadata,
                               source=AssessmentSource(source_type="HUMAN", source_id=dataset)))
    failed_by_error: set[str] = set()
    if not row.response.ok:
        # the checks an unanswered case failed carry the error, not a value: never a pass, and
        # MLflow leaves them out of its means instead of counting a 0 the model never earned
        error = AssessmentError(error_code="ENDPOINT_ERROR",
                                error_message=f"no answer after {row.response.attempts} attempt(s): "
                                              f"{row.response.error}")
        failed_by_error = {s.name for s in row.scores.values() if s.passed is False}
        names = failed_by_error or {str(check.get("type", "check")) for check in row.case.checks} or {"answer"}
        for name in sorted(names):
            out.append(Feedback(name=name, error=error, span_id=span_id, metadata=metadata,
                                source=AssessmentSource(source_type="CODE", source_id=name)))
    for score in row.scores.values():
        if score.name in failed_by_error:
            continue
        if score.source == "judge":
            source = AssessmentSource(source_type="LLM_JUDGE", source_id=judge or "judge")
        elif score.source == "human":
            source = AssessmentSource(source_type="HUMAN", source_id=dataset)
        else:
            source = AssessmentSource(source_type="CODE", source_id=score.name)
        value: Any = score.passed if score.passed is not None else score.value
        out.append(Feedback(name=score.name, value=value, rationale=score.rationale or None, span_id=span_id,
                            metadata=metadata, source=source))
    failures = row.failures()
    out.append(Feedback(name=CASE_PASSED, value=row.passed, rationale="; ".join(failures) or None,
                        span_id=span_id, metadata=metadata,
                        source=AssessmentSource(source_type="CODE", source_id="harness")))
    return out


def _span(trace_id: str, otel_trace_id: int, span_id: int, parent_id: int | None, name: str, span_type: str,
          started_ms: int, ended_ms: int, inputs: Any, outputs: Any, error: str | None,
          attributes: Mapping[str, Any] | None = None):
    from mlflow.entities import Span
    from mlflow.tracing.utils import build_otel_context
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Status, StatusCode

    # the attribute encoding of a LiveSpan: every value JSON-serialized (mlflow/entities/span.py)
    encoded = {"mlflow.traceRequestId": json.dumps(trace_id), "mlflow.spanType": json.dumps(span_type),
               "mlflow.spanInputs": json.dumps(inputs, ensure_ascii=False),
               "mlflow.spanOutputs": json.dumps(outputs, ensure_ascii=False)}
    encoded.update({k: json.dumps(v, ensure_ascii=False) for k, v in (attributes or {}).items()})
    status = Status(StatusCode.ERROR, error) if error else Status(StatusCode.OK)
    otel = ReadableSpan(
        name=name, context=build_otel_context(otel_trace_id, span_id),
        parent=build_otel_context(otel_trace_id, parent_id) if parent_id is not None else None,
        start_time=started_ms * 1_000_000, end_time=max(ended_ms, started_ms) * 1_000_000,
        attributes=encoded, status=status, resource=Resource.get_empty())
    return Span(otel)


def _call_span(trace_id: str, otel_trace_id: int, root_id: int, row: CaseResult, target_info: Mapping[str, Any],
               started_ms: int, ended_ms: int):
    """The model call as the OpenAI client made it: the request body and a completion-shaped
    answer (what mlflow.openai.autolog records), its token usage."""
    response = row.response
    messages = [dict(m) for m in row.case.messages]
    system = target_info.get("system_prompt")
    if system and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    request = {"model": target_info.get("model"), "messages": messages,
               "temperature": target_info.get("temperature"), "max_tokens": target_info.get("max_tokens")}
    if target_info.get("seed") is not None:
        request["seed"] = target_info["seed"]
    completion = None
    attributes: dict[str, Any] = {"mlflow.message.format": "openai"}
    if response.ok:
        completion = {"model": response.model or target_info.get("model"),
                      "choices": [{"index": 0, "finish_reason": response.finish_reason,
                                   "message": {"role": "assistant", "content": response.text}}]}
        if response.prompt_tokens is not None and response.completion_tokens is not None:
            usage = {"input_tokens": response.prompt_tokens, "output_tokens": response.completion_tokens,
                     "total_tokens": response.prompt_tokens + response.completion_tokens}
            attributes["mlflow.chat.tokenUsage"] = usage
            completion["usage"] = {"prompt_tokens": response.prompt_tokens,
                                   "completion_tokens": response.completion_tokens,
                                   "total_tokens": usage["total_tokens"]}
    if response.attempts > 1:
        attributes["harness.attempts"] = response.attempts
    return _span(trace_id, otel_trace_id, uuid.uuid4().int >> 64, root_id, "chat.completions", "CHAT_MODEL",
                 started_ms, ended_ms, request, completion, response.error, attributes)
