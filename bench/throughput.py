"""Benchmark 1: 2,000 cases against a stub answering after 100 ms, concurrency 64.
Prints wall time / ideal, where ideal = cases x latency / concurrency. Goal <= 1.15. With
`--latency 0` the ideal is 0 and there is no ratio: the wall time and the ms per case are the
harness's own cost.

    python bench/throughput.py [--cases 2000] [--latency 0.1] [--concurrency 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import (
    add_workload_arguments,
    check_workload_arguments,
    stub_process,
    synthetic_cases,
)

from harness import engine
from harness.config import load_config
from harness.targets import build_target


def main() -> None:
    parser = argparse.ArgumentParser()
    add_workload_arguments(parser)
    args = parser.parse_args()
    check_workload_arguments(parser, args)
    cases = synthetic_cases(args.cases)
    ideal = args.cases * args.latency / args.concurrency
    settings = engine.EngineSettings(concurrency=args.concurrency)
    walls = []
    with stub_process(args.latency) as url:
        # the engine alone: traces are written when the run is recorded, not per call
        # (bench/default_path.py measures the whole path, MLflow and traces included)
        config = load_config(".", env={"OPENAI_BASE_URL": url, "HARNESS_MODEL": "bench",
                                       "HARNESS_TRACES": "false"})
        engine.run(synthetic_cases(args.concurrency), build_target(config), settings)  # warm-up
        for _ in range(args.repeats):
            started = time.perf_counter()
            cpu = time.process_time()
            outcome = engine.run(cases, build_target(config), settings)
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu
            errors = sum(not r.ok for r in outcome.first)
            walls.append(wall)
            print(f"  run: wall {wall:.2f}s, harness CPU {cpu / args.cases * 1000:.2f} ms/case, "
                  f"errors {errors}, calls {outcome.stats.calls}")
            assert errors == 0, "the benchmark must not hide errors"
    median = statistics.median(walls)
    summary = (f"throughput: {args.cases} cases, {args.latency * 1000:.0f} ms latency, concurrency "
               f"{args.concurrency}: median wall {median:.2f}s ({median / args.cases * 1000:.2f} ms/case), "
               f"ideal {ideal:.2f}s")
    if ideal > 0:
        print(f"{summary}, ratio {median / ideal:.3f} (goal <= 1.15)")
    else:  # no latency to overlap: the wall time is all harness (and stub) overhead
        print(f"{summary}; no ratio: the ideal is 0 with no latency (the goal applies to --latency > 0)")


if __name__ == "__main__":
    main()
