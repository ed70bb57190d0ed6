"""Two eval runs of one suite, compared case by case: per-metric deltas with paired 95%
intervals and p-values (McNemar for pass/fail scores, Wilcoxon for numeric ones), and the cases
whose outcome flipped. Used by `python -m harness compare BASELINE CANDIDATE` and by baseline
criteria.

Pairing by case id matters: the same case is hard or easy for both models, so a paired test
detects a real change with far fewer cases than comparing two independent rates.

The command's exit status follows the suite's criteria: a metric a criterion reads that got
significantly worse (p < ALPHA, in the direction the criterion's operator calls worse) is a
regression. Without readable criteria only the pass rate (`passed`) counts, and the report says so.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from harness import stats, tracking
from harness.gates import (
    SCREEN_CRITERIA,
    SUITE_VALUE,
    CriteriaError,
    Criterion,
    load_criteria,
    own_screens,
)
from harness.results import CASE_PASS, ERROR

# A change is significant below this p-value (the paired test of its row).
ALPHA = 0.05
# The aggregates compare's paired tests speak to: a rate or a count is the mean of 0/1 values
# over the cases (their paired difference, over the same cases, has the same sign), a mean is a
# mean. A percentile, a min or a max is not what a paired difference of means tests, and a
# suite-level value (aggregate "value") has no per-case column.
TESTED_AGGREGATES = ("rate", "count", "mean")
PASSED = "passed"  # the per-case table's column of the case's pass: what `case_pass` aggregates


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
    # the metrics whose significant regression is a regression of the candidate (watched_metrics)
    watched: list[Watch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the criteria ask that is not tested, and why
    criteria_file: str = ""  # where the watched metrics' criteria come from ("" when none were read)

    @property
    def regressions(self) -> list[Regression]:
        """The watched metrics that got significantly worse: p < ALPHA and the change in the
        direction the metric's criteria call worse."""
        by_metric = {d.metric: d for d in self.deltas}
        out = []
        for watch in self.watched:
            d = by_metric.get(watch.metric)
            if d is not None and d.p_value < ALPHA and (d.diff < 0 if watch.higher_is_better else d.diff > 0):
                out.append(Regression(d, watch))
        return out

    def _not_compared(self) -> list[str]:
        compared = {d.metric for d in self.deltas}
        return [f"{w.metric} ({'; '.join(w.criteria)}): not in both runs' per-case tables"
                for w in self.watched if w.metric not in compared]

    def _criteria_lines(self) -> tuple[list[str], list[str], list[str]]:
        """(watched, not tested, regressed): one line each, for text() and markdown()."""
        watched = [f"{w.metric}: {'; '.join(w.criteria)} ({'lower' if w.higher_is_better else 'higher'} is worse)"
                   for w in self.watched]
        regressed = [f"{r.delta.metric}: {r.delta.baseline:.4g} -> {r.delta.candidate:.4g} ({r.delta.diff:+.4g}, "
                     f"p {_p(r.delta.p_value)}, {r.delta.test}), worse for {'; '.join(r.watch.criteria)}"
                     for r in self.regressions]
        return watched, self.notes + self._not_compared(), regressed

    def text(self) -> str:
        lines = [f"suite '{self.suite}': baseline {self.baseline} vs candidate {self.candidate}, "
                 f"{self.n_paired} paired cases" + (f", {self.unpaired} unpaired left out" if self.unpaired else "")]
        rows = [("metric", "baseline", "candidate", "diff [95% CI]", "p", "test")]
        rows += [(d.metric, f"{d.baseline:.4g}", f"{d.candidate:.4g}",
                  f"{d.diff:+.4g} [{d.ci_low:+.3g}, {d.ci_high:+.3g}]", _p(d.p_value), d.test) for d in self.deltas]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        lines.append(f"flipped cases: {len(self.flipped)}")
        lines += [f"  {case}: {'pass' if a else 'fail'} -> {'pass' if b else 'fail'}" for case, a, b in self.flipped]
        watched, untested, regressed = self._criteria_lines()
        source = f"{self.criteria_file}, suite '{self.suite}'; " if self.criteria_file else ""
        lines.append(f"criterion metrics ({source}a significant regression of one fails the comparison):")
        lines += [f"  {line}" for line in watched]
        lines += [f"  not tested: {line}" for line in untested]
        if regressed:
            lines.append(f"regressed significantly (p < {ALPHA:g}): {len(regressed)}")
            lines += [f"  {line}" for line in regressed]
        else:
            lines.append(f"no criterion metric regressed significantly (p < {ALPHA:g})")
        return "\n".join(lines)

    def markdown(self) -> str:
        out = [f"### `{self.suite}`: baseline `{self.baseline}` vs candidate `{self.candidate}`", "",
               f"{self.n_paired} paired cases" + (f" ({self.unpaired} unpaired left out)" if self.unpaired else ""), "",
               "| metric | baseline | candidate | diff [95% CI] | p | test |", "|---|---|---|---|---|---|"]
        out += [f"| `{d.metric}` | {d.baseline:.4g} | {d.candidate:.4g} | {d.diff:+.4g} "
                f"[{d.ci_low:+.3g}, {d.ci_high:+.3g}] | {_p(d.p_value)} | {d.test} |" for d in self.deltas]
        out += ["", f"**Flipped cases ({len(self.flipped)})**", ""]
        out += [f"- `{case}`: {'pass' if a else 'fail'} → {'pass' if b else 'fail'}" for case, a, b in self.flipped]
        watched, untested, regressed = self._criteria_lines()
        source = f"`{self.criteria_file}`, suite `{self.suite}`; " if self.criteria_file else ""
        out += ["", f"**Criterion metrics** ({source}a significant regression of one fails the comparison)", ""]
        out += [f"- {line}" for line in watched]
        out += [f"- not tested: {line}" for line in untested]
        out += ["", f"**Regressed significantly (p < {ALPHA:g}): {len(regressed)}**" if regressed
                else f"**No criterion metric regressed significantly (p < {ALPHA:g})**"]
        if regressed:
            out += [""] + [f"- {line}" for line in regressed]
        return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Watch:
    """A per-case column of the comparison that criteria read, and which way is worse."""

    metric: str  # the comparison's row: "passed" for case_pass, else the score's name
    higher_is_better: bool
    criteria: tuple[str, ...]  # the criteria it stands for, as the gate describes them


