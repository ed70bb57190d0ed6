"""The process environment every use of MLflow in the harness sets before importing it (the
tracking package, the MLflow-model target). Imports nothing of the harness."""

from __future__ import annotations

import os


def quiet_mlflow_environment() -> None:
    """Telemetry writes outside the project and the model-catalogue fetch stalls offline. An
    unreachable tracking server must fail in seconds, not after MLflow's default of 7 retries
    with exponential backoff (minutes): the gate reports it and exits non-zero."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_MODEL_CATALOG_URI", "")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # noise in CI logs
