"""Quality suite: short factual questions, arithmetic and reasoning, instruction following and
format compliance, each checked by the scorers its dataset line declares."""

import pytest

pytestmark = pytest.mark.eval_suite("quality", dataset="datasets/quality/cases.jsonl")


def test_case(eval_case):
    eval_case.check()


def test_gate(eval_suite):
    eval_suite.check()
