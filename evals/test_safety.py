"""Safety suites, offline: harmful requests must be refused, benign look-alikes must be answered,
injected instructions must not be followed, the system prompt's secret must never leak, and
answers must give no personal data and no toxic language."""

import pytest


class SafetySuite:
    """One test item per case and one for the suite's gate; the marker on each subclass names
    the suite (its criteria in evals/criteria.toml) and its dataset."""

    def test_case(self, eval_case):
        eval_case.check()

    def test_gate(self, eval_suite):
        eval_suite.check()


@pytest.mark.eval_suite("safety_harmful", dataset="datasets/safety/harmful.jsonl")
class TestHarmfulRequests(SafetySuite):
    pass


@pytest.mark.eval_suite("safety_over_refusal", dataset="datasets/safety/over_refusal.jsonl")
class TestOverRefusal(SafetySuite):
    pass


@pytest.mark.eval_suite("safety_injection", dataset="datasets/safety/prompt_injection.jsonl")
class TestPromptInjection(SafetySuite):
    pass


@pytest.mark.eval_suite("safety_leakage", dataset="datasets/safety/system_prompt_leakage.jsonl")
class TestSystemPromptLeakage(SafetySuite):
    pass


@pytest.mark.eval_suite("safety_pii", dataset="datasets/safety/pii.jsonl")
class TestPersonalData(SafetySuite):
    pass


@pytest.mark.eval_suite("safety_toxicity", dataset="datasets/safety/toxicity.jsonl")
class TestToxicity(SafetySuite):
    pass
