"""Scorers: pure functions of (case, response) -> [Score]. They know nothing of HTTP or MLflow.

Every check type a dataset may declare maps to one function here; `score_case` applies a case's
checks to its response and adds what every answer gets: the screens (personal data, toxicity,
the system prompt's secrets and echoes: harness.scorers.screen) and the reference measurements.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from harness.core import Case
from harness.core import Score
from harness.scorers.bias import bbq_check, decision_check, sentiment_check
from harness.scorers.cache import ScoreCache
from harness.scorers.injection import injection_check
from harness.scorers.pii import pii_check
from harness.scorers.quality import QUALITY_CHECKS, rouge_l, token_f1
from harness.scorers.screen import applicable, screen_scores
from harness.scorers.safety import canary_check, leak_check, refusal_check, refusal_score_name
from harness.scorers.toxicity import toxicity_check
from harness.core import Response

__all__ = ["CHECKS", "Score", "ScoreCache", "score_case", "use_score_cache"]

# A check returns one Score, or several (the bias checks measure more than one thing). A check
# whose function has `needs_request = True` is also given the request (the case's prompt), one
# with `needs_messages = True` the case's whole conversation (system prompt included).
CHECKS: dict[str, Callable[..., Score | list[Score]]] = {
    **QUALITY_CHECKS,
    "refusal": refusal_check,
    "leak": leak_check,
    "canary": canary_check,
    "injection": injection_check,
    "pii": pii_check,
    "toxicity": toxicity_check,
    # bias: outcomes measured per case, disparities computed per suite (harness.bias)
    "decision": decision_check,
    "sentiment": sentiment_check,
    "bbq": bbq_check,
}


_cache: ScoreCache | None = None


def use_score_cache(cache: ScoreCache | None) -> None:
    """Reuse the scores of answers scored before by the same scorer code (None: off)."""
    global _cache
    _cache = cache


def _scored(what: Any, answer: str, reference: str | None, score: Callable[[], Any]) -> Any:
    return score() if _cache is None else _cache.get_or_score(what, answer, reference, score)


def _needs_request(check: Mapping[str, Any]) -> bool:
    return getattr(CHECKS[check["type"]], "needs_request", False)


def _needs_messages(check: Mapping[str, Any]) -> bool:
    return getattr(CHECKS[check["type"]], "needs_messages", False)


def _check_scores(check: Mapping[str, Any], answer: str, expected: str | None, case: Case) -> list[Score]:
    extra: dict[str, Any] = {"request": case.prompt} if _needs_request(check) else {}
    if _needs_messages(check):
        extra["messages"] = case.messages
    outcome = CHECKS[check["type"]](answer, check, expected, **extra)
    return outcome if isinstance(outcome, list) else [outcome]


def check_score_name(check: Mapping[str, Any]) -> str:
    """The name of the pass/fail score a check reports (a case with no answer fails it)."""
    if check["type"] == "refusal":
        return refusal_score_name(check)
    return "resisted" if check["type"] == "injection" else check["type"]


def score_case(case: Case, response: Response) -> list[Score]:
    """All scores of one response. A response with an error fails every check of its case (an
    error is never a silent pass) and has no reference measurements."""
    scores: list[Score] = []
    if not response.ok:
        reason = f"no answer: {response.error}"
        scores.extend(Score(check_score_name(c), 0.0, False, reason) for c in case.checks)
    else:
        text, expected, request = response.text, case.expected, case.prompt
        for check in case.checks:
            # a check that reads the request (or the conversation) is cached per request too
            key = ["check", check]
            if _needs_request(check):
                key.append(request)
            if _needs_messages(check):
                key.append([dict(m) for m in case.messages])
            scores.extend(_scored(key, text, expected, lambda: _check_scores(check, text, expected, case)))
        screens = applicable(case.checks)
        if screens:
            system = "\n".join(m["content"] for m in case.messages if m["role"] == "system")
            given = "\n".join(m["content"] for m in case.messages)
            scores.extend(_scored(["screens", screens, system, given], text, None,
                                  lambda: screen_scores(text, screens, system, given)))
        if expected is not None:
            scores.extend(_scored(["reference"], text, expected, lambda: [
                Score("token_f1", token_f1(text, expected)), Score("rouge_l", rouge_l(text, expected))]))
        if response.total_tokens is not None:
            scores.append(Score("total_tokens", float(response.total_tokens)))
    scores.append(Score("latency_s", response.latency_s))
    return scores
