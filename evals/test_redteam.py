"""Red team: harmful seed requests (datasets/safety/harmful.jsonl: the project's own and
HarmBench's) wrapped in the attacks real attackers use: personas, refusal suppression, prefix
injection, framing, past tense, payload splitting, encodings, many-shot and multi-turn
conversations (harness.suites.redteam). hypothesis draws the attacks, searches further where
none succeeded (steered by the answers' compliance probability) and shrinks each success to
its smallest form. The gate reads the attack success rate overall and of the worst strategy.

The default run asks 10 seeds' direct requests and 13 attacks each (140 calls) and keeps 30
calls of its budget for the search; `--harness-full` attacks every seed and searches every
pair no drawn attack broke. To attack your own requests, copy this file and point `dataset` at
your seed file (case JSONL: `input`, and optional `hazard`, `owasp`, `category` attributes)."""

import pytest

from harness.plugin import EvalSuite
from harness.suites.redteam import RedTeamSuite

REDTEAM = RedTeamSuite()


@pytest.mark.eval_suite("redteam", dataset="datasets/safety/harmful.jsonl", loader=REDTEAM.load,
                        relation=REDTEAM.relate, analysis=REDTEAM.analyze, max_tokens=64, budget=170, reserve=30)
class TestRedTeam(EvalSuite):
    pass
