"""Benchmark 4: peak memory for 100,000 cases (goal < 1 GB).

The whole pipeline runs in this process: engine (with the journal) -> scorers -> result table ->
gate -> local results file -> MLflow run (metrics, per-case table, dataset input) in a temporary
SQLite store. The target answers in-process with no HTTP: the HTTP client's memory is bounded by
the concurrency, not by the number of cases, and 100,000 real HTTP calls would take minutes of
CPU here without telling anything more about memory.

    python bench/memory.py [--cases 100000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from common import synthetic_cases

from harness import engine, tracking
from harness.datasets import Dataset, digest_cases
from harness.gates import Criterion, evaluate
from harness.journal import Journal
from harness.results import ResultTable
from harness.scorers import score_case
from harness.core import Response


class InstantTarget:
    """Answers every question with the right sum, at once."""

    def describe(self):
        return {"target": "instant", "model": "instant", "max_tokens": 16}

    async def acomplete(self, request):
        a = int(request.messages[-1]["content"].split()[2])
        return Response(text=f"The answer is {2 * a}.", latency_s=0.0, prompt_tokens=8, completion_tokens=5)

    async def aclose(self):
        pass


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=100_000)
    args = parser.parse_args()
    import mlflow  # noqa: F401  (counted in the baseline: every run imports it)
    from rouge_score import rouge_scorer  # noqa: F401

    baseline = peak_mb()
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    started = time.perf_counter()
    cases = synthetic_cases(args.cases)
    dataset = Dataset("synthetic", work / "synthetic.jsonl", tuple(cases), digest_cases(cases))
    outcome = engine.run(cases, InstantTarget(), engine.EngineSettings(concurrency=64),
                         journal=Journal(work / "journal.jsonl"))
    after_engine = peak_mb()
    table = ResultTable.build(cases, outcome.first, score_case)
    verdict = evaluate("synthetic", table, [Criterion("case_pass", "rate", ">=", 0.99)])
    after_scoring = peak_mb()
    tracking.write_local_record(work / "results", suite="synthetic", table=table, verdict=verdict,
                                dataset=dataset, target_info={"target": "instant"})
    run_id = tracking.log_suite_run(
        suite="synthetic", table=table, verdict=verdict, dataset=dataset,
        target_info={"target": "instant", "model": "instant"}, settings={},
        tracking_uri=f"sqlite:///{work / 'mlflow.db'}", experiment="bench-memory", root=work).run_id
    elapsed = time.perf_counter() - started
    assert verdict.passed and len(table) == args.cases and run_id
    print(f"memory: {args.cases} cases in {elapsed:.0f}s; peak RSS {peak_mb():.0f} MB "
          f"(baseline after imports {baseline:.0f} MB; after querying {after_engine:.0f} MB, "
          f"after scoring {after_scoring:.0f} MB) (goal < 1024 MB)")


if __name__ == "__main__":
    main()
