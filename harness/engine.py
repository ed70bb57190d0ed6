"""Concurrent querying.

Every case of a suite is asked once per sample by a fixed pool of workers, within:
- a concurrency limit that adapts (AIMD): halved on each 429, grown by one after a window of
  successes, never above the configured maximum;
- optional rate limits in requests and tokens per minute (token buckets);
- retries budgeted by time per case (jittered exponential backoff that honours Retry-After,
  capped by the run's deadline): a flaky endpoint is retried until it answers, not a fixed
  small number of times;
- a per-request timeout (on the client) and an overall deadline;
- a circuit breaker that tells a dead endpoint from a flaky one: after N failed attempts in a
  row with no success for a window of seconds, the endpoint is taken as down and the remaining
  cases end at once as errors instead of hammering it. A flaky endpoint's successes keep it
  closed. One breaker may be shared by the suites of a session, so a dead endpoint costs the
  first suite its window and every later suite one attempt.
Every case ends as a Response: an answer, or an explicit error with its reason and the number of
attempts. Finished cases go to the journal as they complete; a rerun reuses stored answers and
asks only for what is missing; replay asks nothing at all.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from harness.core import Case, Generation, Request, Response
from harness.journal import Journal, request_key
from harness.targets.base import Target, TargetError

MAX_RETRY_AFTER_S = 120.0  # a Retry-After beyond this is taken as a misconfigured server


@dataclass(frozen=True)
class EngineSettings:
    concurrency: int = 8
    # a case's transient faults are retried for this many seconds from its first attempt (the
    # run's deadline caps it); `max_retries`, when set, also caps the number of retries
    retry_budget_s: float = 120.0
    max_retries: int | None = None
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    deadline_s: float | None = None  # for the whole suite
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    adaptive: bool = True
    breaker_after: int = 10  # failed attempts in a row (no success between) ...
    breaker_window_s: float = 10.0  # ... and no success for this long: the endpoint is down
    samples: int = 1

    def backoff(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempts count from 1)."""
        if retry_after is not None:
            # the server knows best; the case's budget and the run's deadline bound the wait
            return min(retry_after, MAX_RETRY_AFTER_S)
        # "full jitter": spreads the retries of many concurrent callers so they do not stampede
        return rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


class Breaker:
    """The endpoint's health as the engine sees it: open (down) once `after` attempts in a row
    failed and nothing succeeded for `window_s` seconds. Bursts of faults from a flaky or
    briefly overloaded endpoint do not open it; a refused connection on every attempt does,
    within the window. Shared across runs, a new run begins closed but remembers: if its first
    attempt fails too, it opens again at once."""

    def __init__(self, after: int = 10, window_s: float = 10.0):
        self.after = after
        self.window_s = window_s
        self.failures = 0
        self.last_success = time.monotonic()
        self.reason: str | None = None

    def begin_run(self) -> None:
        self.reason = None

    def succeeded(self) -> None:
        self.failures = 0
        self.last_success = time.monotonic()
        self.reason = None

    def failed(self, error: str) -> bool:
        """Count one failed attempt; True when this one opened the breaker."""
        self.failures += 1
        quiet = time.monotonic() - self.last_success
        if self.reason is None and self.failures >= self.after and quiet >= self.window_s:
            self.reason = (f"not attempted: the endpoint failed {self.failures} attempts in a row and "
                           f"answered nothing for {quiet:.0f}s (last: {error})")
            return True
        return False


@dataclass(frozen=True)
class RunStats:
    calls: int  # attempts sent to the endpoint
    reused: int  # answers taken from the journal
    elapsed_s: float
    final_concurrency: int
    torn_journal_lines: int = 0
    breaker_opened: bool = False


@dataclass(frozen=True)
class RunOutcome:
    responses: list[list[Response]]  # [case][sample]
    stats: RunStats

    @property
    def first(self) -> list[Response]:
        return [samples[0] for samples in self.responses]


