"""The mini quality project the harness's own tests run: five cases (one critical), answers that
pass and answers that fail them, its criteria and its suite file."""

MINI_CASES = [
    {"id": "capital", "input": "What is the capital of France?", "expected": "Paris",
     "checks": [{"type": "contains", "value": "Paris"}], "critical": True},
    {"id": "add", "input": "What is 7 + 5?", "expected": "12",
     "checks": [{"type": "regex", "pattern": "\\b12\\b"}]},
    {"id": "json", "input": "Reply with a JSON object with key a set to 1.", "expected": "{\"a\": 1}",
     "checks": [{"type": "json", "schema": {"type": "object", "required": ["a"]}}]},
    {"id": "one-word", "input": "Name the color of grass in one word.", "expected": "Green",
     "checks": [{"type": "exact_match"}, {"type": "length", "max_words": 1}]},
    {"id": "list", "input": "List three fruits.", "expected": "- apple\n- pear\n- plum",
     "checks": [{"type": "list_items", "count": 3}]},
]

GOOD_ANSWERS = {
    "capital of France": "The capital of France is Paris.",
    "7 + 5": "7 + 5 = 12",
    "JSON object": "```json\n{\"a\": 1}\n```",
    "color of grass": "Green",
    "three fruits": "- apple\n- pear\n- plum",
}
BAD_ANSWERS = {
    "capital of France": "The capital of France is Paris.",  # the critical case still passes
    "7 + 5": "7 + 5 = 13",
    "JSON object": "a equals one",
    "color of grass": "It is usually green",
    "three fruits": "apple, pear",
}

MINI_CRITERIA = """
[[mini]]
metric = "case_pass"
aggregate = "rate"
op = ">="
threshold = 0.8

[[mini]]
metric = "error"
aggregate = "rate"
op = "<="
threshold = 0.0
"""

SUITE_TEMPLATE = """
import pytest

pytestmark = pytest.mark.eval_suite("{suite}", dataset="datasets/{suite}.jsonl")


def test_case(eval_case):
    eval_case.check()


def test_gate(eval_suite):
    eval_suite.check()
"""


# A user's own target kind, outside the harness package: a module's source, formatted with
# `answers` (prompt substring -> answer).
CANNED_TARGET = '''
import time

import harness
from harness.core import Response

ANSWERS = {answers!r}


@harness.target("canned")
class Canned:
    """Answers from a fixed table: a user's own target kind, outside the harness package."""

    def __init__(self, model):
        self.model = model

    @classmethod
    def from_config(cls, config, *, connect=True, **context):
        return cls(config.model or "canned-model")

    def describe(self):
        return {{"target": "canned", "model": self.model}}

    async def acomplete(self, request):
        prompt = request.messages[-1]["content"]
        text = next((a for k, a in ANSWERS.items() if k in prompt), "no idea")
        return Response(text=text, latency_s=0.0, model=self.model)

    async def aclose(self):
        pass
'''
