"""Benchmark 3: rerun the default suites from the journal (`pytest evals --harness-replay`):
model calls made (goal 0) and wall time (goal < 10 s).

The first, normal run of `pytest evals` against the embedded model fills the journal (skip it
with --journal-ready when one is already there). The replay is timed as a whole command,
pytest start-up, imports and MLflow logging included, into a temporary SQLite store. Model
calls are read from what the run recorded (metric engine/calls), and checked against the
embedded server: replay does not even start it.

    python bench/replay.py [--journal-ready] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pytest_evals(*args: str, store: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "evals", "-q", "-p", "no:cacheprovider",
               "--harness-tracking-uri", f"sqlite:///{store}", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--journal-ready", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="bench-replay-")) / "mlflow.db"
    if not args.journal_ready:
        started = time.perf_counter()
        first = pytest_evals(store=store)
        print(f"first run (real model): exit {first.returncode}, {time.perf_counter() - started:.1f}s")
    walls, calls = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        replay = pytest_evals("--harness-replay", store=store)
        walls.append(time.perf_counter() - started)
        assert replay.returncode in (0, 1), replay.stdout[-2000:] + replay.stderr[-2000:]
        assert "starting the embedded local model server" not in replay.stdout
        record = json.loads((ROOT / ".harness" / "results" / "quality.json").read_text())
        calls.append(int(record["metrics"]["engine/calls"]))
        reused = int(record["metrics"]["engine/reused"])
        assert reused == record["metrics"]["n_cases"], "replay must find every answer"
    print(f"replay: {reused} answers re-scored, model calls {max(calls)} (goal 0); "
          f"median wall {statistics.median(walls):.2f}s over {args.repeats} (goal < 10 s)")


if __name__ == "__main__":
    main()