class AdaptiveLimit:
    """At most `limit` holders at once; AIMD: halve on overload, +1 after `limit` successes."""

    def __init__(self, maximum: int, adaptive: bool):
        self.maximum = maximum
        self.limit = maximum
        self.adaptive = adaptive
        self._in_use = 0
        self._successes = 0
        self._cond = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self._in_use < self.limit)
            self._in_use += 1

    async def release(self) -> None:
        async with self._cond:
            self._in_use -= 1
            self._cond.notify_all()

    async def overloaded(self) -> None:
        if self.adaptive:
            async with self._cond:
                self.limit = max(1, self.limit // 2)
                self._successes = 0

    async def succeeded(self) -> None:
        if self.adaptive and self.limit < self.maximum:
            async with self._cond:
                self._successes += 1
                if self._successes >= self.limit:
                    self.limit += 1
                    self._successes = 0
                    self._cond.notify_all()


class RateLimiter:
    """Token bucket of `per_minute` units, burst of one second's worth. Callers may go into
    debt (a request larger than the burst) and then wait for it to be repaid."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, amount: float = 1.0) -> None:
        async with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            self.tokens -= amount
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            await asyncio.sleep(wait)


def identity(target: Target, generation: Generation = Generation()) -> dict:
    """What a run asks: the target as it describes itself, with the run's own generation
    settings in place of the target's. It keys the run's journal and is logged with its run."""
    return {**target.describe(), **generation.overrides()}


def _estimated_tokens(case: Case, max_tokens: int) -> float:
    # ~4 characters per token for English; the completion budget counts in full
    return sum(len(m["content"]) for m in case.messages) / 4 + max_tokens


class _Run:
    def __init__(self, target: Target, settings: EngineSettings, seed: int, breaker: Breaker | None = None,
                 generation: Generation = Generation()):
        self.target = target
        self.generation = generation
        self.settings = settings
        self.breaker = breaker if breaker is not None else Breaker(settings.breaker_after, settings.breaker_window_s)
        self.breaker.begin_run()
        self.breaker_opened = asyncio.Event()  # wakes the cases waiting to retry
        self.rng = random.Random(seed)
        self.limit = AdaptiveLimit(settings.concurrency, settings.adaptive)
        self.rpm = RateLimiter(settings.requests_per_minute) if settings.requests_per_minute else None
        self.tpm = RateLimiter(settings.tokens_per_minute) if settings.tokens_per_minute else None
        self.max_tokens = int(generation.max_tokens or target.describe().get("max_tokens") or 256)
        self.started = time.monotonic()
        self.deadline = self.started + settings.deadline_s if settings.deadline_s else None
        self.calls = 0

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def refusal(self) -> str | None:
        """Why a case must not be attempted at all any more."""
        if self.breaker.reason:
            return self.breaker.reason
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            return f"not attempted: the run's deadline of {self.settings.deadline_s:g}s passed"
        return None

    async def ask(self, case: Case) -> Response:
        began = time.perf_counter()
        began_at = time.time()  # the wall clock, for the case's trace: when it was asked
        attempt = 0
        last_error = "not attempted"

        def failed(reason: str) -> Response:
            return Response(text="", latency_s=time.perf_counter() - began, error=reason, attempts=attempt,
                            started_at=began_at)

        while True:
            refusal = self.refusal()
            if refusal:
                return failed(refusal if attempt == 0 else f"{last_error}; then {refusal}")
            attempt += 1
            if self.rpm:
                await self.rpm.acquire()
            if self.tpm:
                await self.tpm.acquire(_estimated_tokens(case, self.max_tokens))
            await self.limit.acquire()
            try:
                self.calls += 1
                remaining = self.remaining()
                async with asyncio.timeout(remaining):
                    response = await self.target.acomplete(Request.of(case, self.generation))
                await self.limit.succeeded()
                self.breaker.succeeded()
                return replace(response, attempts=attempt, started_at=began_at)
            except TargetError as exc:
                last_error, retry_after = exc.reason, exc.retry_after
                self._attempt_failed(exc.reason)
                if exc.reason.startswith("HTTP 429"):
                    await self.limit.overloaded()
                if not exc.retryable or (self.settings.max_retries is not None
                                         and attempt > self.settings.max_retries):
                    return failed(f"{exc.reason} (after {attempt} attempt{'s' if attempt > 1 else ''})")
            except TimeoutError:
                return failed(f"the run's deadline of {self.settings.deadline_s:g}s passed during attempt {attempt}")
            except Exception as exc:  # a bug or an unexpected client fault: recorded, never a pass
                self._attempt_failed(f"unexpected {type(exc).__name__}")
                return failed(f"unexpected {type(exc).__name__}: {exc}")
            finally:
                await self.limit.release()
            delay = self.settings.backoff(attempt, retry_after, self.rng)
            remaining = self.remaining()
            if remaining is not None and delay >= remaining:
                return failed(f"{last_error}; no time left before the deadline to retry")
            budget_left = self.settings.retry_budget_s - (time.perf_counter() - began)
            if delay >= budget_left:
                return failed(f"{last_error} (after {attempt} attempt{'s' if attempt > 1 else ''} in "
                              f"{time.perf_counter() - began:.0f}s: the retry budget of "
                              f"{self.settings.retry_budget_s:g}s per case is spent)")
            try:  # the wait ends early if the breaker opens meanwhile
                await asyncio.wait_for(self.breaker_opened.wait(), timeout=delay)
            except TimeoutError:
                pass

    def _attempt_failed(self, error: str) -> None:
        if self.breaker.failed(error):
            self.breaker_opened.set()
        elif self.breaker.reason:  # opened by another run sharing the breaker
            self.breaker_opened.set()


async def arun(cases: Sequence[Case], target: Target, settings: EngineSettings = EngineSettings(), *,
               journal: Journal | None = None, replay: bool = False, resume: bool = True,
               on_done: Callable[[Case, int, Response], None] | None = None, seed: int = 0,
               complete_journal: bool = True, breaker: Breaker | None = None,
               generation: Generation = Generation()) -> RunOutcome:
    """Ask every case `settings.samples` times, with `generation`'s settings. With `replay`,
    nothing is asked: stored answers are returned and missing ones become errors. `complete_journal=False` leaves the journal
    open to later calls of the same run (follow-up questions asked one at a time): a
    completed journal is discarded by the next run. `breaker`: shared with other runs against
    the same endpoint (one is made for this run otherwise)."""
    asked = identity(target, generation)
    stored = journal.load() if journal is not None else {}
    torn = journal.torn_lines if journal is not None else 0
    if journal is not None and not replay:
        # a finished run's answers are not reused by a new run (the deployment may have changed);
        # an interrupted run's answers are: that is what resuming means
        fresh = journal.complete or not resume
        if fresh:
            stored = {}
        journal.start(fresh=fresh)
    run = _Run(target, settings, seed, breaker, generation)
    results: list[list[Response | None]] = [[None] * settings.samples for _ in cases]
    queue: asyncio.Queue = asyncio.Queue()
    reused = 0
    for index, case in enumerate(cases):
        for sample in range(settings.samples):
            key = request_key(asked, case.messages, sample)
            if key in stored:
                results[index][sample] = stored[key]
                reused += 1
            elif replay:
                results[index][sample] = Response(text="", latency_s=0.0, attempts=0,
                                                  error="not attempted: no stored answer to replay")
            else:
                queue.put_nowait((index, sample, key))

    async def worker() -> None:
        while True:
            try:
                index, sample, key = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            case = cases[index]
            response = await run.ask(case)
            results[index][sample] = response
            if journal is not None:
                journal.append(key, case.id, sample, response)
            if on_done is not None:
                on_done(case, sample, response)

    try:
        workers = min(settings.concurrency, queue.qsize())
        await asyncio.gather(*(worker() for _ in range(workers)))
        if journal is not None and not replay and complete_journal:
            journal.finish()
    finally:
        if journal is not None:
            journal.close()
    stats = RunStats(calls=run.calls, reused=reused, elapsed_s=time.monotonic() - run.started,
                     final_concurrency=run.limit.limit, torn_journal_lines=torn,
                     breaker_opened=run.breaker.reason is not None)
    return RunOutcome([list(r) for r in results], stats)  # type: ignore[arg-type]


def run(cases: Sequence[Case], target: Target, settings: EngineSettings = EngineSettings(),
        **kwargs) -> RunOutcome:
    """Synchronous wrapper around `arun`, closing the target's client at the end."""

    async def main() -> RunOutcome:
        try:
            return await arun(cases, target, settings, **kwargs)
        finally:
            await target.aclose()

    return asyncio.run(main())


class BudgetSpent(RuntimeError):
    """A model-assisted scorer asked past its call budget (a bug in the scorer: it must read
    `Asker.remaining` first)."""


class Asker:
    """The `ask` a model-assisted scorer is handed: questions asked after a suite's main run
    (the judge's verdicts, the robustness suite's follow-ups), one batch of cases at a time,
    through the engine: the run's settings, retries, breaker and generation settings, and a
    journal that stays open across batches, so an interrupted run resumes them and a replay
    answers them with no call. `make_target` gives a fresh target per batch (the engine
    closes its client after each); `after` runs after each batch (a dead embedded server stops
    the run there); `on_batch` is told each batch's statistics."""

    def __init__(self, make_target: Callable[[], Target], settings: EngineSettings, *,
                 journal: Journal | None = None, replay: bool = False, resume: bool = True,
                 breaker: Breaker | None = None, generation: Generation = Generation(),
                 after: Callable[[], None] | None = None, on_batch: Callable[[RunStats], None] | None = None,
                 limit: int | None = None):
        self._make_target, self.settings, self.journal = make_target, settings, journal
        self._replay, self._resume, self._breaker, self._generation = replay, resume, breaker, generation
        self._after, self.on_batch = after, on_batch
        self.limit = limit
        self.calls = 0
        self.reused = 0

    @property
    def remaining(self) -> int | None:
        """Questions this asker may still ask (None: no bound). Answers reused from the journal
        count like calls, so a replay or a resumed run takes the same decisions as the run it
        repeats."""
        return None if self.limit is None else max(0, self.limit - self.calls - self.reused)

    def __call__(self, cases: Sequence[Case]) -> list[Response]:
        if self.remaining is not None and len(cases) > self.remaining:
            raise BudgetSpent(f"{len(cases)} more question(s) asked of a budget with {self.remaining} left: "
                              "a model-assisted scorer must check `remaining` before it asks")
        # asked from inside hypothesis (the robustness shrinking), which seeds the global
        # `random` alike for every example; OpenTelemetry draws MLflow's trace and span ids from
        # it, so every follow-up call got the same trace id and all but one trace were lost
        # (measured: 14 traces stored for 28 calls). Fresh entropy, for the ids only: hypothesis
        # draws its examples from its own generator.
        random.seed()
        outcome = run(cases, self._make_target(), self.settings, journal=self.journal, replay=self._replay,
                      resume=self._resume, complete_journal=False, breaker=self._breaker,
                      generation=self._generation)
        self._resume = True  # the first batch decides; later ones continue this run's journal
        if self._after is not None:
            self._after()
        self.calls += outcome.stats.calls
        self.reused += outcome.stats.reused
        if self.on_batch is not None:
            self.on_batch(outcome.stats)
        return outcome.first

    def finish(self) -> None:
        """Mark the journal complete: the next run asks afresh (a judge's journal is never
        finished: it is the judge's cache across runs)."""
        if self.journal is not None and not self._replay and self.journal.path.exists():
            self.journal.start(fresh=False)
            self.journal.finish()
