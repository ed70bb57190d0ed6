"""Drift between two eval runs of one suite (a reference and a current run): did the inputs or
the model's outputs move? Used by `python -m harness drift REFERENCE_RUN CURRENT_RUN`, which
exits 1 above the configured thresholds so it can run as a scheduled alert.

Signals, each with a scipy test and an effect size (a test alone flags trivial shifts on big
runs, an effect alone flags noise on small ones; drift needs the effect over its threshold):
- lengths of prompts and answers, and every numeric score column: two-sample KS test and the
  population stability index (PSI, on the reference's deciles);
- refusal rate and pass rate: chi-square test on the 2x2 table and the absolute difference;
- the text distribution of prompts and answers: cosine distance between the TF-IDF centroids
  of the two runs (one vocabulary fitted on both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from harness.compare import NOT_SCORES, is_pass_fail

PSI_THRESHOLD = 0.2  # the usual "significant shift" line for PSI
RATE_THRESHOLD = 0.10  # absolute change of a rate
CENTROID_THRESHOLD = 0.10  # cosine distance between TF-IDF centroids
ALPHA = 0.01


@dataclass(frozen=True)
class Signal:
    name: str
    kind: str  # distribution, rate, text
    reference: float
    current: float
    effect: float  # PSI, |rate difference| or cosine distance
    threshold: float
    p_value: float  # nan for the text signals (no test)
    drifted: bool


@dataclass
class DriftReport:
    suite: str
    reference: str
    current: str
    signals: list[Signal] = field(default_factory=list)

    @property
    def drifted(self) -> list[Signal]:
        return [s for s in self.signals if s.drifted]

    def metrics(self) -> dict[str, float]:
        out = {}
        for s in self.signals:
            out[f"drift/{s.name}/effect"] = s.effect
            if not math.isnan(s.p_value):
                out[f"drift/{s.name}/p_value"] = s.p_value
            out[f"drift/{s.name}/drifted"] = float(s.drifted)
        out["drift/signals_drifted"] = float(len(self.drifted))
        return out

    def text(self) -> str:
        rows = [("signal", "reference", "current", "effect", "threshold", "p", "drift")]
        for s in self.signals:
            p = "" if math.isnan(s.p_value) else ("<0.001" if s.p_value < 0.001 else f"{s.p_value:.3f}")
            rows.append((s.name, f"{s.reference:.4g}", f"{s.current:.4g}", f"{s.effect:.3g}", f"{s.threshold:g}", p,
                         "DRIFT" if s.drifted else "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        head = (f"drift in suite '{self.suite}': {self.current} (current) vs {self.reference} (reference): "
                f"{len(self.drifted)} of {len(self.signals)} signals drifted")
        return "\n".join([head] + ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows])


def psi(reference, current, bins: int = 10) -> float:
    """Population stability index of `current` against `reference`'s quantile bins."""
    ref, cur = np.asarray(reference, float), np.asarray(current, float)
    if ref.size == 0 or cur.size == 0:
        return math.nan
    # right-closed bins cut at the reference's deciles, its maximum included, plus one bin above
    # it: values beyond anything the reference saw land in a bin of their own
    cuts = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1))[1:])
    r = np.bincount(np.searchsorted(cuts, ref, side="left"), minlength=cuts.size + 1) / ref.size
    c = np.bincount(np.searchsorted(cuts, cur, side="left"), minlength=cuts.size + 1) / cur.size
    r, c = np.clip(r, 1e-4, None), np.clip(c, 1e-4, None)  # empty bins would make PSI infinite
    return float(np.sum((c - r) * np.log(c / r)))


def _distribution(name: str, ref, cur, alpha: float, psi_threshold: float) -> Signal:
    from scipy.stats import ks_2samp

    ref, cur = [float(v) for v in ref], [float(v) for v in cur]
    p = float(ks_2samp(ref, cur).pvalue) if ref and cur else math.nan
    effect = psi(ref, cur)
    drifted = bool(effect >= psi_threshold and (math.isnan(p) or p < alpha))
    return Signal(name, "distribution", float(np.mean(ref)) if ref else math.nan,
                  float(np.mean(cur)) if cur else math.nan, effect, psi_threshold, p, drifted)


