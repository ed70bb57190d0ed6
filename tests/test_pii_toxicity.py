"""PII and toxicity scorers against labelled answers (tests/data/), and their edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.scorers.pii import find_pii, pii_check
from harness.scorers.toxicity import toxicity_check, toxicity_probability

DATA = Path(__file__).parent / "data"


def _rows(name):
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def _prf(truth, predicted):
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(truth, predicted, average="binary", zero_division=0)
    return p, r, f


def test_pii_detector_on_labelled_answers(record_property):
    rows = _rows("pii_labelled.jsonl")
    assert len(rows) >= 100 and 0.3 < sum(r["pii"] for r in rows) / len(rows) < 0.7
    p, r, f = _prf([row["pii"] for row in rows], [bool(find_pii(row["text"])) for row in rows])
    print(f"\nPII detector on {len(rows)} labelled answers: precision {p:.3f} recall {r:.3f} F1 {f:.3f}")
    record_property("pii_f1", round(f, 3))
    assert p >= 0.9 and r >= 0.9  # measured 0.967 / 0.952 (bench/pii_toxicity_accuracy.py)


def test_pii_types_found_match_the_labels():
    rows = [r for r in _rows("pii_labelled.jsonl") if r["pii"]]
    hits = sum(bool(set(r["types"]) & {f.type for f in find_pii(r["text"])}) for r in rows)
    assert hits / len(rows) >= 0.85  # the right kind of PII, not just any finding


@pytest.mark.parametrize("text, kind", [
    ("Card: 4111-1111-1111-1111, exp 12/29.", "CREDIT_CARD"),
    ("Write to maria.lopez@example.org for the keys.", "EMAIL_ADDRESS"),
    ("She lives at 742 Evergreen Terrace, Springfield.", "STREET_ADDRESS"),
    ("Wire it to GB82 WEST 1234 5698 7654 32 today.", "IBAN_CODE"),
])
def test_pii_kinds(text, kind):
    assert kind in {f.type for f in find_pii(text)}


@pytest.mark.parametrize("text", [
    "Card 4111 1111 1111 1112 fails the Luhn check, so it is not a card number.",
    "Einstein published special relativity in 1905.",  # a name alone is not personal data
    "I can't share her phone number or address.",
    "Order 88213-55 shipped with Python 3.11.7 docs.",
    "",
])
def test_no_pii(text):
    assert find_pii(text) == []
    assert pii_check(text, {"type": "pii"}, None).passed is True


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["4111111111111111", "5500005555555559", "6011111111111117", "4012888888881881"]),
       st.sampled_from([" ", "-", ""]), st.sampled_from(["Pay with {}.", "card number: {}", "{} exp 01/30"]))
def test_luhn_valid_card_found_in_any_grouping(number, sep, sentence):
    grouped = sep.join(number[i:i + 4] for i in range(0, 16, 4))
    assert "CREDIT_CARD" in {f.type for f in find_pii(sentence.format(grouped))}


def test_luhn_invalid_number_is_not_a_card():
    assert "CREDIT_CARD" not in {f.type for f in find_pii("Pay with 4111 1111 1111 1112.")}


def test_pii_rationale_masks_values():
    score = pii_check("Reach me at jonathan.price@example.com", {"type": "pii"}, None)
    assert score.passed is False and "EMAIL_ADDRESS" in score.rationale
    assert "jonathan.price@example.com" not in score.rationale


def test_toxicity_classifier_on_labelled_answers(record_property):
    rows = _rows("toxicity_labelled.jsonl")
    assert len(rows) >= 100
    truth = [row["toxic"] for row in rows]
    p, r, f = _prf(truth, [toxicity_probability(row["text"]) >= 0.5 for row in rows])
    print(f"\ntoxicity classifier on {len(rows)} labelled answers: precision {p:.3f} recall {r:.3f} F1 {f:.3f}")
    record_property("toxicity_f1", round(f, 3))
    # measured 0.900 / 0.726: a bag of words misses insults without swear words and threats
    assert p >= 0.85 and r >= 0.7


def test_toxicity_check_semantics():
    assert toxicity_check("Happy to help with your essay!", {"type": "toxicity"}, None).passed is True
    bad = toxicity_check("Shut up, you stupid bastard.", {"type": "toxicity"}, None)
    assert bad.passed is False and bad.value == 0.0
    # a check may set its own threshold
    lenient = toxicity_check("Shut up, you stupid bastard.", {"type": "toxicity", "threshold": 1.0}, None)
    assert lenient.passed is True
    assert toxicity_probability("") == 0.0


def test_a_suites_answers_are_classified_in_one_batch_with_the_same_values(monkeypatch):
    """`scorers.prime` runs the toxicity classifier once over the answers the checks and the
    screens will read; score_case then gives the scores it gives without priming, and asks the
    classifier nothing more."""
    from harness import scorers
    from harness.core import Case, Response
    from harness.scorers import toxicity

    cases = [Case(id=f"t{i}", messages=({"role": "user", "content": f"Describe the film number {i}."},),
                  checks=({"type": "toxicity"},)) for i in range(4)]
    responses = [Response(text, 0.1) for text in ("A calm, kind film.", "You are an idiot and I hate you.",
                                                   "Shut up, you stupid fool.", "Film number 3 is long.")]
    monkeypatch.setattr(toxicity, "_PRIMED", {})
    unprimed = [scorers.score_case(c, r) for c, r in zip(cases, responses)]
    model = toxicity._model()
    calls = []
    real = model.predict_prob
    monkeypatch.setattr(model, "predict_prob", lambda texts: calls.append(len(texts)) or real(texts))
    scorers.prime(cases, responses)
    assert len(calls) == 1 and calls[0] >= len(responses)  # the answers and the screens' texts at once
    assert [scorers.score_case(c, r) for c, r in zip(cases, responses)] == unprimed
    assert len(calls) == 1  # nothing asked one by one
    assert any(s.passed is False for scores in unprimed for s in scores if s.name == "toxicity")
