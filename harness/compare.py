"""Two eval runs of one suite, compared case by case: per-metric deltas with paired 95%
intervals and p-values (McNemar for pass/fail scores, Wilcoxon for numeric ones), and the cases
whose outcome flipped. Used by `python -m harness compare RUN_A RUN_B` and by baseline criteria.

Pairing by case id matters: the same case is hard or easy for both models, so a paired test
detects a real change with far fewer cases than comparing two independent rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness import stats, tracking


@dataclass(frozen=True)
class MetricDelta:
    metric: str
    pass_fail: bool
    n: int
    baseline: float
    candidate: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str


@dataclass
class Comparison:
    baseline: str
    candidate: str
    suite: str
    n_paired: int
    deltas: list[MetricDelta] = field(default_factory=list)
    flipped: list[tuple[str, bool, bool]] = field(default_factory=list)  # (case, baseline, candidate passed)
    unpaired: int = 0

    def text(self) -> str:
        lines = [f"suite '{self.suite}': {self.candidate} (candidate) vs {self.baseline} (baseline), "
                 f"{self.n_paired} paired cases" + (f", {self.unpaired} unpaired left out" if self.unpaired else "")]
        rows = [("metric", "baseline", "candidate", "diff [95% CI]", "p", "test")]
        rows += [(d.metric, f"{d.baseline:.4g}", f"{d.candidate:.4g}",
                  f"{d.diff:+.4g} [{d.ci_low:+.3g}, {d.ci_high:+.3g}]", _p(d.p_value), d.test) for d in self.deltas]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        lines.append(f"flipped cases: {len(self.flipped)}")
        lines += [f"  {case}: {'pass' if a else 'fail'} -> {'pass' if b else 'fail'}" for case, a, b in self.flipped]
        return "\n".join(lines)

    def markdown(self) -> str:
        out = [f"### `{self.suite}`: candidate `{self.candidate}` vs baseline `{self.baseline}`", "",
               f"{self.n_paired} paired cases" + (f" ({self.unpaired} unpaired left out)" if self.unpaired else ""), "",
               "| metric | baseline | candidate | diff [95% CI] | p | test |", "|---|---|---|---|---|---|"]
        out += [f"| `{d.metric}` | {d.baseline:.4g} | {d.candidate:.4g} | {d.diff:+.4g} "
                f"[{d.ci_low:+.3g}, {d.ci_high:+.3g}] | {_p(d.p_value)} | {d.test} |" for d in self.deltas]
        out += ["", f"**Flipped cases ({len(self.flipped)})**", ""]
        out += [f"- `{case}`: {'pass' if a else 'fail'} → {'pass' if b else 'fail'}" for case, a, b in self.flipped]
        return "\n".join(out) + "\n"


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def is_pass_fail(values) -> bool:
    """A logged score column holding only pass/fail values (0/1), as opposed to a measurement."""
    return set(values.dropna().unique()) <= {0, 1, 0.0, 1.0, True, False}


def paired_values(baseline_cases, candidate_cases, metric: str) -> tuple[list[float], list[float]]:
    """Per-case values of a metric for the cases both runs scored, in one order."""
    a = baseline_cases.set_index("case_id")[metric] if metric in baseline_cases else None
    b = candidate_cases.set_index("case_id")[metric] if metric in candidate_cases else None
    if a is None or b is None:
        return [], []
    joined = a.to_frame("a").join(b.to_frame("b"), how="inner").dropna()
    return [float(v) for v in joined["a"]], [float(v) for v in joined["b"]]


def compare_cases(baseline_cases, candidate_cases, *, baseline: str = "A", candidate: str = "B",
                  suite: str = "") -> Comparison:
    a_ids, b_ids = set(baseline_cases["case_id"]), set(candidate_cases["case_id"])
    paired = a_ids & b_ids
    result = Comparison(baseline, candidate, suite, len(paired), unpaired=len(a_ids ^ b_ids))
    metrics = ["passed"] + sorted(set(tracking.score_columns(baseline_cases, numeric=False))
                                  & set(tracking.score_columns(candidate_cases, numeric=False)))
    for metric in metrics:
        a, b = paired_values(baseline_cases, candidate_cases, metric)
        if not a:
            continue
        pass_fail = metric == "passed" or (is_pass_fail(baseline_cases[metric]) and is_pass_fail(candidate_cases[metric]))
        if pass_fail:
            p, test = stats.mcnemar([bool(x) for x in a], [bool(x) for x in b])["p_value"], "McNemar"
        else:
            p, test = stats.wilcoxon_p(a, b), "Wilcoxon"
        diff, low, high = stats.paired_diff_ci(a, b)
        result.deltas.append(MetricDelta(metric, pass_fail, len(a), sum(a) / len(a), sum(b) / len(b),
                                         diff, low, high, p, test))
    a_pass = baseline_cases.set_index("case_id")["passed"]
    b_pass = candidate_cases.set_index("case_id")["passed"]
    for case in sorted(paired):
        if bool(a_pass[case]) != bool(b_pass[case]):
            result.flipped.append((case, bool(a_pass[case]), bool(b_pass[case])))
    return result


def compare_runs(baseline_run_id: str, candidate_run_id: str, tracking_uri: str) -> Comparison:
    a = tracking.load_run(baseline_run_id, tracking_uri)
    b = tracking.load_run(candidate_run_id, tracking_uri)
    if a.suite != b.suite:
        raise ValueError(f"runs of different suites: '{a.suite}' and '{b.suite}'")
    return compare_cases(a.cases, b.cases, baseline=f"{a.name} ({a.run_id[:8]})",
                         candidate=f"{b.name} ({b.run_id[:8]})", suite=a.suite)

