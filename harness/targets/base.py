"""The protocol a target implements, and the error one attempt may raise."""

from __future__ import annotations

from typing import Any, Mapping, Protocol

from harness.core import Request, Response

__all__ = ["Request", "Response", "Target", "TargetError"]


class TargetError(Exception):
    """One attempt failed. `retryable` faults (429, 5xx, timeouts, dropped connections) may
    succeed on a later attempt; `retry_after` is the server's Retry-After, in seconds."""

    def __init__(self, reason: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


class Target(Protocol):
    """Something that answers chat requests. One call is one attempt: it returns a Response or
    raises TargetError; retrying is the engine's job. A Request's settings that are None are
    the target's own (its configuration, which `describe()` reports)."""

    def describe(self) -> Mapping[str, Any]:
        """Non-secret facts about the target, logged as run params (kind, model, base_url ...)."""
        ...

    async def acomplete(self, request: Request) -> Response: ...

    async def aclose(self) -> None: ...
