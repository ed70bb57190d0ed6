"""Golden answers: the embedded model's exact greedy answers to a dozen prompts from the default
suites, through the harness's own target and engine. A llama.cpp build, flag, version or server
setting that changes any answer fails here at once, before it silently moves every calibrated
criterion. The prompts are asked twice, in two orders with other prompts between, because the
server reuses cached prompt prefixes: an answer must not depend on what was asked before it.

Regenerate after a deliberate change (then recalibrate the criteria, see README):
    python tests/test_golden_answers.py --write
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "data" / "golden_answers.json"
# (dataset, case id, max_tokens of its suite): factual, arithmetic, format, harmful, benign,
# injection, leakage, PII and toxicity bait, a bias decision, a description, a BBQ item
PICKS = [
    ("datasets/quality/cases.jsonl", "factual-capital-france", 256),
    ("datasets/quality/cases.jsonl", None, 256),
    ("datasets/safety/harmful.jsonl", None, 64),
    ("datasets/safety/over_refusal.jsonl", None, 64),
    ("datasets/safety/prompt_injection.jsonl", None, 64),
    ("datasets/safety/system_prompt_leakage.jsonl", None, 64),
    ("datasets/safety/pii.jsonl", None, 64),
    ("datasets/safety/toxicity.jsonl", None, 64),
    ("datasets/bias/decisions.jsonl", None, 48),
    ("datasets/bias/descriptions.jsonl", None, 96),
    ("datasets/bias/ambiguous.jsonl", None, 48),
]


def golden_cases():
    """The picked cases: a named one, else the file's third."""
    from harness.suites.bias import load_ambiguous, load_templates
    from harness.datasets import load

    picked = []
    for path, case_id, max_tokens in PICKS:
        loader = load_templates if "decisions" in path or "descriptions" in path else (
            load_ambiguous if "ambiguous" in path else load)
        cases = loader(ROOT / path).cases
        chosen = [c for c in cases if c.id == case_id] if case_id else [cases[2]]
        picked += [(c, max_tokens) for c in chosen]
    return picked


def ask(picked, server, order):
    """The answers to `picked` in the given order, one request at a time (as a run asks them)."""
    from harness import engine
    from harness.config import load_config
    from harness.targets import build_target

    config = replace(load_config(ROOT, env={}), traces=False)
    answers = {}
    for index in order:
        case, max_tokens = picked[index]
        target = build_target(replace(config, max_tokens=max_tokens), local_base_url=server.base_url,
                              local_model=server.alias, local_identity=server.identity())
        response = engine.run([case], target, engine.EngineSettings(concurrency=1)).first[0]
        answers[case.id] = response.text if response.ok else f"<error: {response.error}>"
    return answers


@pytest.mark.local_model
def test_embedded_model_gives_its_golden_answers_in_any_order(local_model_server):
    golden = json.loads(GOLDEN.read_text())
    picked = golden_cases()
    assert [c.id for c, _ in picked] == [g["id"] for g in golden], "PICKS changed: regenerate"
    forward = ask(picked, local_model_server, range(len(picked)))
    backward = ask(picked, local_model_server, reversed(range(len(picked))))
    expected = {g["id"]: g["answer"] for g in golden}
    changed = [i for i in expected if forward[i] != expected[i]]
    assert not changed, "answers changed (build, flags or server settings?):\n" + "\n".join(
        f"  {i}:\n    golden: {expected[i]!r}\n    now:    {forward[i]!r}" for i in changed)
    assert backward == forward, "an answer depends on what was asked before it"


def write() -> None:
    from harness.targets.local_server import LocalModelServer

    picked = golden_cases()
    with LocalModelServer() as server:
        answers = ask(picked, server, range(len(picked)))
    GOLDEN.write_text(json.dumps([{"id": c.id, "max_tokens": m, "prompt": c.prompt, "answer": answers[c.id]}
                                  for c, m in picked], indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(picked)} golden answers to {GOLDEN}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    write()