def _rate(name: str, ref, cur, alpha: float, threshold: float) -> Signal:
    from scipy.stats import chi2_contingency

    ref, cur = [bool(v) for v in ref], [bool(v) for v in cur]
    a, b = sum(ref), sum(cur)
    table = np.array([[a, len(ref) - a], [b, len(cur) - b]])
    if (table.sum(axis=0) == 0).any():  # both runs all-true or all-false: nothing to test
        p = 1.0
    else:
        p = float(chi2_contingency(table).pvalue)
    r, c = a / len(ref), b / len(cur)
    return Signal(name, "rate", r, c, abs(c - r), threshold, p, bool(abs(c - r) >= threshold and p < alpha))


def _text(name: str, ref: list[str], cur: list[str], threshold: float) -> Signal:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True).fit(ref + cur)
    a = np.asarray(vectorizer.transform(ref).mean(axis=0)).ravel()
    b = np.asarray(vectorizer.transform(cur).mean(axis=0)).ravel()
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    distance = 1.0 - float(a @ b / norm) if norm else math.nan
    return Signal(name, "text", float(np.linalg.norm(a)), float(np.linalg.norm(b)), distance, threshold, math.nan,
                  bool(distance >= threshold))


def drift(reference_cases, current_cases, *, suite: str = "", reference: str = "reference",
          current: str = "current", alpha: float = ALPHA, psi_threshold: float = PSI_THRESHOLD,
          rate_threshold: float = RATE_THRESHOLD, text_threshold: float = CENTROID_THRESHOLD) -> DriftReport:
    """The drift signals between two per-case tables (as logged in eval_results.json)."""
    report = DriftReport(suite, reference, current)
    ref_in, cur_in = reference_cases["input"].fillna("").astype(str), current_cases["input"].fillna("").astype(str)
    ref_out = reference_cases["response"].fillna("").astype(str)
    cur_out = current_cases["response"].fillna("").astype(str)
    report.signals.append(_distribution("input_length", ref_in.str.len(), cur_in.str.len(), alpha, psi_threshold))
    report.signals.append(_distribution("output_length", ref_out.str.len(), cur_out.str.len(), alpha, psi_threshold))
    report.signals.append(_rate("pass_rate", reference_cases["passed"], current_cases["passed"], alpha, rate_threshold))
    if "refused" in reference_cases and "refused" in current_cases:
        report.signals.append(_rate("refusal_rate", reference_cases["refused"].dropna(),
                                    current_cases["refused"].dropna(), alpha, rate_threshold))
    for column in sorted(set(reference_cases.columns) & set(current_cases.columns)):
        if column in NOT_SCORES or column in ("passed", "refused", "latency_s"):
            continue
        ref, cur = reference_cases[column].dropna(), current_cases[column].dropna()
        if ref.empty or cur.empty or not np.issubdtype(ref.dtype, np.number):
            continue
        if is_pass_fail(ref) and is_pass_fail(cur):  # a rate, not a distribution
            report.signals.append(_rate(f"score/{column}", ref, cur, alpha, rate_threshold))
        else:
            report.signals.append(_distribution(f"score/{column}", ref, cur, alpha, psi_threshold))
    report.signals.append(_text("input_text", list(ref_in), list(cur_in), text_threshold))
    report.signals.append(_text("output_text", list(ref_out), list(cur_out), text_threshold))
    return report


def drift_runs(reference_run_id: str, current_run_id: str, tracking_uri: str, **thresholds) -> DriftReport:
    from harness import tracking

    a = tracking.load_run(reference_run_id, tracking_uri)
    b = tracking.load_run(current_run_id, tracking_uri)
    if a.suite != b.suite:
        raise ValueError(f"runs of different suites: '{a.suite}' and '{b.suite}'")
    return drift(a.cases, b.cases, suite=a.suite, reference=a.run_id, current=b.run_id, **thresholds)
