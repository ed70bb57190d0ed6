"""What every target returns, and the protocol a target implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence


@dataclass(frozen=True)
class Response:
    """The model's answer to one case. An error is data, not a crash: `error` says why there is
    no usable answer and `text` is then empty."""

    text: str
    latency_s: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    model: str | None = None
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


class TargetError(Exception):
    """One attempt failed. `retryable` faults (429, 5xx, timeouts, dropped connections) may
    succeed on a later attempt; `retry_after` is the server's Retry-After, in seconds."""

    def __init__(self, reason: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


class Target(Protocol):
    """Something that answers chat messages. One call is one attempt: it returns a Response or
    raises TargetError; retrying is the engine's job."""

    def describe(self) -> Mapping[str, Any]:
        """Non-secret facts about the target, logged as run params (kind, model, base_url ...)."""
        ...

    async def acomplete(self, messages: Sequence[Mapping[str, str]]) -> Response: ...

    async def aclose(self) -> None: ...
