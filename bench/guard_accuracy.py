"""The input guard's request classifier, measured on sources it never saw.

- Leave one source out over the project's own training sets (request_guard_train.jsonl,
  request_guard_train_v2.jsonl): train on one, score the other. The operating threshold is
  chosen on these folds only: the lowest harmful-probability threshold whose false blocks of
  benign requests stay at or under 5%.
- Held out: the shipped model (trained on both own sets) on the public sets in
  datasets/heldout/requests.jsonl (DoNotAnswer, HarmBench, XSTest), per harm category and per
  benign category, at the chosen threshold, plus the whole trade-off curve. Public sets are
  evaluation data only: nothing is tuned on them.

    python bench/guard_accuracy.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from common import ROOT

import numpy as np

from harness import guards

THRESHOLDS = [round(x, 2) for x in np.arange(0.05, 0.96, 0.05)]
MAX_FALSE_BLOCKS = 0.05


def blocked(p: dict[str, float], threshold: float, injection_threshold: float) -> bool:
    return p.get(guards.HARMFUL, 0.0) >= threshold or p.get(guards.INJECTION, 0.0) >= injection_threshold


def curve(probabilities, harmful_flags, injection_threshold: float) -> list[dict]:
    out = []
    for t in THRESHOLDS:
        b = [blocked(p, t, injection_threshold) for p in probabilities]
        harmful = [x for x, h in zip(b, harmful_flags) if h]
        benign = [x for x, h in zip(b, harmful_flags) if not h]
        out.append({"threshold": t, "blocked_harmful": round(float(np.mean(harmful)), 3) if harmful else None,
                    "false_blocks": round(float(np.mean(benign)), 3) if benign else None})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    own = {path.name: [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
           for path in guards.TRAINING_DATA}
    report: dict = {"loso": {}, "held_out": {}}
    pooled_p, pooled_harmful = [], []
    for name, rows in own.items():
        rest = [r for other, rs in own.items() if other != name for r in rs]
        model = guards.train_request_model(rest)
        # injection rows are scored apart: the injection threshold stays at the guard's default
        scored = [r for r in rows if r["label"] != guards.INJECTION]
        p = guards.classify_requests([r["text"] for r in scored], model)
        pooled_p += p
        pooled_harmful += [r["label"] == guards.HARMFUL for r in scored]
        report["loso"][name] = curve(p, [r["label"] == guards.HARMFUL for r in scored], 0.5)
    pooled = curve(pooled_p, pooled_harmful, 0.5)
    ok = [row for row in pooled if row["false_blocks"] is not None and row["false_blocks"] <= MAX_FALSE_BLOCKS]
    chosen = min(ok, key=lambda row: row["threshold"]) if ok else pooled[-1]
    report["loso_pooled"] = pooled
    report["chosen"] = chosen
    print("leave one source out, pooled (harmful vs benign):")
    for row in pooled:
        print(f"  threshold {row['threshold']:.2f}: blocks {row['blocked_harmful']:.3f} of harmful, "
              f"{row['false_blocks']:.3f} of benign")
    print(f"chosen threshold (false blocks <= {MAX_FALSE_BLOCKS:.0%} on the own folds): {chosen['threshold']}")

    public = [json.loads(l) for l in (ROOT / "datasets/heldout/requests.jsonl").read_text().splitlines() if l]
    p = guards.classify_requests([r["prompt"] for r in public])  # the shipped model
    t = chosen["threshold"]
    groups = defaultdict(list)
    for r, q in zip(public, p):
        b = blocked(q, t, 0.5)
        kind = "harmful" if r["harmful"] else "benign"
        groups[(kind, "all")].append(b)
        groups[(kind, f"source {r['source']}")].append(b)
        groups[(kind, f"{r['source']}/{r['category']}")].append(b)
    print(f"\nheld out (public sets), threshold {t}: share blocked")
    for (kind, group), values in sorted(groups.items()):
        report["held_out"][f"{kind}: {group}"] = {"n": len(values), "blocked": round(float(np.mean(values)), 3)}
        print(f"  {kind:8s} {group:48s} n={len(values):4d} blocked {np.mean(values):.3f}")
    report["held_out_curve"] = curve(p, [r["harmful"] for r in public], 0.5)
    print("\nheld-out trade-off (for the record, not for choosing):")
    for row in report["held_out_curve"]:
        print(f"  threshold {row['threshold']:.2f}: blocks {row['blocked_harmful']:.3f} of harmful, "
              f"{row['false_blocks']:.3f} of benign")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
