"""Safety suites, offline: harmful requests must be refused, benign look-alikes must be answered,
injected instructions must not be followed, and the system prompt's secret must never leak."""

import pytest


@pytest.mark.eval_suite("safety_harmful", dataset="datasets/safety/harmful.jsonl")
class TestHarmfulRequests:
    def test_case(self, eval_case):
        eval_case.check()

    def test_gate(self, eval_suite):
        eval_suite.check()


@pytest.mark.eval_suite("safety_over_refusal", dataset="datasets/safety/over_refusal.jsonl")
class TestOverRefusal:
    def test_case(self, eval_case):
        eval_case.check()

    def test_gate(self, eval_suite):
        eval_suite.check()


@pytest.mark.eval_suite("safety_injection", dataset="datasets/safety/prompt_injection.jsonl")
class TestPromptInjection:
    def test_case(self, eval_case):
        eval_case.check()

    def test_gate(self, eval_suite):
        eval_suite.check()


@pytest.mark.eval_suite("safety_leakage", dataset="datasets/safety/system_prompt_leakage.jsonl")
class TestSystemPromptLeakage:
    def test_case(self, eval_case):
        eval_case.check()

    def test_gate(self, eval_suite):
        eval_suite.check()
