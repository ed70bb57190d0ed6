"""Ask the embedded model (pinned llama-server, the safety suites' settings: temperature 0, 64
tokens) a sample of requests from several prompt sources, and write its answers, unlabelled, for
labelling by hand (rules: datasets/labelled/README.md).

Sources: the project's own request-guard training prompts (`own-guard-prompts`; `--set own-v2`:
the second set, `own-guard-prompts-v2`), the project's safety suites (`project-suites`), and the
public held-out sets in datasets/heldout/ (DoNotAnswer, HarmBench, XSTest). The sample is fixed (every k-th request), so a rerun asks the same requests.

    python bench/collect_answers.py --out /tmp/answers.jsonl [--set own-v2]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from common import ROOT

from harness import engine
from harness.config import load_config
from harness.datasets import Case, load
from harness.targets import build_target
from harness.targets.local_server import LocalModelServer

MAX_TOKENS = 64  # evals/test_safety.py
PUBLIC_SAMPLE = {"donotanswer": 150, "harmbench": 80, "xstest": 160}


def _every(rows: list, n: int) -> list:
    step = max(1, len(rows) // n)
    return rows[::step][:n]


def own_v2_requests() -> list[dict]:
    """The second set of the project's own guard prompts (harmful and benign edgy, by category)."""
    rows = [json.loads(l) for l in (ROOT / "harness/scorers/data/request_guard_train_v2.jsonl").read_text().splitlines() if l]
    return [{"id": f"own2-{i:03d}", "source": "own-guard-prompts-v2", "prompt": r["text"],
             "harmful": r["label"] == "harmful", "category": r["category"]} for i, r in enumerate(rows)]


def requests() -> list[dict]:
    out = []
    guard = [json.loads(l) for l in (ROOT / "harness/scorers/data/request_guard_train.jsonl").read_text().splitlines() if l]
    harmful = [r for r in guard if r["label"] == "harmful"]
    benign = _every([r for r in guard if r["label"] == "benign"], 150)
    for i, r in enumerate(harmful + benign):
        out.append({"id": f"own-{i:03d}", "source": "own-guard-prompts", "prompt": r["text"],
                    "harmful": r["label"] == "harmful", "category": r["label"]})
    for name in ("harmful", "over_refusal"):
        for case in load(ROOT / f"datasets/safety/{name}.jsonl").cases:
            prompt = next(m["content"] for m in reversed(case.messages) if m["role"] == "user")
            out.append({"id": case.id, "source": "project-suites", "prompt": prompt,
                        "harmful": name == "harmful", "category": case.attributes.get("category")})
    public = [json.loads(l) for l in (ROOT / "datasets/heldout/requests.jsonl").read_text().splitlines() if l]
    for source, n in PUBLIC_SAMPLE.items():
        out.extend(_every([r for r in public if r["source"] == source], n))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", choices=("first", "own-v2"), default="first",
                        help="first: own guard prompts, project suites, public samples; own-v2: the second own set")
    args = parser.parse_args()
    rows = requests() if args.set == "first" else own_v2_requests()
    config = load_config(ROOT, env={})
    cases = [Case(id=r["id"], messages=({"role": "user", "content": r["prompt"]},)) for r in rows]
    with LocalModelServer() as server:
        target = build_target(replace(config, max_tokens=MAX_TOKENS, traces=False),
                              local_base_url=server.base_url, local_model=server.alias,
                              local_identity=server.identity())
        outcome = engine.run(cases, target, engine.EngineSettings(concurrency=1))
    with open(args.out, "w", encoding="utf-8") as fh:
        for row, response in zip(rows, outcome.first):
            fh.write(json.dumps({**row, "response": response.text if response.ok else None}, ensure_ascii=False) + "\n")
    print(f"{len(rows)} answers -> {args.out}")


if __name__ == "__main__":
    main()
