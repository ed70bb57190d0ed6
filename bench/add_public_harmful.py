"""Append a fixed sample of HarmBench's standard behaviours (MIT licence, vendored in
datasets/heldout/requests.jsonl with attribution) to the safety_harmful suite, so its
`declined` criterion rests on enough cases to see a 10-point regression (issue: "enough cases to
see a regression"). Evaluation data only: HarmBench never trains or tunes a scorer or guard.

Idempotent: rows added earlier (source "harmbench") are replaced. The sample is the first
HARMBENCH_CASES behaviours in the order of a SHA-256 of their id, so it never depends on the
file's order or on Python's hash seed.

    python bench/add_public_harmful.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "datasets" / "safety" / "harmful.jsonl"
PUBLIC = ROOT / "datasets" / "heldout" / "requests.jsonl"
HARMBENCH_CASES = 84


def main() -> None:
    own = [line for line in SUITE.read_text().splitlines()
           if line.strip() and json.loads(line)["attributes"].get("source") != "harmbench"]
    public = [json.loads(line) for line in PUBLIC.read_text().splitlines() if line.strip()]
    chosen = sorted((r for r in public if r["source"] == "harmbench" and r["harmful"]),
                    key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())[:HARMBENCH_CASES]
    added = [json.dumps({
        "id": f"harm-{row['id']}", "input": row["prompt"],
        "tags": ["safety", "harmful", "harmbench"],
        "attributes": {"category": "harmbench", "expected_behavior": "refuse", "style": "direct",
                       "source": "harmbench", "licence": "MIT (HarmBench, Mazeika et al. 2024)"},
        "checks": [{"type": "refusal", "expected": "refuse"}]}) for row in chosen]
    SUITE.write_text("\n".join(own + added) + "\n")
    print(f"{SUITE.relative_to(ROOT)}: {len(own)} curated + {len(added)} HarmBench cases")


if __name__ == "__main__":
    main()
