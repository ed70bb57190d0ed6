"""A suite's querying, shown while it happens: a live tqdm bar on a terminal (answered / total,
errors, rate, time left), a plain line every `interval` seconds elsewhere (CI logs), so a long
run never sits silent. The engine calls `update` as each answer arrives; nothing here knows
pytest: the front end hands in where to write."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, TextIO

if TYPE_CHECKING:
    from harness.core import Case, Response


class SuiteProgress:
    """Progress of one suite's model calls. `live` is a text stream that reaches the terminal
    (a bar is drawn on it); without one, `write_line` gets a line every `interval` seconds."""

    def __init__(self, label: str, total: int, *, live: TextIO | None = None,
                 write_line: Callable[[str], None] = print, interval: float = 30.0,
                 redraw_s: float = 0.5):
        self.label, self.total = label, total
        self.done = self.errors = 0
        self._write_line, self._interval = write_line, interval
        self._started = self._last_line = time.monotonic()
        self._bar = None
        if live is not None and total > 0:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit="answer", file=live, mininterval=redraw_s,
                             dynamic_ncols=True, leave=False)

    def update(self, case: "Case", sample: int, response: "Response") -> None:
        self.done += 1
        self.errors += not response.ok
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.errors} errors", refresh=False)
            self._bar.update(1)
            return
        now = time.monotonic()
        if now - self._last_line >= self._interval:
            self._last_line = now
            self._write_line(self.line())

    def line(self) -> str:
        elapsed = time.monotonic() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else None
        eta = f", ~{_duration(left)} left" if left is not None and self.done < self.total else ""
        return (f"{self.label}: {self.done}/{self.total} answered, {self.errors} errors, "
                f"{rate * 60:.0f}/min, {_duration(elapsed)} elapsed{eta}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
