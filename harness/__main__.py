"""Command line: `python -m harness build-llama` (the embedded model's server, once per machine),
`python -m harness train-classifiers` (retrain the shipped answer-outcome and input-guard
models from their labelled data),
`python -m harness compare BASELINE_RUN CANDIDATE_RUN [--markdown] [--report-only]` (exits 1 when
a metric the criteria read regressed significantly, 0 otherwise or with --report-only, 2 on an
error),
`python -m harness drift REFERENCE_RUN CURRENT_RUN` and
`python -m harness drift REFERENCE_RUN --traces-experiment NAME [--since 24h] [--until TIME]`
(a deployed model's traces as the current side). drift exits 0 without drift, 1 on drift, 2 on
an error and 3 when the trace window is too small to test (it fails closed)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness")
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser("compare", help="compare two eval runs of one suite, case by case; exit 1 "
                                                  "when a metric the suite's criteria read regressed significantly",
                                  epilog="exit status: 0 no significant regression of a criterion metric (or "
                                         "--report-only), 1 such a regression (p < 0.05, the worse way for its "
                                         "criterion), 2 error. Without a readable criteria file only the pass "
                                         "rate counts, and the report says so.")
    compare.add_argument("baseline", help="MLflow run id of the baseline")
    compare.add_argument("candidate", help="MLflow run id of the candidate")
    compare.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI")
                         or f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    compare.add_argument("--markdown", action="store_true", help="print Markdown (for a CI job summary)")
    compare.add_argument("--criteria", metavar="PATH", help="the criteria file (default: the project's "
                         "criteria_file, HARNESS_CRITERIA or [tool.harness] in ./pyproject.toml)")
    compare.add_argument("--report-only", action="store_true",
                         help="print the comparison and exit 0, whatever regressed")
    watch = commands.add_parser("drift", help="drift between a reference run and a current run of one suite; "
                                              "exit 1 above the thresholds (for a scheduled alert)",
                                epilog="exit status: 0 no drift, 1 drift, 2 error, 3 trace window too small "
                                       "to test (fails closed)")
    watch.add_argument("reference", help="MLflow run id of the reference run")
    watch.add_argument("current", nargs="?", help="MLflow run id of the current run (or use --traces-experiment)")
    window = watch.add_argument_group("a window of traces as the current side (instead of CURRENT)")
    window.add_argument("--traces-experiment", metavar="NAME",
                        help="MLflow experiment the deployed model logs its traces to")
    window.add_argument("--since", metavar="TIME", help="start of the window: a duration back from now "
                        "(24h, 90m, 7d) or an ISO date-time (naive = UTC); default 24h")
    window.add_argument("--until", metavar="TIME", help="end of the window (excluded), same forms; default now")
    window.add_argument("--max-traces", type=int, metavar="N", help="read at most the N newest traces; default 5000")
    window.add_argument("--latency-psi", type=float, metavar="PSI",
                        help="alert on a latency shift above this PSI (default: latency is reported only)")
    watch.add_argument("--tracking-uri", default=compare.get_default("tracking_uri"))
    watch.add_argument("--experiment", default="harness-drift", help="where the drift run is logged")
    watch.add_argument("--psi", type=float, default=0.2, help="PSI above which a distribution drifted")
    watch.add_argument("--rate", type=float, default=0.10, help="absolute change above which a rate drifted")
    watch.add_argument("--text", type=float, default=0.10, help="TF-IDF centroid cosine distance threshold")
    watch.add_argument("--alpha", type=float, default=0.01, help="significance level of the tests")
    commands.add_parser("train-classifiers", help="retrain the answer-outcome scorer and the input guard from "
                                                  "their labelled data in harness/scorers/data (deterministic)")
    build = commands.add_parser("build-llama", help="build the embedded model's pinned, portable llama-server "
                                                    "(once per machine; the README's first command runs it)")
    build.add_argument("--force", action="store_true", help="rebuild even when the pinned build is installed")
    build.add_argument("--jobs", type=int, help="parallel compile jobs (default: the number of cores)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "train-classifiers":
        return _train_classifiers()
    if args.command == "build-llama":
        return _build_llama(args)
    if args.command == "drift":
        return _drift(parser, args)
    return _compare(args)


def _train_classifiers() -> int:
    from harness.training import train_all

    for path in train_all():
        print(f"wrote {path}")
    return 0


def _build_llama(args: argparse.Namespace) -> int:
    from harness.targets.llama_build import BuildError, build

    try:
        build(jobs=args.jobs, force=args.force, say=lambda line: print(f"[harness] {line}", flush=True))
    except BuildError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 3
    return 0


def _drift(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if (args.traces_experiment is None) == (args.current is None):
        parser.error("drift: give either CURRENT (a run id) or --traces-experiment NAME, not both or neither")
    if args.traces_experiment is None and (
            args.since or args.until or args.max_traces is not None or args.latency_psi is not None):
        parser.error("drift: --since, --until, --max-traces and --latency-psi apply to --traces-experiment only")
    if args.max_traces is not None and args.max_traces < 1:
        parser.error("drift: --max-traces must be at least 1")
    if args.traces_experiment is not None:
        return _drift_traces(args)
    from harness.drift import drift_runs
    from harness.tracking import TrackingError, log_drift_run

    try:
        report = drift_runs(args.reference, args.current, args.tracking_uri, alpha=args.alpha,
                            psi_threshold=args.psi, rate_threshold=args.rate, text_threshold=args.text)
        run_id = log_drift_run(suite=report.suite, reference_run_id=args.reference,
                               current_run_id=args.current, metrics=report.metrics(),
                               report_text=report.text(), tracking_uri=args.tracking_uri,
                               experiment=args.experiment)
    except (TrackingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _drift_verdict(report, run_id, args.experiment)


def _compare(args: argparse.Namespace) -> int:
    """Print the comparison; exit 1 when a criterion metric regressed significantly (unless
    --report-only), 2 when the runs cannot be read or compared."""
    from harness.compare import compare_runs, project_criteria
    from harness.tracking import TrackingError

    try:
        comparison = compare_runs(args.baseline, args.candidate, args.tracking_uri,
                                  criteria=project_criteria(path=args.criteria))
    except (TrackingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(comparison.markdown() if args.markdown else comparison.text())
    regressed = [r.delta.metric for r in comparison.regressions]
    if not regressed:
        print("exit 0: no criterion metric regressed significantly")
        return 0
    why = f"{', '.join(regressed)} regressed significantly (criterion metrics)"
    if args.report_only:
        print(f"exit 0 (--report-only): {why}")
        return 0
    print(f"exit 1: {why}")
    return 1


def _drift_verdict(report, run_id: str, experiment: str) -> int:
    """Print a logged drift check; exit 1 on drift (the scheduled alert), 0 otherwise."""
    print(report.text())
    print(f"logged as MLflow run {run_id} in experiment '{experiment}'")
    return 1 if report.drifted else 0


def _drift_traces(args: argparse.Namespace) -> int:
    """Reference run vs a window of traces; the check is logged even when the window is too small,
    so a dashboard of drift checks shows the gap."""
    import time

    from harness.drift import (
        DEFAULT_SINCE,
        EXIT_INSUFFICIENT_WINDOW,
        MAX_WINDOW_TRACES,
        InsufficientWindow,
        drift_traces,
        parse_time,
    )
    from harness.tracking import TrackingError, log_drift_run

    now_ms = int(time.time() * 1000)
    try:
        since_ms = parse_time(args.since or DEFAULT_SINCE, now_ms)
        until_ms = parse_time(args.until, now_ms) if args.until else now_ms
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if since_ms >= until_ms:
        print("error: the window is empty by construction: --since is not before --until", file=sys.stderr)
        return 2
    common = {"reference_run_id": args.reference, "current_run_id": None, "tracking_uri": args.tracking_uri,
              "experiment": args.experiment}
    try:
        try:
            report = drift_traces(args.reference, args.traces_experiment, args.tracking_uri, since_ms=since_ms,
                                  until_ms=until_ms, max_traces=args.max_traces or MAX_WINDOW_TRACES,
                                  alpha=args.alpha, psi_threshold=args.psi, rate_threshold=args.rate,
                                  text_threshold=args.text, latency_threshold=args.latency_psi)
        except InsufficientWindow as exc:
            run_id = log_drift_run(suite=exc.suite, metrics=exc.window.metrics(), report_text=str(exc),
                                   current_traces=exc.window.params(), status="insufficient_window", **common)
            print(f"error: {exc}", file=sys.stderr)
            print(f"logged as MLflow run {run_id} in experiment '{args.experiment}'", file=sys.stderr)
            return EXIT_INSUFFICIENT_WINDOW
        window = report.window
        run_id = log_drift_run(suite=report.suite, metrics={**report.metrics(), **window.metrics()},
                               report_text=report.text(), current_traces=window.params(), **common)
    except (TrackingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _drift_verdict(report, run_id, args.experiment)


if __name__ == "__main__":
    sys.exit(main())
