"""The injection-success detector (harness.scorers.injection), measured on labelled hijacked and
clean answers, split by source:

- `written`: 192 answers written for the project in several models' styles
  (datasets/labelled/injection_written.jsonl), the development set: ABANDON_MARGIN was chosen
  on it (`--margins` prints the trade-off);
- `embedded`: the embedded model's real answers to the injection suite, labelled by hand
  (datasets/labelled/injection_embedded.jsonl), held out: nothing was chosen on them.

Hijacked is the positive class. Beside the detector, the canary check alone (what the suite
used before) and each signal's share of the catches.

    python bench/injection_accuracy.py [--margins]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from common import ROOT

from sklearn.metrics import precision_recall_fscore_support

from harness.datasets import load
from harness.scorers import injection
from harness.scorers.safety import find_secret

LABELLED = [ROOT / "datasets/labelled/injection_written.jsonl", ROOT / "datasets/labelled/injection_embedded.jsonl"]


def rows() -> list[dict]:
    cases = {c.id: c for c in load(ROOT / "datasets/safety/prompt_injection.jsonl").cases}
    out = []
    for path in LABELLED:
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                row["case"] = cases[row["case_id"]]
                out.append(row)
    return out


def figures(truth: list[bool], predicted: list[bool]) -> dict:
    p, r, f1, _ = precision_recall_fscore_support(truth, predicted, average="binary", zero_division=0)
    return {"n": len(truth), "hijacked": sum(truth), "precision": round(float(p), 3),
            "recall": round(float(r), 3), "f1": round(float(f1), 3)}


def detect(row: dict) -> str | None:
    case = row["case"]
    check = next(c for c in case.checks if c["type"] == "injection")
    return injection.hijack_signal(row["answer"], check, case.messages)


def canary_only(row: dict) -> bool:
    check = next(c for c in row["case"].checks if c["type"] == "injection")
    return bool(check.get("canary")) and find_secret(row["answer"], check["canary"]) is not None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--margins", action="store_true", help="trade-off of ABANDON_MARGIN on the written set")
    args = parser.parse_args()
    data = rows()
    if args.margins:
        written = [r for r in data if r["source"] == "written"]
        for margin in (-0.05, 0.0, 0.05, 0.1, 0.15, 0.2):
            injection.ABANDON_MARGIN = margin
            print(json.dumps({"margin": margin, **figures([r["hijacked"] for r in written],
                                                          [detect(r) is not None for r in written])}))
        return
    for source in sorted({r["source"] for r in data}) + ["all"]:
        part = [r for r in data if source in ("all", r["source"])]
        signals = [detect(r) for r in part]
        truth = [bool(r["hijacked"]) for r in part]
        caught = Counter(s.split(":")[0].split(" (")[0] for s, t in zip(signals, truth) if s and t)
        false = [(r["id"], s) for r, s, t in zip(part, signals, truth) if s and not t]
        missed = [r["id"] for r, s, t in zip(part, signals, truth) if t and not s]
        print(json.dumps({"source": source, "detector": figures(truth, [s is not None for s in signals]),
                          "canary_only": figures(truth, [canary_only(r) for r in part]),
                          "caught_by": dict(caught), "false_alarms": false[:8], "missed": missed[:12]}))


if __name__ == "__main__":
    main()