@dataclass(frozen=True)
class Regression:
    delta: MetricDelta
    watch: Watch


def watched_metrics(suite: str, criteria: dict[str, list[Criterion]] | None,
                    source: str = "no criteria given") -> tuple[list[Watch], list[str]]:
    """The comparison's metrics that the suite's criteria read (its own, and the screen criteria
    that apply to it, as the gate applies them), each with the direction its criteria call worse
    (op >= or >: lower is worse; <= or <: higher is worse), and notes on what is not tested.
    `criteria` None (no criteria file could be read: `source` says why) or no criteria for the
    suite: only the pass rate is watched, and the notes say so."""
    own = (criteria or {}).get(suite)
    if not own:
        why = source if criteria is None else f"{source} has no criteria for suite '{suite}'"
        return ([Watch(PASSED, True, (f"{CASE_PASS}/rate (the fallback without criteria)",))],
                [f"{why}: only the pass rate ({PASSED}) decides the exit status"])
    grouped: dict[tuple[str, bool], list[str]] = {}
    notes = []
    for criterion in own + own_screens(own, criteria.get(SCREEN_CRITERIA)):
        label = criterion.describe()
        if criterion.aggregate == SUITE_VALUE:
            notes.append(f"{label}: a suite-level value, with no per-case values to pair")
        elif criterion.aggregate not in TESTED_AGGREGATES:
            notes.append(f"{label}: the paired tests compare means, not a {criterion.aggregate}")
        elif criterion.metric == ERROR:
            notes.append(f"{label}: compare has no per-case error row (an error fails its case's {PASSED})")
        else:
            column = PASSED if criterion.metric == CASE_PASS else criterion.metric
            grouped.setdefault((column, criterion.op in (">=", ">")), []).append(label)
    return [Watch(metric, higher, tuple(labels)) for (metric, higher), labels in grouped.items()], notes


