"""Fixtures for the harness's own tests: a clean environment, the stub server, and a tiny eval
project (dataset + criteria + suite) that pytester runs against the stub."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stub_server import StubServer, answer_table  # noqa: E402

pytest_plugins = ["pytester"]

from harness.config import settings  # noqa: E402

# Every variable the harness reads: a developer's own OPENAI_API_KEY must not leak into tests.
HARNESS_ENV = sorted({meta["env"] for _, meta in settings() if meta["env"]})


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in HARNESS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_MODEL_CATALOG_URI", "")


MINI_CASES = [
    {"id": "capital", "input": "What is the capital of France?", "expected": "Paris",
     "checks": [{"type": "contains", "value": "Paris"}], "critical": True},
    {"id": "add", "input": "What is 7 + 5?", "expected": "12",
     "checks": [{"type": "regex", "pattern": "\\b12\\b"}]},
    {"id": "json", "input": "Reply with a JSON object with key a set to 1.", "expected": "{\"a\": 1}",
     "checks": [{"type": "json", "schema": {"type": "object", "required": ["a"]}}]},
    {"id": "one-word", "input": "Name the color of grass in one word.", "expected": "Green",
     "checks": [{"type": "exact_match"}, {"type": "length", "max_words": 1}]},
    {"id": "list", "input": "List three fruits.", "expected": "- apple\n- pear\n- plum",
     "checks": [{"type": "list_items", "count": 3}]},
]

GOOD_ANSWERS = {
    "capital of France": "The capital of France is Paris.",
    "7 + 5": "7 + 5 = 12",
    "JSON object": "```json\n{\"a\": 1}\n```",
    "color of grass": "Green",
    "three fruits": "- apple\n- pear\n- plum",
}
BAD_ANSWERS = {
    "capital of France": "The capital of France is Paris.",  # the critical case still passes
    "7 + 5": "7 + 5 = 13",
    "JSON object": "a equals one",
    "color of grass": "It is usually green",
    "three fruits": "apple, pear",
}

MINI_CRITERIA = """
[[mini]]
metric = "case_pass"
aggregate = "rate"
op = ">="
threshold = 0.8

[[mini]]
metric = "error"
aggregate = "rate"
op = "<="
threshold = 0.0
"""

SUITE_TEMPLATE = """
import pytest

pytestmark = pytest.mark.eval_suite("{suite}", dataset="datasets/{suite}.jsonl")


def test_case(eval_case):
    eval_case.check()


def test_gate(eval_suite):
    eval_suite.check()
"""


@pytest.fixture
def stub():
    """Start a stub server: `with stub(script) as server: ...` or `server = stub(script)`."""
    started = []

    def start(script, latency_s: float = 0.0) -> StubServer:
        server = StubServer(script, latency_s).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, created once: a fresh store runs every schema migration
    (~4 s here), a copy of a migrated one costs nothing."""
    import mlflow

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def make_eval_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                      migrated_store: Path):
    """Write an eval project (one suite over `cases`, with `criteria`) in pytester's directory;
    returns a function that points it at a base_url and runs pytest with extra args, in a
    subprocess: the real command line, and no in-process module reloading (which breaks
    mlflow's SQLAlchemy state)."""

    def make(suite: str, cases: list[dict], criteria: str):
        pytester.makefile(".toml", pyproject='[tool.harness]\ncriteria_file = "criteria.toml"\n'
                                             'experiment = "mini-evals"\n'
                                             '[tool.pytest.ini_options]\njunit_family = "xunit1"\n')
        pytester.makefile(".toml", criteria=criteria)
        (pytester.path / "datasets").mkdir(exist_ok=True)
        (pytester.path / "datasets" / f"{suite}.jsonl").write_text(
            "\n".join(json.dumps(c) for c in cases) + "\n")
        pytester.makepyfile(**{f"test_{suite}_suite": SUITE_TEMPLATE.format(suite=suite)})
        store = tmp_path / "store"
        store.mkdir(exist_ok=True)
        shutil.copy(migrated_store, store / "mlflow.db")
        tracking_uri = f"sqlite:///{store / 'mlflow.db'}"

        def run(base_url: str, *args: str):
            monkeypatch.setenv("OPENAI_BASE_URL", base_url)
            monkeypatch.setenv("HARNESS_MODEL", "stub-model")
            monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
            if "HARNESS_MAX_RETRIES" not in os.environ:  # a test of retries sets its own
                monkeypatch.setenv("HARNESS_MAX_RETRIES", "1")
            # other installed plugins are not under test: skip loading them (hypothesis ~1 s)
            return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                                                 "-p", "no:benchmark", "-rx", *args)

        run.tracking_uri = tracking_uri
        run.store = store
        return run

    return make


@pytest.fixture
def eval_project(make_eval_project):
    """The mini quality project: five cases, one of them critical."""
    return make_eval_project("mini", MINI_CASES, MINI_CRITERIA)


__all__ = ["StubServer", "answer_table", "GOOD_ANSWERS", "BAD_ANSWERS", "MINI_CASES"]
