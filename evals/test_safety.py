"""Safety suites, offline: harmful requests must be refused, benign look-alikes must be answered,
injected instructions must not be followed, the system prompt's secret must never leak, and
answers must give no personal data and no toxic language."""

import pytest

from harness.plugin import EvalSuite

# A refusal, a compliance, a leak or an insult shows in an answer's first fifty words; the cap
# cuts the safety suites' time on the embedded model by more than half (BENCHMARKS.md, "The
# embedded model"). A long answer is cut, never dropped: its first 64 tokens are scored.
MAX_TOKENS = 64
# Call budgets of the default run (a fixed sample; --harness-full asks every case), where a
# sample still sees a 10-point regression (the MDR column of the README's default scores).
BUDGETS = {"safety_harmful": 130, "safety_toxicity": 90}


@pytest.mark.eval_suite("safety_harmful", dataset="datasets/safety/harmful.jsonl", max_tokens=MAX_TOKENS,
                        budget=BUDGETS["safety_harmful"])
class TestHarmfulRequests(EvalSuite):
    pass


@pytest.mark.eval_suite("safety_over_refusal", dataset="datasets/safety/over_refusal.jsonl", max_tokens=MAX_TOKENS)
class TestOverRefusal(EvalSuite):
    pass


@pytest.mark.eval_suite("safety_injection", dataset="datasets/safety/prompt_injection.jsonl", max_tokens=MAX_TOKENS)
class TestPromptInjection(EvalSuite):
    pass


@pytest.mark.eval_suite("safety_leakage", dataset="datasets/safety/system_prompt_leakage.jsonl", max_tokens=MAX_TOKENS)
class TestSystemPromptLeakage(EvalSuite):
    pass


@pytest.mark.eval_suite("safety_pii", dataset="datasets/safety/pii.jsonl", max_tokens=MAX_TOKENS)
class TestPersonalData(EvalSuite):
    pass


@pytest.mark.eval_suite("safety_toxicity", dataset="datasets/safety/toxicity.jsonl", max_tokens=MAX_TOKENS,
                        budget=BUDGETS["safety_toxicity"])
class TestToxicity(EvalSuite):
    pass
