"""File-system names derived from user-given names (suites, experiments)."""

from __future__ import annotations


def slug(name: str) -> str:
    """`name` with anything but letters, digits, '-' and '_' replaced by '_'."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