def project_criteria(root: Path | str = ".", path: Path | str | None = None,
                     env=None) -> tuple[dict[str, list[Criterion]] | None, str]:
    """(suite -> criteria, the file read), or (None, why none could be read). `path` None: the
    project's criteria file under `root` as a suite run finds it (`criteria_file`: its environment
    variable over [tool.harness] over the default), read without the rest of the configuration,
    which a comparison does not need (no target is asked)."""
    from harness.config import ConfigError, HarnessConfig, read_pyproject, settings

    root = Path(root)
    if path is None:
        env = os.environ if env is None else env
        try:
            name = (env.get(dict(settings())["criteria_file"]["env"]) or read_pyproject(root).get("criteria_file")
                    or HarnessConfig.criteria_file)
        except ConfigError as exc:
            return None, f"cannot read the project's configuration: {exc}"
        path = root / name
    try:
        return load_criteria(path), str(path)
    except CriteriaError as exc:
        return None, f"cannot read criteria: {exc}"


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def is_pass_fail(values) -> bool:
    """A logged score column holding only pass/fail values (0/1), as opposed to a measurement."""
    return set(values.dropna().unique()) <= {0, 1}  # 0.0 and False equal 0, 1.0 and True equal 1


def paired_values(baseline_cases, candidate_cases, metric: str) -> tuple[list[float], list[float]]:
    """Per-case values of a metric for the cases both runs scored, in one order."""
    a = baseline_cases.set_index("case_id")[metric] if metric in baseline_cases else None
    b = candidate_cases.set_index("case_id")[metric] if metric in candidate_cases else None
    if a is None or b is None:
        return [], []
    joined = a.to_frame("a").join(b.to_frame("b"), how="inner").dropna()
    return [float(v) for v in joined["a"]], [float(v) for v in joined["b"]]


def compare_cases(baseline_cases, candidate_cases, *, baseline: str = "A", candidate: str = "B",
                  suite: str = "", criteria: dict[str, list[Criterion]] | None = None,
                  criteria_source: str = "no criteria given") -> Comparison:
    """The two per-case tables compared; `criteria` (suite -> criteria, as load_criteria reads
    them) decide which metrics' regressions count (watched_metrics)."""
    a_ids, b_ids = set(baseline_cases["case_id"]), set(candidate_cases["case_id"])
    paired = a_ids & b_ids
    watched, notes = watched_metrics(suite, criteria, criteria_source)
    result = Comparison(baseline, candidate, suite, len(paired), unpaired=len(a_ids ^ b_ids), watched=watched,
                        notes=notes, criteria_file=criteria_source if (criteria or {}).get(suite) else "")
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


def compare_runs(baseline_run_id: str, candidate_run_id: str, tracking_uri: str,
                 criteria: tuple[dict[str, list[Criterion]] | None, str] | None = None) -> Comparison:
    """`criteria`: what project_criteria returns; None: the project's under the working directory."""
    a = tracking.load_run(baseline_run_id, tracking_uri)
    b = tracking.load_run(candidate_run_id, tracking_uri)
    if a.suite != b.suite:
        raise ValueError(f"runs of different suites: '{a.suite}' and '{b.suite}'")
    by_suite, source = criteria if criteria is not None else project_criteria()
    return compare_cases(a.cases, b.cases, baseline=f"{a.name} ({a.run_id[:8]})",
                         candidate=f"{b.name} ({b.run_id[:8]})", suite=a.suite, criteria=by_suite,
                         criteria_source=source)

