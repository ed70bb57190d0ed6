"""The journal: finished cases appended as they complete, so a crash or Ctrl-C loses nothing.

One JSONL file per suite and request identity (endpoint, model, parameters). Each entry is keyed
by a hash of that identity, the exact messages and the sample index, so a stored answer is never
reused for a different endpoint, model, parameters, messages or sample. A line torn by a crash
is skipped (and counted), never trusted. API keys are not part of any entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.paths import slug
from harness.core import Response

_RESPONSE_FIELDS = {f.name for f in fields(Response)}


def _hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def identity_hash(identity: Mapping[str, Any]) -> str:
    return _hash(dict(identity))[:12]


def request_key(identity: Mapping[str, Any], messages: Sequence[Mapping[str, str]], sample: int) -> str:
    return _hash({"identity": dict(identity), "messages": [dict(m) for m in messages], "sample": sample})


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self.torn_lines = 0
        self.complete = False
        self._file = None

    @classmethod
    def for_suite(cls, directory: Path, suite: str, identity: Mapping[str, Any]) -> "Journal":
        return cls(directory / f"{slug(suite)}-{identity_hash(identity)}.jsonl")

    def load(self) -> dict[str, Response]:
        """Stored answers by request key (errors are not kept: a rerun asks again)."""
        stored: dict[str, Response] = {}
        self.torn_lines = 0
        self.complete = False
        if not self.path.exists():
            return stored
        with self.path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                    if entry.get("complete"):
                        self.complete = True
                        continue
                    response = Response(**{k: v for k, v in entry["response"].items() if k in _RESPONSE_FIELDS})
                    key = entry["key"]
                except (ValueError, KeyError, TypeError, AttributeError):
                    self.torn_lines += 1
                    continue
                if response.ok:
                    stored[key] = response
                else:
                    stored.pop(key, None)
        return stored

    def start(self, *, fresh: bool) -> None:
        """Open for appending; `fresh` discards what was there (a finished run's answers)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh and self.path.exists():
            self.path.unlink()
        self._file = self.path.open("a", encoding="utf-8")
        # a torn last line from a crash must not glue itself to the next entry
        if self.path.stat().st_size and not self._ends_with_newline():
            self._file.write("\n")

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def append(self, key: str, case_id: str, sample: int, response: Response) -> None:
        entry = {"key": key, "case_id": case_id, "sample": sample, "response": asdict(response)}
        # one write per line, flushed at once: an interruption loses at most the line in flight
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()

    def finish(self) -> None:
        if self._file is not None:
            self._file.write(json.dumps({"complete": True}) + "\n")
            self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
