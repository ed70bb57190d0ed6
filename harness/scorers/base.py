"""The Score type shared by all scorers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """One scorer's judgement of one response.

    `value` is the number aggregated into metrics (1.0/0.0 for pass/fail checks); `passed` is
    None for measurements that pass or fail nothing by themselves (ROUGE-L, latency ...).
    """

    name: str
    value: float
    passed: bool | None = None
    rationale: str = ""
