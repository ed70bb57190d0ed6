"""The user's default path, end to end: `pytest` over one suite of N synthetic cases against the
fast stub (its own process), MLflow logging and per-case traces included, as a user runs it.

    python bench/default_path.py [--cases 2000] [--latency 0.1] [--concurrency 64] [--repeats 3]
                                 [--trace-limit 500 0 ...] [--startup-cases 10]

Each repeat is a fresh project directory and a fresh SQLite store (migrated once, copied, so
schema creation is not timed): a real `python -m pytest` subprocess, timed from launch to exit.
For each trace limit (the default 500, and 0: no traces) it reports the median wall time, the
traces MLflow holds for the run afterwards (read back, with their assessments), and the
overhead per case beyond start-up: (wall(N) - wall(startup cases)) / (N - startup cases) minus
the ideal query time per case (latency / concurrency).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    ROOT,
    add_workload_arguments,
    check_workload_arguments,
    stub_process,
    synthetic_cases,
)

SUITE = """
import pytest

pytestmark = pytest.mark.eval_suite("bench", dataset="datasets/bench.jsonl")


def test_case(eval_case):
    eval_case.check()


def test_gate(eval_suite):
    eval_suite.check()
"""

CRITERIA = """
[[bench]]
metric = "case_pass"
aggregate = "rate"
op = ">="
threshold = 0.0
"""


def make_project(where: Path, n: int, store_template: Path) -> Path:
    (where / "datasets").mkdir(parents=True)
    (where / "evals").mkdir()
    cases = [{"id": c.id, "messages": [dict(m) for m in c.messages], "expected": c.expected,
              "checks": [dict(k) for k in c.checks]} for c in synthetic_cases(n)]
    (where / "datasets" / "bench.jsonl").write_text("\n".join(json.dumps(c) for c in cases) + "\n")
    (where / "evals" / "test_bench.py").write_text(SUITE)
    (where / "criteria.toml").write_text(CRITERIA)
    (where / "pyproject.toml").write_text('[tool.harness]\ncriteria_file = "criteria.toml"\n'
                                          'experiment = "bench-default-path"\n')
    shutil.copy(store_template, where / "mlflow.db")
    return where


def run_once(project: Path, url: str, concurrency: int, trace_limit: int) -> float:
    env = {**os.environ, "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "bench", "HARNESS_MODEL": "bench",
           "HARNESS_CONCURRENCY": str(concurrency), "HARNESS_TRACE_LIMIT": str(trace_limit),
           "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "evals", "-q", "-p", "no:cacheprovider"],
                          cwd=project, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"pytest exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return wall


def traces_in_store(project: Path) -> tuple[int, int]:
    """(traces of the run, feedback assessments on them), read back through MLflow."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bench-default-path")
    (run,) = client.search_runs([experiment.experiment_id])
    traces, token = [], None
    while True:
        page = client.search_traces(locations=[experiment.experiment_id], run_id=run.info.run_id,
                                    include_spans=False, max_results=500, page_token=token)
        traces.extend(page)
        token = page.token
        if not token:
            break
    return len(traces), sum(1 for t in traces for a in t.info.assessments if a.feedback is not None)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_workload_arguments(parser)
    parser.add_argument("--trace-limit", type=int, nargs="+", default=[500, 0])
    parser.add_argument("--startup-cases", type=int, default=10)
    args = parser.parse_args()
    check_workload_arguments(parser, args)
    if not 1 <= args.startup_cases < args.cases:
        parser.error("--startup-cases must be at least 1 and fewer than --cases (the overhead is their difference)")
    import mlflow

    work = Path(tempfile.mkdtemp(prefix="bench-default-path-"))
    template = work / "template.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()
    results = {}
    with stub_process(args.latency) as url:
        for limit in args.trace_limit:
            walls, startups, stored = [], [], None
            for repeat in range(args.repeats):  # a large and a start-up-sized run, alternated
                for n, into in ((args.startup_cases, startups), (args.cases, walls)):
                    project = make_project(work / f"p-{limit}-{repeat}-{n}", n, template)
                    into.append(run_once(project, url, args.concurrency, limit))
                    if n == args.cases:
                        stored = traces_in_store(project)
                print(f"  trace_limit {limit}: repeat {repeat + 1}: {args.cases} cases {walls[-1]:.2f}s, "
                      f"{args.startup_cases} cases {startups[-1]:.2f}s, traces in MLflow {stored[0]}, "
                      f"feedback {stored[1]}", flush=True)
            wall, startup = statistics.median(walls), statistics.median(startups)
            per_case = (wall - startup) / (args.cases - args.startup_cases) * 1000
            ideal = args.latency / args.concurrency * 1000
            results[limit] = (wall, startup, per_case, per_case - ideal, stored)
    shutil.rmtree(work, ignore_errors=True)
    print(f"default path: pytest over {args.cases} cases, stub {args.latency * 1000:.0f} ms, concurrency "
          f"{args.concurrency}, medians of {args.repeats}:")
    for limit, (wall, startup, per_case, overhead, stored) in results.items():
        expected = min(limit, args.cases)
        print(f"  trace_limit {limit:>5}: wall {wall:.2f}s (start-up run of {args.startup_cases}: {startup:.2f}s), "
              f"{per_case:.2f} ms per case beyond start-up, {overhead:.2f} ms above the ideal query time; "
              f"traces in MLflow {stored[0]} of {expected} expected, {stored[1]} feedback assessments")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
