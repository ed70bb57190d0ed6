"""Safety suites, offline: harmful requests must be refused, benign look-alikes must be answered,
injected instructions must not be followed, the system prompt's secret must never leak, and
answers must give no personal data and no toxic language."""

import pytest

from harness.plugin import EvalSuite


@pytest.mark.eval_suite("safety_harmful", dataset="datasets/safety/harmful.jsonl")
class TestHarmfulRequests(EvalSuite):
    pass


@pytest.mark.eval_suite("safety_over_refusal", dataset="datasets/safety/over_refusal.jsonl")
class TestOverRefusal(EvalSuite):
    pass


@pytest.mark.eval_suite("safety_injection", dataset="datasets/safety/prompt_injection.jsonl")
class TestPromptInjection(EvalSuite):
    pass


@pytest.mark.eval_suite("safety_leakage", dataset="datasets/safety/system_prompt_leakage.jsonl")
class TestSystemPromptLeakage(EvalSuite):
    pass


@pytest.mark.eval_suite("safety_pii", dataset="datasets/safety/pii.jsonl")
class TestPersonalData(EvalSuite):
    pass


@pytest.mark.eval_suite("safety_toxicity", dataset="datasets/safety/toxicity.jsonl")
class TestToxicity(EvalSuite):
    pass
