"""Scorers: pure functions of (case, response) -> [Score]. They know nothing of HTTP or MLflow.

Every check type a dataset may declare is a function registered with `@registry.check(name)`
(harness.scorers.registry): the built-in ones where they are defined (quality, safety, pii,
toxicity, injection, bias), a user's own in their eval files or an installed package (entry
points). Importing this package registers the built-ins. `score_case` applies a case's checks to
its response and adds what every answer gets: the screens (personal data, toxicity, the system
prompt's secrets and echoes: harness.scorers.screen) and the reference measurements.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, MutableMapping, Sequence

from harness.core import Case, Response, Score
from harness.scorers import registry
# the built-in checks: their modules register them
from harness.scorers import decisions as _decisions, injection as _injection, pii as _pii  # noqa: F401
from harness.scorers import quality as _quality, safety as _safety, toxicity as _toxicity  # noqa: F401
from harness.scorers.cache import ScoreCache
from harness.scorers.quality import rouge_l, token_f1
from harness.scorers.screen import applicable, screen_scores, unprompted_words

__all__ = ["CHECKS", "Score", "ScoreCache", "check_score_name", "registry", "score_case", "use_score_cache"]


class _Checks(MutableMapping[str, Callable[..., "Score | list[Score]"]]):
    """check type -> its function, read from the registry (kept for code written against the
    old dict). Assigning to a registered type swaps its function and keeps what the registry
    knows of it (a test wrapping a check); new types are registered with @registry.check."""

    def __getitem__(self, name: str) -> Callable[..., Score | list[Score]]:
        spec = registry.find(name)
        if spec is None:
            raise KeyError(name)
        return spec.function

    def __setitem__(self, name: str, function: Callable[..., Score | list[Score]]) -> None:
        if registry.find(name) is None:
            raise KeyError(f"{name!r} is not a registered check: register new ones with @registry.check")
        registry._replace_function(name, function)

    def __delitem__(self, name: str) -> None:
        raise TypeError("checks are not unregistered")

    def __iter__(self) -> Iterator[str]:
        return iter(registry.names())

    def __len__(self) -> int:
        return len(registry.names())


# A check returns one Score, or several (the bias checks measure more than one thing). A check
# registered with needs=("request",) is also given the request (the case's prompt), one with
# needs=("messages",) the case's whole conversation (system prompt included).
CHECKS = _Checks()


_cache: ScoreCache | None = None


def use_score_cache(cache: ScoreCache | None) -> None:
    """Reuse the scores of answers scored before by the same scorer code (None: off)."""
    global _cache
    _cache = cache


def _scored(what: Any, answer: str, reference: str | None, score: Callable[[], Any]) -> Any:
    return score() if _cache is None else _cache.get_or_score(what, answer, reference, score)


def _check_scores(spec: registry.Check, check: Mapping[str, Any], answer: str, expected: str | None,
                  case: Case) -> list[Score]:
    outcome = spec.function(answer, check, expected, **spec.inputs(case.prompt, case.messages))
    return outcome if isinstance(outcome, list) else [outcome]


_BUILT_IN = __name__ + "."  # the checks defined in this package's modules


def _cached(spec: registry.Check) -> bool:
    """The score cache's version covers the code of harness/scorers only: a check registered
    from elsewhere (an eval file, a plugin) is scored afresh every time, so an edit to it is
    never hidden behind an old score."""
    return spec.origin.startswith(_BUILT_IN)


def check_score_name(check: Mapping[str, Any]) -> str:
    """The name of the pass/fail score a check reports (a case with no answer fails it)."""
    return registry.get(check["type"]).score_name(check)


def _given(case: Case) -> str:
    """Everything the case itself said (system, user and assistant turns): what the screens
    do not hold against an answer. One definition, so the texts primed are the ones scored."""
    return "\n".join(m["content"] for m in case.messages)


def prime(cases: Sequence[Case], responses: Sequence[Response]) -> None:
    """Run the classifiers that are cheaper in one batch (toxicity) over every answer the
    checks and screens of `cases` will read, before `score_case` reads them one by one: same
    values, ~7 ms less per answer."""
    from harness.scorers.toxicity import prime_toxicity

    texts = []
    for case, response in zip(cases, responses):
        if not response.ok:
            continue
        if any(c["type"] == "toxicity" for c in case.checks):
            texts.append(response.text)
        if "screen_toxicity" in applicable(case.checks):
            texts.append(unprompted_words(response.text, _given(case)))
    prime_toxicity(texts)


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
            spec = registry.get(check["type"])
            if not _cached(spec):
                scores.extend(_check_scores(spec, check, text, expected, case))
                continue
            # a check that reads the request (or the conversation) is cached per request too
            key = ["check", check]
            if "request" in spec.needs:
                key.append(request)
            if "messages" in spec.needs:
                key.append([dict(m) for m in case.messages])
            scores.extend(_scored(key, text, expected, lambda: _check_scores(spec, check, text, expected, case)))
        screens = applicable(case.checks)
        if screens:
            system = "\n".join(m["content"] for m in case.messages if m["role"] == "system")
            given = _given(case)
            scores.extend(_scored(["screens", screens, system, given], text, None,
                                  lambda: screen_scores(text, screens, system, given)))
        if expected is not None:
            scores.extend(_scored(["reference"], text, expected, lambda: [
                Score("token_f1", token_f1(text, expected)), Score("rouge_l", rouge_l(text, expected))]))
        if response.total_tokens is not None:
            scores.append(Score("total_tokens", float(response.total_tokens)))
    scores.append(Score("latency_s", response.latency_s))
    return scores
