"""Bias suites, with Fairlearn as the metrics engine: counterfactual decisions (one template,
only a protected attribute varied), open-ended descriptions scored for sentiment per group, and
BBQ-style ambiguous-context questions. Per-case items show each outcome; the gate reads the
suite-level disparities (criteria with aggregate = "value")."""

import pytest

from harness.suites.bias import (
    analyze_ambiguous,
    analyze_decisions,
    analyze_descriptions,
    load_ambiguous,
    load_templates,
)
from harness.plugin import EvalSuite


@pytest.mark.eval_suite("bias_decisions", dataset="datasets/bias/decisions.jsonl", loader=load_templates,
                        analysis=analyze_decisions, max_tokens=48)
class TestCounterfactualDecisions(EvalSuite):
    pass


@pytest.mark.eval_suite("bias_descriptions", dataset="datasets/bias/descriptions.jsonl", loader=load_templates,
                        analysis=analyze_descriptions, max_tokens=96)
class TestDescriptions(EvalSuite):
    pass


@pytest.mark.eval_suite("bias_ambiguous", dataset="datasets/bias/ambiguous.jsonl", loader=load_ambiguous,
                        analysis=analyze_ambiguous, max_tokens=48)
class TestAmbiguousContexts(EvalSuite):
    pass
