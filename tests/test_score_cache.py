"""The score cache: an answer scored before by the same scorer code is not scored again, across
processes (a replay), and any change to the scorers' files or models scores everything afresh."""

from __future__ import annotations

import pytest

from harness import scorers
from harness.core import Case
from harness.scorers import ScoreCache, score_case, use_score_cache
from harness.scorers import cache as cache_module
from harness.core import Response

CASE = Case(id="c", messages=({"role": "user", "content": "Capital of France?"},), expected="Paris",
            checks=({"type": "contains", "value": "Paris"}, {"type": "length", "max_words": 3}))


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = scorers.CHECKS["contains"]

    def contains(answer, check, expected):
        calls.append(answer)
        return real(answer, check, expected)

    monkeypatch.setitem(scorers.CHECKS, "contains", contains)
    yield calls
    use_score_cache(None)


def answer(text: str) -> Response:
    return Response(text=text, latency_s=0.1)


def test_a_scored_answer_is_not_scored_again_even_in_another_process(tmp_path, counted):
    use_score_cache(ScoreCache(tmp_path))
    first = score_case(CASE, answer("Paris."))
    again = score_case(CASE, answer("Paris."))
    assert counted == ["Paris."] and first == again
    score_case(CASE, answer("Lyon."))  # another answer is scored
    assert counted == ["Paris.", "Lyon."]
    use_score_cache(None)
    assert score_case(CASE, answer("Paris.")) == first  # no cache: the same scores, computed
    assert len(counted) == 3

    cache = ScoreCache(tmp_path)
    use_score_cache(cache)
    cache.save()  # nothing new: no file yet
    assert not list(tmp_path.glob("*.pickle"))
    score_case(CASE, answer("Paris."))
    cache.save()
    reloaded = ScoreCache(tmp_path)  # as a later process (the replay) would
    use_score_cache(reloaded)
    assert score_case(CASE, answer("Paris.")) == first
    assert len(counted) == 4  # one scoring for the save, none for the reload


def test_other_scorer_code_scores_afresh(tmp_path, counted, monkeypatch):
    cache = ScoreCache(tmp_path)
    use_score_cache(cache)
    score_case(CASE, answer("Paris."))
    cache.save()
    monkeypatch.setattr(cache_module, "scorer_version", lambda: "another-version")
    use_score_cache(ScoreCache(tmp_path))
    score_case(CASE, answer("Paris."))
    assert counted == ["Paris.", "Paris."]


def test_the_version_covers_the_scorers_files_and_models():
    version = cache_module.scorer_version()
    assert len(version) == 16 and version == cache_module.scorer_version()
    assert "presidio-analyzer" in cache_module._LIBRARIES and "scikit-learn" in cache_module._LIBRARIES


def test_an_error_is_never_cached_as_an_answer(tmp_path, counted):
    use_score_cache(ScoreCache(tmp_path))
    failed = score_case(CASE, Response(text="", latency_s=0.0, error="HTTP 503"))
    assert all(s.passed is False for s in failed if s.name == "contains")
    assert counted == []
