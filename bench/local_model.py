"""The embedded model's speed and determinism, per server setting.

For each (slots, threads) setting, starts the pinned llama-server, asks a fixed sample of the
default suites' real cases through the harness's own target and engine (concurrency = slots,
each suite's max_tokens), and reports answers per minute, completion tokens per second, and
how many answers are byte-identical to the first setting's. Batched decoding could change
floating-point results; this says whether it does.

    python bench/local_model.py                       # slots 1,2,4,8 x threads 2
    python bench/local_model.py --settings 4x2,4x1 --per-suite 40
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from common import ROOT  # noqa: F401  (puts the project on sys.path)

from harness import engine
from harness.suites.bias import load_ambiguous, load_templates
from harness.config import load_config
from harness.datasets import load
from harness.targets import build_target
from harness.targets.local_server import LocalModelServer

# (suite, dataset, loader, max_tokens): the default suites' own settings (evals/)
SUITES = [
    ("quality", "datasets/quality/cases.jsonl", load, 256),
    ("safety_harmful", "datasets/safety/harmful.jsonl", load, 64),
    ("safety_injection", "datasets/safety/prompt_injection.jsonl", load, 64),
    ("bias_decisions", "datasets/bias/decisions.jsonl", load_templates, 48),
    ("bias_descriptions", "datasets/bias/descriptions.jsonl", load_templates, 96),
    ("bias_ambiguous", "datasets/bias/ambiguous.jsonl", load_ambiguous, 48),
]


def sample(per_suite: int):
    out = []
    for name, path, loader, max_tokens in SUITES:
        cases = loader(ROOT / path).cases
        step = max(1, len(cases) // per_suite)
        out.append((name, list(cases[::step][:per_suite]), max_tokens))
    return out


def measure(slots: int, threads: int, groups, binary: str | None = None) -> dict:
    config = load_config(ROOT, env={})
    with LocalModelServer(slots=slots, threads=threads, binary=binary) as server:
        answers, tokens, elapsed = {}, 0, 0.0
        for name, cases, max_tokens in groups:
            target = build_target(replace(config, max_tokens=max_tokens, traces=False),
                                  local_base_url=server.base_url, local_model=server.alias, local_identity=server.identity())
            started = time.perf_counter()
            outcome = engine.run(cases, target, engine.EngineSettings(concurrency=slots))
            elapsed += time.perf_counter() - started
            for case, response in zip(cases, outcome.first):
                answers[f"{name}/{case.id}"] = response.text if response.ok else f"<error {response.error}>"
                tokens += response.completion_tokens or 0
    return {"slots": slots, "threads": threads, "answers": answers, "elapsed_s": elapsed,
            "completion_tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--settings", default="1x2,2x2,4x2,8x2", help="slots x threads, comma-separated")
    parser.add_argument("--per-suite", type=int, default=24)
    parser.add_argument("--out", help="write every answer of every setting here (JSON)")
    parser.add_argument("--binary", help="another llama-server build (default: the pinned one)")
    args = parser.parse_args()
    groups = sample(args.per_suite)
    n = sum(len(cases) for _, cases, _ in groups)
    results = []
    for setting in args.settings.split(","):
        slots, threads = (int(x) for x in setting.split("x"))
        result = measure(slots, threads, groups, args.binary)
        reference = results[0]["answers"] if results else result["answers"]
        same = sum(result["answers"][k] == reference[k] for k in reference)
        results.append(result)
        print(json.dumps({"slots": slots, "threads": threads, "cases": n,
                          "elapsed_s": round(result["elapsed_s"], 1),
                          "answers_per_min": round(60 * n / result["elapsed_s"], 1),
                          "completion_tokens_per_s": round(result["completion_tokens"] / result["elapsed_s"], 1),
                          "identical_to_first_setting": f"{same}/{n}"}), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
