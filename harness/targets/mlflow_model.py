"""Targets served by MLflow: a registered model loaded in-process as a pyfunc
(`models:/name@alias`, `models:/name/version`), and a model-serving endpoint
(`mlflow models serve`, Databricks model serving: POST /invocations with a chat payload).

Both take the chat payload `{"messages": [...], "max_tokens": n, "temperature": t}`, which is what
MLflow's chat model flavours accept, and read back a chat-completions body, a bare string, or a
list/`predictions` holding one of those.
"""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from typing import Any, Mapping

from harness.core import Request, Response
from harness.mlflow_env import quiet_mlflow_environment
from harness.config import HarnessConfig
from harness.targets.base import TargetError
from harness.targets.registry import target


def answer_text(output: Any) -> str:
    """The answer in whatever a chat pyfunc or serving endpoint returned."""
    if isinstance(output, Mapping) and "predictions" in output:
        output = output["predictions"]
    if hasattr(output, "tolist"):  # numpy array, pandas Series
        output = output.tolist()
    if isinstance(output, list) and len(output) == 1:
        output = output[0]
    if isinstance(output, str):
        return output
    if isinstance(output, Mapping):
        choices = output.get("choices")
        if choices and isinstance(choices[0], Mapping):
            message = choices[0].get("message") or {}
            if isinstance(message.get("content"), str):
                return message["content"]
        for key in ("content", "text", "output", "answer"):
            if isinstance(output.get(key), str):
                return output[key]
    raise TargetError(f"unrecognised model output: {str(output)[:200]}", retryable=False)


def load_pyfunc(model_uri: str, tracking_uri: str):
    """A registered model (models:/name@alias, models:/name/version) as an MLflow pyfunc."""
    quiet_mlflow_environment()
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.pyfunc.load_model(model_uri)


class _ChatPayload:
    kind = ""

    def __init__(self, *, model: str, temperature: float, max_tokens: int,
                 system_prompt: str | None = None, endpoint: str = ""):
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.endpoint = endpoint

    def describe(self) -> dict[str, Any]:
        return {"target": self.kind, "endpoint": self.endpoint, "model": self.model,
                "temperature": self.temperature, "max_tokens": self.max_tokens,
                "system_prompt": self.system_prompt or ""}

    def payload(self, request: Request) -> dict[str, Any]:
        out = [dict(m) for m in request.messages]
        if self.system_prompt and not any(m["role"] == "system" for m in out):
            out.insert(0, {"role": "system", "content": self.system_prompt})
        return {"messages": out,
                "max_tokens": self.max_tokens if request.max_tokens is None else request.max_tokens,
                "temperature": self.temperature if request.temperature is None else request.temperature}


@target("mlflow-model")
class MlflowModelTarget(_ChatPayload):
    """A registered model, loaded once, asked in a worker thread (pyfunc predict is blocking)."""

    kind = "mlflow-model"

    @classmethod
    def from_config(cls, config: HarnessConfig, *, connect: bool = True, **_: object) -> "MlflowModelTarget":
        return cls(config.model_uri, config.effective_tracking_uri(), connect=connect,
                   temperature=config.temperature, max_tokens=config.max_tokens, system_prompt=config.system_prompt)

    def __init__(self, model_uri: str, tracking_uri: str, *, connect: bool = True, **kwargs: Any):
        super().__init__(model=model_uri, endpoint=model_uri, **kwargs)
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self._model = None
        if connect:
            self._load()

    def _load(self):
        if self._model is None:
            try:
                self._model = load_pyfunc(self.model_uri, self.tracking_uri)
            except Exception as exc:  # an unknown model or alias: a clear error, not a crash later
                raise TargetError(f"cannot load {self.model_uri}: {type(exc).__name__}: {exc}",
                                  retryable=False) from None
        return self._model

    async def acomplete(self, request: Request) -> Response:
        model = self._load()
        started = time.perf_counter()
        try:
            output = await asyncio.to_thread(model.predict, self.payload(request))
        except Exception as exc:
            raise TargetError(f"model predict failed: {type(exc).__name__}: {exc}", retryable=False) from None
        return Response(text=answer_text(output), latency_s=time.perf_counter() - started, model=self.model)

    async def aclose(self) -> None:
        pass


@target("mlflow-serving")
class MlflowServingTarget(_ChatPayload):
    """An MLflow model-serving endpoint: POST {url}/invocations."""

    kind = "mlflow-serving"

    @classmethod
    def from_config(cls, config: HarnessConfig, *, connect: bool = True, **_: object) -> "MlflowServingTarget":
        return cls(config.serving_url, timeout=config.request_timeout, api_key=config.api_key, model=config.model,
                   temperature=config.temperature, max_tokens=config.max_tokens, system_prompt=config.system_prompt)

    def __init__(self, serving_url: str, *, timeout: float, api_key: str | None = None, **kwargs: Any):
        url = serving_url.rstrip("/")
        self.url = url if url.endswith("/invocations") else url + "/invocations"
        super().__init__(model=kwargs.pop("model", None) or "served-model", endpoint=self.url, **kwargs)
        self.timeout = timeout
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._client = None

    async def acomplete(self, request: Request) -> Response:
        import httpx2 as httpx  # installed with openai; a maintained client, not a hand-written one

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        started = time.perf_counter()
        try:
            reply = await self._client.post(self.url, json=self.payload(request), headers=self._headers)
        except httpx.TimeoutException:
            raise TargetError("request timed out", retryable=True) from None
        except httpx.TransportError as exc:
            raise TargetError(f"connection failed: {type(exc).__name__}: {exc}", retryable=True) from None
        if reply.status_code >= 400:
            retryable = reply.status_code in (408, 409, 429) or reply.status_code >= 500
            retry_after = reply.headers.get("retry-after")
            raise TargetError(f"HTTP {reply.status_code}: {reply.text[:300]}", retryable=retryable,
                              retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None)
        try:
            output = json.loads(reply.content)
        except ValueError as exc:
            raise TargetError(f"malformed response: {exc}", retryable=True) from None
        text = answer_text(output)
        usage = output.get("usage") if isinstance(output, dict) else None
        return Response(text=text, latency_s=time.perf_counter() - started, model=self.model,
                        prompt_tokens=(usage or {}).get("prompt_tokens"),
                        completion_tokens=(usage or {}).get("completion_tokens"))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
