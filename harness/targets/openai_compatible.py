"""Targets spoken to with the official `openai` client: OpenAI, Azure OpenAI, and any
OpenAI-compatible base_url (vLLM, Ollama, llama.cpp, Databricks serving, MLflow AI Gateway)."""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import openai

from harness.targets.base import Response, TargetError


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from model endpoints; fall back to our own backoff


class OpenAICompatibleTarget:
    """One chat-completions endpoint. Retries are the engine's job: the client makes exactly
    one attempt per call (max_retries=0) so every attempt is counted and bounded."""

    def __init__(self, client: openai.AsyncOpenAI, *, kind: str, model: str, temperature: float,
                 max_tokens: int, seed: int | None = None, system_prompt: str | None = None,
                 endpoint: str | None = None):
        self.client = client
        self.kind = kind
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.system_prompt = system_prompt
        self.endpoint = endpoint

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
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": self._messages(messages),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            kwargs["seed"] = self.seed
        started = time.perf_counter()
        try:
            completion = await self.client.chat.completions.create(**kwargs)
        except openai.APITimeoutError:
            raise TargetError("request timed out", retryable=True) from None
        except openai.APIConnectionError as exc:
            raise TargetError(f"connection failed: {exc.__cause__ or exc}", retryable=True) from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            retryable = status in (408, 409, 429) or status >= 500
            detail = exc.message if len(exc.message) < 300 else exc.message[:300] + "…"
            raise TargetError(f"HTTP {status}: {detail}", retryable=retryable,
                              retry_after=_retry_after(exc)) from None
        except openai.APIResponseValidationError as exc:
            raise TargetError(f"malformed response: {exc.message}", retryable=True) from None
        except ValueError as exc:  # e.g. a body that is not JSON
            raise TargetError(f"malformed response: {exc}", retryable=True) from None
        latency = time.perf_counter() - started
        choices = getattr(completion, "choices", None)
        if not choices:
            raise TargetError("malformed response: no choices", retryable=True)
        choice = choices[0]
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None) or ""
        usage = getattr(completion, "usage", None)
        return Response(
            text=text,
            latency_s=latency,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            finish_reason=getattr(choice, "finish_reason", None),
            model=getattr(completion, "model", None),
        )

    async def aclose(self) -> None:
        await self.client.close()
