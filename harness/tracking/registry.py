"""The MLflow model registry: which version a `models:/` reference names, the verdict recorded
on a version (the promotion alias when every gate passed), and the eval runs that cleared the
version an alias points to."""

from __future__ import annotations

import re
from typing import Mapping

from harness.mlflow_env import quiet_mlflow_environment
from harness.tracking.client import TrackingError

_MODEL_REF = re.compile(r"^(?:models:/)?(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


def resolve_model_version(ref: str, tracking_uri: str) -> tuple[str, str]:
    """(name, version) of `models:/name/version` or `models:/name@alias` (the version the alias
    points to now). Raises TrackingError when the registry has no such version."""
    match = _MODEL_REF.match(ref.strip())
    if match is None:
        raise TrackingError(f"not a registered model version: {ref!r} (models:/name/version or models:/name@alias)")
    quiet_mlflow_environment()
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = match["name"]
    try:
        if match["alias"]:
            return name, str(client.get_model_version_by_alias(name, match["alias"]).version)
        return name, str(client.get_model_version(name, match["version"]).version)
    except Exception as exc:
        raise TrackingError(f"registry at {tracking_uri}: cannot find {ref}: {type(exc).__name__}: {exc}") from None


def promote_model_version(name: str, version: str, *, alias: str, run_ids: Mapping[str, str],
                          tracking_uri: str) -> None:
    """Point `alias` at the version and tag it with the eval runs that cleared it. Called only
    when every gate passed (the plugin decides; this function does not second-guess it)."""
    _record_verdict_on_version(name, version, "passed", run_ids, tracking_uri, alias=alias)


def mark_model_version_failed(name: str, version: str, *, run_ids: Mapping[str, str], tracking_uri: str) -> None:
    """Tag a version that did not pass, so the registry shows why it has no alias."""
    _record_verdict_on_version(name, version, "failed", run_ids, tracking_uri)


def _record_verdict_on_version(name: str, version: str, verdict: str, run_ids: Mapping[str, str],
                               tracking_uri: str, alias: str | None = None) -> None:
    quiet_mlflow_environment()
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        if alias is not None:
            client.set_registered_model_alias(name, alias, version)
        client.set_model_version_tag(name, version, "harness.verdict", verdict)
        client.set_model_version_tag(name, version, "harness.eval_run_ids",
                                     ",".join(f"{suite}={run_id}" for suite, run_id in run_ids.items()))
    except Exception as exc:
        action = f"set alias {alias!r} on" if alias else "tag"
        raise TrackingError(f"registry at {tracking_uri}: could not {action} {name} version {version}: "
                            f"{type(exc).__name__}: {exc}") from None


def champion_run_id(model_name: str, suite: str, tracking_uri: str, alias: str = "champion") -> str:
    """The eval run of `suite` that cleared the version the alias points to (recorded on the
    version by promotion)."""
    quiet_mlflow_environment()
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(model_name, alias)
    except Exception as exc:
        raise TrackingError(f"registry at {tracking_uri}: no {model_name}@{alias}: {type(exc).__name__}: {exc}") from None
    runs = dict(item.split("=", 1) for item in version.tags.get("harness.eval_run_ids", "").split(",") if "=" in item)
    if suite not in runs:
        raise TrackingError(f"{model_name}@{alias} (version {version.version}) has no recorded eval run of suite '{suite}'")
    return runs[suite]
