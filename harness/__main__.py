"""Command line: `python -m harness compare RUN_A RUN_B [--markdown]` and
`python -m harness drift REFERENCE_RUN CURRENT_RUN` (exit 1 when drift is found)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness")
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser("compare", help="compare two eval runs of one suite, case by case")
    compare.add_argument("baseline", help="MLflow run id of the baseline")
    compare.add_argument("candidate", help="MLflow run id of the candidate")
    compare.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI")
                         or f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    compare.add_argument("--markdown", action="store_true", help="print Markdown (for a CI job summary)")
    watch = commands.add_parser("drift", help="drift between a reference run and a current run of one suite; "
                                              "exit 1 above the thresholds (for a scheduled alert)")
    watch.add_argument("reference", help="MLflow run id of the reference run")
    watch.add_argument("current", help="MLflow run id of the current run")
    watch.add_argument("--tracking-uri", default=compare.get_default("tracking_uri"))
    watch.add_argument("--experiment", default="harness-drift", help="where the drift run is logged")
    watch.add_argument("--psi", type=float, default=0.2, help="PSI above which a distribution drifted")
    watch.add_argument("--rate", type=float, default=0.10, help="absolute change above which a rate drifted")
    watch.add_argument("--text", type=float, default=0.10, help="TF-IDF centroid cosine distance threshold")
    watch.add_argument("--alpha", type=float, default=0.01, help="significance level of the tests")
    args = parser.parse_args(argv)

    from harness.tracking import TrackingError

    if args.command == "drift":
        from harness.drift import drift_runs
        from harness.tracking import log_drift_run

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
        print(report.text())
        print(f"logged as MLflow run {run_id} in experiment '{args.experiment}'")
        return 1 if report.drifted else 0

    from harness.compare import compare_runs

    try:
        comparison = compare_runs(args.baseline, args.candidate, args.tracking_uri)
    except (TrackingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(comparison.markdown() if args.markdown else comparison.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
