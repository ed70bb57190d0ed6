"""Concurrent querying: every case of a suite is asked once, with bounded concurrency, bounded
retries (jittered exponential backoff honouring Retry-After) and a per-request timeout (set on
the client). Every case ends as a Response: an answer, or an explicit error with its reason and
the number of attempts made."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from harness.datasets import Case
from harness.targets.base import Response, Target, TargetError


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay_s)
        # "full jitter": spreads retries of many concurrent callers so they do not stampede
        return rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


async def _ask(target: Target, case: Case, policy: RetryPolicy, rng: random.Random) -> Response:
    started = time.perf_counter()
    attempt = 0
    while True:
        attempt += 1
        try:
            response = await target.acomplete(case.messages)
            return replace(response, attempts=attempt)
        except TargetError as exc:
            if not exc.retryable or attempt > policy.max_retries:
                return Response(text="", latency_s=time.perf_counter() - started,
                                error=exc.reason, attempts=attempt)
            await asyncio.sleep(policy.delay(attempt, exc.retry_after, rng))
        except Exception as exc:  # a bug or an unexpected client fault: recorded, never a pass
            return Response(text="", latency_s=time.perf_counter() - started,
                            error=f"unexpected {type(exc).__name__}: {exc}", attempts=attempt)


async def arun(cases: Sequence[Case], target: Target, *, concurrency: int = 4,
               policy: RetryPolicy = RetryPolicy(),
               on_done: Callable[[Case, Response], None] | None = None,
               seed: int = 0) -> list[Response]:
    """Ask every case; responses come back in the order of `cases`."""
    semaphore = asyncio.Semaphore(concurrency)
    rng = random.Random(seed)

    async def one(case: Case) -> Response:
        async with semaphore:
            response = await _ask(target, case, policy, rng)
        if on_done is not None:
            on_done(case, response)
        return response

    return list(await asyncio.gather(*(one(c) for c in cases)))


def run(cases: Sequence[Case], target: Target, **kwargs) -> list[Response]:
    """Synchronous wrapper around `arun`, closing the target's client at the end."""

    async def main() -> list[Response]:
        try:
            return await arun(cases, target, **kwargs)
        finally:
            await target.aclose()

    return asyncio.run(main())
