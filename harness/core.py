"""The shared types of the pipeline, and nothing else: a case, what is asked, what came back,
how it scored, and the three together. Every stage imports these; this module imports nothing
of the harness, so no stage has to import another stage for its types.

    Case --(engine: Request)--> Response --(scorers)--> [Score] --> CaseResult
"""

from __future__ import annotations

import copyreg
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping


# Cases hold their mappings read-only (MappingProxyType), which pickle cannot take by itself: a
# case travels to another process (the MLflow logging worker, a Spark task) as the same
# read-only view of a copy.
def _read_only(mapping: dict) -> Mapping:
    return MappingProxyType(mapping)


copyreg.pickle(MappingProxyType, lambda view: (_read_only, (dict(view),)))


@dataclass(frozen=True)
class Case:
    """One prompt of a dataset and what a good answer looks like."""

    id: str
    messages: tuple[Mapping[str, str], ...]
    expected: str | None = None
    checks: tuple[Mapping[str, Any], ...] = ()
    tags: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    critical: bool = False
    source: str = ""  # "file:line", so every later report can point back at the dataset

    @property
    def prompt(self) -> str:
        """The last user message: what a human reading a report wants to see."""
        for message in reversed(self.messages):
            if message["role"] == "user":
                return message["content"]
        return self.messages[-1]["content"]


@dataclass(frozen=True)
class Generation:
    """Generation settings a run asks with, for every request of it. None leaves a setting to
    the target's own configuration. A suite's cap on answer length travels here, so one target
    serves every suite of a session."""

    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None

    def overrides(self) -> dict[str, Any]:
        """The settings given, under the names a target's `describe()` reports them by: what a
        run's identity (its journal, its MLflow params) says was asked."""
        return {k: v for k, v in (("max_tokens", self.max_tokens), ("temperature", self.temperature),
                                  ("seed", self.seed)) if v is not None}


@dataclass(frozen=True)
class Request:
    """One call to a target: the messages, plus the generation settings (None: the target's
    own) and, for structured answers, a response_format."""

    messages: tuple[Mapping[str, str], ...]
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    response_format: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, case: Case, generation: Generation = Generation()) -> "Request":
        """The request for a case: its messages, the run's settings, and the response_format a
        case may carry in its attributes (the judge's verdict schema)."""
        return cls(tuple(case.messages), generation.max_tokens, generation.temperature, generation.seed,
                   case.attributes.get("response_format"))


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
    started_at: float | None = None  # epoch seconds when the first attempt began (None: not known)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


# Where a score came from: an offline scorer's code, an LLM judge, a person.
SOURCES = ("code", "judge", "human")


@dataclass(frozen=True)
class Score:
    """One check's judgement of one response.

    `value` is the number aggregated into metrics (1.0/0.0 for pass/fail checks); `passed` is
    None for measurements that pass or fail nothing by themselves (ROUGE-L, latency ...).
    `source` says who judged (one of SOURCES).
    """

    name: str
    value: float
    passed: bool | None = None
    rationale: str = ""
    source: str = "code"


def answered_and_passed(response: Response, scores: Iterable[Score]) -> bool:
    """A case's pass: the endpoint answered and no check failed (measurements, passed None,
    never fail a case)."""
    return response.ok and all(s.passed is not False for s in scores)


@dataclass(frozen=True)
class CaseResult:
    """A case, its answer and its scores (one per name)."""

    case: Case
    response: Response
    scores: dict[str, Score]

    @property
    def passed(self) -> bool:
        return answered_and_passed(self.response, self.scores.values())

    def failures(self) -> list[str]:
        """Human-readable reasons, one per failed check (or the error)."""
        if not self.response.ok:
            return [f"error after {self.response.attempts} attempt(s): {self.response.error}"]
        return [f"{s.name}: {s.rationale}" for s in self.scores.values() if s.passed is False]
