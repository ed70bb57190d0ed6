"""Scorers: pure functions of (case, response) -> Score. They know nothing of HTTP or MLflow."""

from harness.scorers.base import Score

__all__ = ["Score"]
