"""Fixtures for the harness's own tests: a clean environment, the stub server, and a tiny eval
project (dataset + criteria + suite) that pytester runs against the stub. Shared data and helpers
are modules of their own (mini_project, stub_server), imported by name, not from here."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from mini_project import MINI_CASES, MINI_CRITERIA, SUITE_TEMPLATE  # noqa: E402
from stub_server import StubServer  # noqa: E402

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

