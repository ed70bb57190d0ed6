"""What the answer screens (harness.scorers.screen) cost: every answer of the last default run
(.harness/results), screened cold (no score cache), with the cheap candidate filter in front of
Presidio and, for comparison, with Presidio on every answer. Median of 3 passes each.

    pytest evals            # or: pytest evals --harness-replay
    python bench/screen_cost.py
"""

from __future__ import annotations

import json
import statistics
import time

from common import ROOT

from harness.scorers import screen
from harness.scorers.pii import find_pii


def answers() -> list[tuple[str, tuple[str, ...], str, str]]:
    out = []
    for path in sorted((ROOT / ".harness" / "results").glob("*.json")):
        if "--" in path.stem:
            continue
        for case in json.loads(path.read_text())["cases"]:
            if case.get("response"):
                # the record keeps the prompt, not the system message: screen what is there
                out.append((case["response"], screen.SCREENS, "", case.get("input") or ""))
    return out


def timed(rows, force_presidio: bool) -> float:
    started = time.perf_counter()
    for text, screens, system, given in rows:
        if force_presidio:
            find_pii(text)
        screen.screen_scores(text, screens, system, given)
    return time.perf_counter() - started


def main() -> None:
    rows = answers()
    find_pii("warm up the spaCy model once")  # loading it is a one-off per process
    filtered = statistics.median(timed(rows, False) for _ in range(3))
    every = statistics.median(timed(rows, True) for _ in range(3))
    candidates = sum(screen._pii_candidate(text) for text, *_ in rows)
    print(json.dumps({"answers": len(rows), "presidio_candidates": candidates,
                      "ms_per_answer_filtered": round(1000 * filtered / len(rows), 2),
                      "ms_per_answer_presidio_on_all": round(1000 * every / len(rows), 2),
                      "total_s_filtered": round(filtered, 2)}))


if __name__ == "__main__":
    main()
