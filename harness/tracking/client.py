"""Opening the MLflow store: the error every tracking call raises, the experiment a run goes
into, and the checkout's commit recorded on it. mlflow is imported lazily, by the callers."""

from __future__ import annotations

import os
import subprocess
import warnings
from functools import lru_cache
from pathlib import Path

from harness.mlflow_env import quiet_mlflow_environment
from harness.paths import slug


class TrackingError(RuntimeError):
    """MLflow could not record the run."""


@lru_cache(maxsize=8)
def git_commit(root: Path) -> str:
    """The checkout's commit (with -dirty), asked once per process: it does not change mid-run."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        # GIT_OPTIONAL_LOCKS=0: never take the index lock of a checkout someone is working in
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5,
                               env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"}).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _experiment_id(client, name: str, tracking_uri: str) -> str:
    """The experiment's id, creating it if needed. With a SQLite store the artifacts live next
    to the database file (not in whatever directory pytest happened to start in)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        if not db.is_absolute():
            db = Path.cwd() / db
        location = (db.parent / "mlruns" / slug(name)).as_uri()
    return client.create_experiment(name, artifact_location=location)


def _open_store(tracking_uri: str) -> None:
    """A logging worker's start: import mlflow and open (migrate-check) the store once."""
    quiet_mlflow_environment()
    try:
        import mlflow

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlflow.MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
    except Exception:  # noqa: S110 - the first log_suite_run reports it, with the suite's name
        pass
