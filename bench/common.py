"""Shared pieces of the benchmarks: the out-of-process stub and synthetic cases."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_MODEL_CATALOG_URI", "")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.datasets import Case  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, tries: int = 100, pause_s: float = 0.1) -> None:
    """Poll `url` until it answers (a server's readiness probe), at most `tries` times."""
    for _ in range(tries):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(pause_s)


@contextlib.contextmanager
def stub_process(latency_s: float):
    """Base URL of the fast stub running in its own process."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("fast_stub.py")),
                                str(port), str(latency_s)])
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_up(f"{url}/models")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def synthetic_cases(n: int) -> list[Case]:
    return [Case(id=f"case-{i}", messages=({"role": "user", "content": f"What is {i} + {i}?"},),
                 expected=str(2 * i), checks=({"type": "contains", "value": str(2 * i)},))
            for i in range(n)]


def add_workload_arguments(parser) -> None:
    """The benchmark workload: N synthetic cases against the stub answering after a latency,
    at a concurrency, timed over repeats (the issue's 2,000 cases, 100 ms, 64, 3)."""
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)


def check_workload_arguments(parser, args) -> None:
    """Usage errors for a workload that cannot be timed (no cases, a negative latency)."""
    for name in ("cases", "concurrency", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.latency < 0:
        parser.error("--latency must be >= 0")
