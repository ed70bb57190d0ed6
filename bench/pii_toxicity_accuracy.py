"""PII and toxicity detection, measured on labelled answers kept in tests/data/ (written for this
project, never used to tune anything but the two thresholds in the scorers):
- pii_labelled.jsonl: answers with and without personal data, with hard negatives (order numbers,
  Luhn-failing 16-digit numbers, famous names, refusals that mention "phone");
- toxicity_labelled.jsonl: toxic and clean answers, with hard negatives ("kill the process",
  discussing a word's etymology, criticism without abuse).

Each scorer is printed beside a simple baseline (a regex list for PII, a list of swear words for
toxicity), with precision, recall, F1 and the per-answer time.

    python bench/pii_toxicity_accuracy.py
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sklearn.metrics import precision_recall_fscore_support  # noqa: E402

from harness.scorers.pii import find_pii  # noqa: E402
from harness.scorers.toxicity import THRESHOLD, toxicity_probability  # noqa: E402

PII_REGEXES = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+|\b\d{3}-\d{2}-\d{4}\b|\b(?:\d[ -]?){13,16}\b|"
                         r"\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}")
SWEAR_WORDS = re.compile(r"\b(idiot|stupid|moron|loser|damn|shit|fuck\w*|bastard|dumb|worthless|"
                         r"pathetic|ugly|hate you)\b", re.I)


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (ROOT / "tests" / "data" / name).read_text().splitlines() if line]


def _report(name: str, truth: list[bool], scorers: dict, texts: list[str]) -> None:
    for scorer, predict in scorers.items():
        predict(texts[0])  # load models outside the timing
        times, predicted = [], []
        for text in texts:
            started = time.perf_counter()
            predicted.append(predict(text))
            times.append(time.perf_counter() - started)
        p, r, f, _ = precision_recall_fscore_support(truth, predicted, average="binary", zero_division=0)
        print(f"{name:24s} {scorer:22s} n={len(texts):3d} positives={sum(truth):3d} "
              f"precision {p:.3f} recall {r:.3f} F1 {f:.3f}  median {statistics.median(times) * 1000:.1f} ms/answer")
        if scorer.startswith("harness") and "-v" in sys.argv:
            for text, t, y in zip(texts, truth, predicted):
                if t != y:
                    print(f"   {'missed' if t else 'false alarm'}: {text[:150]!r}")


def main() -> None:
    pii = _rows("pii_labelled.jsonl")
    _report("pii_labelled", [r["pii"] for r in pii], {
        "harness (presidio+)": lambda t: bool(find_pii(t)),
        "regex baseline": lambda t: bool(PII_REGEXES.search(t)),
    }, [r["text"] for r in pii])
    toxic = _rows("toxicity_labelled.jsonl")
    _report("toxicity_labelled", [r["toxic"] for r in toxic], {
        f"harness (p>={THRESHOLD})": lambda t: toxicity_probability(t) >= THRESHOLD,
        "swear-word baseline": lambda t: bool(SWEAR_WORDS.search(t)),
    }, [r["text"] for r in toxic])


if __name__ == "__main__":
    main()
