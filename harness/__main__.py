"""Command line: `python -m harness compare RUN_A RUN_B [--markdown]`."""

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
    args = parser.parse_args(argv)

    from harness.compare import compare_runs
    from harness.tracking import TrackingError

    try:
        comparison = compare_runs(args.baseline, args.candidate, args.tracking_uri)
    except (TrackingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(comparison.markdown() if args.markdown else comparison.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
