"""What one case trace costs MLflow's store, written the ways the harness could write it.

    python bench/trace_write.py [--traces 200] [--repeats 3]

Each way writes --traces traces of synthetic cases (8 scores each, as the default suites'
answers carry: a check, the screens and the measurements) into a fresh SQLite store, in this
process, timed with time.perf_counter; median over --repeats. The ways:

- `in TraceInfo, full`: what the harness does (tracking/case_traces.py): the assessments inside
  the TraceInfo given to `start_trace`, the root span and the model call's span in one
  `log_spans` call for many traces;
- `in TraceInfo, minimal`: the same with the root span only (traces off, replays);
- `in TraceInfo, 2 scores`: fewer assessments per trace, to show what they cost;
- `log_assessment after`: the trace written bare, then one `create_assessment` per assessment,
  as `mlflow.log_assessment` does once a trace has been exported.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import ROOT  # noqa: F401 - puts the project on sys.path

from harness.core import Case, CaseResult, Response, Score
from harness.tracking import case_traces


def rows(n: int, scores: int) -> list[CaseResult]:
    return [CaseResult(Case(id=f"case-{i}", messages=({"role": "user", "content": f"What is {i} + {i}?"},),
                            expected=str(2 * i)),
                       Response(str(2 * i), 0.1, prompt_tokens=10, completion_tokens=1, finish_reason="stop",
                                started_at=time.time()),
                       {f"s{k}": Score(f"s{k}", 1.0, True) for k in range(scores)}) for i in range(n)]


def fresh_store(work: Path, template: Path, name: str):
    import mlflow

    path = work / f"{name}.db"
    shutil.copy(template, path)
    uri = f"sqlite:///{path}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("trace-write", artifact_location=(work / name).as_uri())
    return uri, experiment, client.create_run(experiment).info.run_id


def in_trace_info(uri, experiment, run_id, batch, full) -> float:
    started = time.perf_counter()
    report = case_traces.write_case_traces(uri, experiment, run_id, batch, suite="bench", dataset="d",
                                           target_info={"model": "m"}, judge=None, full=full, limit=len(batch))
    assert report.traced == len(batch) and report.lost == 0
    return time.perf_counter() - started


def assessments_after(uri, experiment, run_id, batch) -> float:
    from mlflow.tracing.client import TracingClient

    client = TracingClient(uri)
    now_ms = int(time.time() * 1000)
    built = [case_traces._case_trace(row, experiment, run_id, suite="bench", dataset="d",
                                     target_info={"model": "m"}, judge=None, full=True, now_ms=now_ms)
             for row in batch]
    started = time.perf_counter()
    spans = []
    for info, trace_spans in built:
        client.start_trace(replace(info, assessments=[]))
        spans += trace_spans
    client.log_spans(experiment, spans)
    for info, _ in built:
        for assessment in info.assessments:
            assessment.trace_id = info.trace_id
            client.store.create_assessment(assessment)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import mlflow

    work = Path(tempfile.mkdtemp(prefix="bench-trace-write-"))
    template = work / "template.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()
    ways = {
        "in TraceInfo, full": lambda store, b: in_trace_info(*store, b, True),
        "in TraceInfo, minimal": lambda store, b: in_trace_info(*store, b, False),
        "in TraceInfo, 2 scores": lambda store, b: in_trace_info(*store, rows(len(b), 2), True),
        "log_assessment after": lambda store, b: assessments_after(*store, b),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    warm = fresh_store(work, template, "warm")
    in_trace_info(*warm, rows(5, 8), True)  # imports and first-use costs, not timed
    for repeat in range(args.repeats):
        for name, way in ways.items():  # interleaved, so drift in the machine hits every way alike
            store = fresh_store(work, template, f"{name.replace(' ', '-').replace(',', '')}-{repeat}")
            times[name].append(way(store, rows(args.traces, 8)))
    shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(times["in TraceInfo, full"])
    print(f"trace write: {args.traces} traces of 8 scores (+ expected_response, case_passed), SQLite, "
          f"median of {args.repeats}:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<24} {median * 1000 / args.traces:6.2f} ms per trace  ({median / base:.2f}x)")


if __name__ == "__main__":
    main()
