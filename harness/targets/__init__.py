"""How a model is asked. `build_target` turns the config into a Target."""

from __future__ import annotations

import os

from harness.config import ConfigError, HarnessConfig
from harness.core import Response
from harness.targets.base import Target, TargetError

__all__ = ["Response", "Target", "TargetError", "build_target"]

# The local llama.cpp server ignores the key, but the openai client insists on one.
_PLACEHOLDER_KEY = "not-needed"


def openai_endpoint(base_url: str | None) -> str:
    """The base URL the openai client will use, as it normalizes it (OPENAI_BASE_URL, then the
    public API; one trailing slash), without importing openai."""
    url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    return url.rstrip("/") + "/"


def build_target(config: HarnessConfig, *, local_base_url: str | None = None,
                 local_model: str | None = None, connect: bool = True,
                 structured: str | None = None, local_identity: str | None = None) -> "Target":
    """The configured target. For kind "local", `local_base_url`/`local_model`/`local_identity`
    come from the embedded server (the plugin owns its lifetime). `structured` names the per-request
    response_formats the target will be given (`use_response_formats`; the judge's verdict
    schemas): it becomes part of the target's identity. OpenAI-compatible kinds only.

    `connect=False` (replay) gives a target that describes itself exactly as the connected one
    would, so journal keys match, but has no client and never imports openai (~1 s saved)."""
    from harness.targets.openai_compatible import OpenAICompatibleTarget

    kind = config.resolved_target()
    if structured and kind not in ("azure", "openai", "local"):
        raise ConfigError(f"the {kind} target cannot send a response_format")
    if kind == "mlflow-model":
        from harness.targets.mlflow_model import MlflowModelTarget

        return MlflowModelTarget(config.model_uri, config.effective_tracking_uri(), connect=connect,
                                 temperature=config.temperature, max_tokens=config.max_tokens,
                                 system_prompt=config.system_prompt)
    if kind == "mlflow-serving":
        from harness.targets.mlflow_model import MlflowServingTarget

        return MlflowServingTarget(config.serving_url, timeout=config.request_timeout, api_key=config.api_key,
                                   model=config.model, temperature=config.temperature,
                                   max_tokens=config.max_tokens, system_prompt=config.system_prompt)
    if kind not in ("azure", "openai", "local"):
        raise ConfigError(f"unknown target kind {kind!r}")
    if kind == "openai" and not config.model:
        raise ConfigError("the openai target needs a model name: HARNESS_MODEL or --harness-model")
    if kind == "local" and local_base_url is None:
        raise ConfigError("the local target needs the embedded server's base_url")
    if kind == "azure":
        model = config.model or config.azure_deployment
        endpoint = f"{config.azure_endpoint} (deployment {config.azure_deployment}, api {config.api_version})"
    elif kind == "openai":
        model = config.model
        endpoint = openai_endpoint(config.base_url)
    else:
        model = config.model or local_model or "local"
        endpoint = local_identity or "embedded llama-server (127.0.0.1)"
    client = _client(config, kind, local_base_url) if connect else None
    return OpenAICompatibleTarget(
        client, kind=kind, model=model, temperature=config.temperature, max_tokens=config.max_tokens,
        seed=config.seed, system_prompt=config.system_prompt, endpoint=endpoint,
        traced=config.traces and not config.replay, structured=structured)


def _client(config: HarnessConfig, kind: str, local_base_url: str | None):
    import openai  # lazy: importing openai costs ~1 s, collection and replay should not pay it

    # The client's aiohttp transport (openai[aiohttp]): measured here it costs about half the
    # CPU per call of the default httpx transport, which bounds throughput on small machines.
    common = dict(timeout=config.request_timeout, max_retries=0,
                  http_client=openai.DefaultAioHttpClient(timeout=config.request_timeout))
    try:
        if kind == "azure":
            return openai.AsyncAzureOpenAI(
                azure_endpoint=config.azure_endpoint, azure_deployment=config.azure_deployment,
                api_version=config.api_version, api_key=config.azure_api_key, **common)
        if kind == "openai":
            return openai.AsyncOpenAI(base_url=config.base_url, api_key=config.api_key or _PLACEHOLDER_KEY,
                                      **common)
        return openai.AsyncOpenAI(base_url=local_base_url, api_key=_PLACEHOLDER_KEY, **common)
    except openai.OpenAIError as exc:  # e.g. Azure without key or token
        raise ConfigError(f"cannot build the {kind} client: {exc}") from None

