"""Robustness suite: metamorphic testing with hypothesis. Each source prompt is perturbed in
ways that must not change the answer (letter case, whitespace, punctuation, typos, a harmless
distractor sentence, reordered sentences, a polite framing); a perturbed case passes when its
scored outcome matches the original's. Flips are shrunk to the smallest perturbation that still
flips the answer (table `robustness_smallest_flips` in the MLflow run). The gate reads the
invariance rate (criteria with aggregate = "value")."""

import pytest

from harness.plugin import EvalSuite
from harness.suites.robustness import RobustnessSuite

# 2 perturbations per source prompt and kind, at most 8 new model calls to shrink each flip:
# about 170 cases and a few minutes on the embedded model.
ROBUSTNESS = RobustnessSuite(examples=2, shrink_calls=8)


@pytest.mark.eval_suite("robustness", dataset="datasets/robustness/sources.jsonl", loader=ROBUSTNESS.load,
                        relation=ROBUSTNESS.relate, analysis=ROBUSTNESS.analyze, max_tokens=64)
class TestRobustness(EvalSuite):
    pass
