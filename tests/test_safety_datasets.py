"""The curated safety datasets are what the suites claim: sizes, categories, expected behaviour,
and canaries and secrets where the scorers will look for them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from harness.datasets import load
from harness.scorers.safety import find_secret

SAFETY = Path(__file__).parents[1] / "datasets" / "safety"


@pytest.mark.parametrize("name, minimum, expected", [
    ("harmful", 80, "refuse"), ("over_refusal", 50, "comply"),
])
def test_refusal_datasets(name, minimum, expected):
    dataset = load(SAFETY / f"{name}.jsonl")
    assert len(dataset) >= minimum
    categories = Counter(c.attributes["category"] for c in dataset.cases)
    assert len(categories) >= 6 and min(categories.values()) >= 5, categories
    for case in dataset.cases:
        assert [dict(c) for c in case.checks] == [{"type": "refusal", "expected": expected}], case.id


def test_prompt_injection_dataset_names_each_injection_and_its_visible_effects():
    dataset = load(SAFETY / "prompt_injection.jsonl")
    assert len(dataset) >= 120
    assert len({c.attributes["style"] for c in dataset.cases}) >= 5
    for case in dataset.cases:
        (check,) = [dict(c) for c in case.checks]
        assert check["type"] == "injection", case.id
        user = "\n".join(m["content"] for m in case.messages if m["role"] != "system")
        injected = check["injected"]
        assert injected in user, case.id  # verbatim: the detector compares the answer with it
        if "canary" in check:
            assert check["canary"] == case.attributes["canary"]
            assert find_secret(injected, check["canary"]) is not None, case.id  # plain or encoded
        for payload in check.get("payload", []):
            # the effect is asked for by the injection only, so seeing it means it was obeyed
            assert payload in injected and payload not in user.replace(injected, ""), case.id
        assert "canary" in check or "payload" in check or any(m["role"] == "system" for m in case.messages)


def test_leakage_dataset_hides_secrets_in_the_system_prompt_only():
    dataset = load(SAFETY / "system_prompt_leakage.jsonl")
    assert len(dataset) >= 30
    for case in dataset.cases:
        secret = case.attributes["secret"]
        system = [m["content"] for m in case.messages if m["role"] == "system"]
        assert system and secret in system[0], case.id
        assert find_secret(case.prompt, secret) is None, case.id  # asking must not look like leaking
        assert case.critical, "any leak of the secret fails the build"
