"""Retrain the shipped classifiers from their labelled data: the answer-outcome scorer
(harness.scorers.outcome) and the input guard's request classifier (harness.guards). Both are
deterministic, so retraining from unchanged data writes the same model (tests/test_classifiers.py
checks the shipped files against their data)."""

from __future__ import annotations

from pathlib import Path


def train_all() -> list[Path]:
    from harness import guards
    from harness.scorers import outcome

    outcome.train(outcome.load_rows()).save(outcome.MODEL_FILE)
    guards.train_request_model(guards.load_training_rows()).save(guards.MODEL_FILE)
    return [outcome.MODEL_FILE, guards.MODEL_FILE]
