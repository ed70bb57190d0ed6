"""Targets spoken to with the official `openai` client: OpenAI, Azure OpenAI, and any
OpenAI-compatible base_url (vLLM, Ollama, llama.cpp, Databricks serving, MLflow AI Gateway)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from harness.targets.base import Response, TargetError

if TYPE_CHECKING:  # imported on first call: a replay never pays for them
    import openai


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from model endpoints; fall back to our own backoff


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            break
        exc = nxt
    return exc


def _response_from(payload: Any, latency: float) -> Response:
    """The Response in a chat-completions body, or TargetError if the body is not one."""
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise TargetError("malformed response: no choices", retryable=True)
    choice = choices[0]
    message = choice.get("message") or {}
    usage = payload.get("usage") or {}
    return Response(
        text=(message.get("content") if isinstance(message, dict) else None) or "",
        latency_s=latency,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        finish_reason=choice.get("finish_reason"),
        model=payload.get("model"),
    )


class OpenAICompatibleTarget:
    """One chat-completions endpoint. Retries are the engine's job: the client makes exactly
    one attempt per call (max_retries=0) so every attempt is counted and bounded."""

    def __init__(self, client: "openai.AsyncOpenAI | None", *, kind: str, model: str, temperature: float,
                 max_tokens: int, seed: int | None = None, system_prompt: str | None = None,
                 endpoint: str | None = None, traced: bool = False):
        self.client = client
        self.kind = kind
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.system_prompt = system_prompt
        self.endpoint = endpoint
        self.traced = traced

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.kind,
            "endpoint": self.endpoint or "",
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "system_prompt": self.system_prompt or "",
        }

    def _messages(self, messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        out = [dict(m) for m in messages]
        if self.system_prompt and not any(m["role"] == "system" for m in out):
            out.insert(0, {"role": "system", "content": self.system_prompt})
        return out

    async def acomplete(self, messages: Sequence[Mapping[str, str]]) -> Response:
        """One attempt. Returns a Response or raises TargetError."""
        import httpx2 as httpx  # the HTTP library of openai>=3
        import openai

        if self.client is None:
            raise TargetError("this target was built without a client (replay): no model calls",
                              retryable=False)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self._messages(messages),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        started = time.perf_counter()
        try:
            if self.traced:
                # the typed method: the one mlflow.openai.autolog traces
                completion = await self.client.chat.completions.create(**body)
                payload = completion.model_dump()
            else:
                # the same client's generic request (auth, base URL, Azure deployment routing,
                # timeouts and status errors all included) without its typed request and
                # response models: measured here, half the CPU per call (bench/throughput.py)
                raw = await self.client.post("/chat/completions", body=body, cast_to=httpx.Response)
                payload = json.loads(raw.content)
        except openai.APIConnectionError as exc:  # APITimeoutError included
            root = _root_cause(exc)
            if isinstance(exc, openai.APITimeoutError) and isinstance(root, TimeoutError):
                raise TargetError("request timed out", retryable=True) from None
            # the aiohttp transport reports a dropped connection as a connect *timeout*: say
            # what actually happened
            detail = str(root) or type(root).__name__
            raise TargetError(f"connection failed: {detail}", retryable=True) from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            retryable = status in (408, 409, 429) or status >= 500
            detail = exc.message if len(exc.message) < 300 else exc.message[:300] + "…"
            raise TargetError(f"HTTP {status}: {detail}", retryable=retryable,
                              retry_after=_retry_after(exc)) from None
        except openai.APIResponseValidationError as exc:
            raise TargetError(f"malformed response: {exc.message}", retryable=True) from None
        except ValueError as exc:  # a body that is not JSON
            raise TargetError(f"malformed response: {exc}", retryable=True) from None
        return _response_from(payload, time.perf_counter() - started)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.close()
