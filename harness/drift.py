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

The current side can also be a window of traces a deployed model logged to an MLflow experiment
(`drift_traces`, `python -m harness drift REFERENCE_RUN --traces-experiment NAME --since 24h`).
Each trace is read as one call (the last user message and the answer text) from the shapes the
harness and `mlflow.openai.autolog` write, or a few plain ones (`call_of`); the window gets the
signals that make sense without expected answers: lengths, refusal rate (both sides scored by
the harness's refusal classifier), any score the traces carry as feedback, latency (reported,
alerting only with its own threshold) and text. A window too small to test raises
InsufficientWindow: the scheduled check fails closed instead of passing on no evidence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from harness import tracking
from harness.compare import is_pass_fail

if TYPE_CHECKING:
    from harness.tracking import SpanRecord, TraceBatch, TraceRecord

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
    advisory: bool = False  # reported, never alerts (latency without its own threshold)


@dataclass
class DriftReport:
    suite: str
    reference: str
    current: str
    signals: list[Signal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was skipped or could not be read, and why
    window: WindowCases | None = None  # the current side, when it is a window of traces

    @property
    def drifted(self) -> list[Signal]:
        return [s for s in self.signals if s.drifted and not s.advisory]

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
            flag = ("(drift, not alerting)" if s.advisory else "DRIFT") if s.drifted else "-"
            rows.append((s.name, f"{s.reference:.4g}", f"{s.current:.4g}", f"{s.effect:.3g}", f"{s.threshold:g}", p,
                         flag))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        head = (f"drift in suite '{self.suite}': {self.current} (current) vs {self.reference} (reference): "
                f"{len(self.drifted)} of {len([s for s in self.signals if not s.advisory])} signals drifted")
        return "\n".join([head] + ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
                         + [f"  note: {note}" for note in self.notes])


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


def _distribution(name: str, ref, cur, alpha: float, psi_threshold: float, advisory: bool = False) -> Signal:
    from scipy.stats import ks_2samp

    ref, cur = [float(v) for v in ref], [float(v) for v in cur]
    p = float(ks_2samp(ref, cur).pvalue) if ref and cur else math.nan
    effect = psi(ref, cur)
    drifted = bool(effect >= psi_threshold and (math.isnan(p) or p < alpha))
    return Signal(name, "distribution", float(np.mean(ref)) if ref else math.nan,
                  float(np.mean(cur)) if cur else math.nan, effect, psi_threshold, p, drifted, advisory)


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
    for column in sorted(set(tracking.score_columns(reference_cases, numeric=False)) & set(current_cases.columns)):
        if column in ("refused", "latency_s"):
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
    a = tracking.load_run(reference_run_id, tracking_uri)
    b = tracking.load_run(current_run_id, tracking_uri)
    if a.suite != b.suite:
        raise ValueError(f"runs of different suites: '{a.suite}' and '{b.suite}'")
    return drift(a.cases, b.cases, suite=a.suite, reference=a.run_id, current=b.run_id, **thresholds)



# --- the current side as a window of traces --------------------------------------------------------

# Below this many usable traces the window is not tested. With fewer than ~20 observations KS and
# chi-square only see gross shifts and PSI's ten decile bins hold about two values each, so a
# quiet window would read as "no drift" when it means "no evidence" (and an empty window usually
# means the deployed app stopped logging, which is itself worth an alert).
MIN_WINDOW_TRACES = 20
MAX_WINDOW_TRACES = 5000  # newest first: enough for the tests, bounded memory and search time
DEFAULT_SINCE = "24h"  # a daily scheduled check looks at the last day
EXIT_INSUFFICIENT_WINDOW = 3  # apart from 1 (drift) and 2 (error) so an alert can say which

_CHAT_SPAN_TYPES = ("CHAT_MODEL", "LLM")
# plain shapes of an app's own spans (@mlflow.trace def answer(question) -> str, and the like)
_PROMPT_KEYS = ("prompt", "question", "query", "input", "user_input", "message")
_ANSWER_KEYS = ("content", "answer", "output", "response", "text", "result")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class InsufficientWindow(ValueError):
    """The trace window has too few usable traces to test; carries the window (and the reference's
    suite) so the failed check can still be recorded."""

    def __init__(self, message: str, window: WindowCases, suite: str = ""):
        super().__init__(message)
        self.window = window
        self.suite = suite


def parse_time(value: str, now_ms: int) -> int:
    """Epoch milliseconds of `value`: a duration back from now ("90m", "24h", "7d") or an ISO
    date-time ("2026-11-20", "2026-11-20T00:00", "...+01:00"; naive times are UTC, so a
    scheduled job means the same window on every host), or "now"."""
    text = value.strip()
    if text.lower() == "now":
        return now_ms
    match = _DURATION.match(text.lower())
    if match:
        return now_ms - int(float(match[1]) * _SECONDS[match[2]] * 1000)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {value!r} (a duration like 24h, 90m, 7d, or an ISO date-time "
                         f"like 2026-11-20T00:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text_of(content: Any) -> str | None:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n".join(parts) if parts else None
    return None


def prompt_of(inputs: Any) -> str | None:
    """The last user message of a span's inputs (chat `messages`, or a plain prompt field), or
    None when the inputs have no shape known here."""
    if isinstance(inputs, str):
        return inputs
    if not isinstance(inputs, dict):
        return None
    messages = inputs.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text_of(message.get("content"))
        return None
    for key in _PROMPT_KEYS:
        if isinstance(inputs.get(key), str):
            return inputs[key]
    if len(inputs) == 1:  # @mlflow.trace over a function of one string argument
        (only,) = inputs.values()
        if isinstance(only, str):
            return only
    return None


def answer_of(outputs: Any) -> str | None:
    """The answer text of a span's outputs (a ChatCompletion's first choice, a string, or a plain
    answer field), or None when the outputs have no shape known here. A choice without text (a
    tool call) is None too: scoring it as an empty answer would count it as a refusal."""
    if isinstance(outputs, str):
        return outputs
    if not isinstance(outputs, dict):
        return None
    choices = outputs.get("choices")
    if isinstance(choices, list):
        if choices and isinstance(choices[0], dict) and isinstance(choices[0].get("message"), dict):
            return _text_of(choices[0]["message"].get("content"))
        return None
    for key in _ANSWER_KEYS:
        if isinstance(outputs.get(key), str):
            return outputs[key]
    return None


def call_of(spans: Iterable[SpanRecord]) -> tuple[str, str, float | None] | None:
    """(prompt, answer, latency in seconds) of a trace, or None when no span has a known shape.
    The root span is read first (what the app was asked and answered); failing that the last
    chat-model span (an app whose own root span has arguments of its own making)."""
    spans = sorted(spans, key=lambda s: s.start_ns)
    roots = [s for s in spans if s.parent_id is None]
    chats = [s for s in reversed(spans) if s.span_type in _CHAT_SPAN_TYPES and s.parent_id is not None]
    for span in roots + chats:
        prompt, answer = prompt_of(span.inputs), answer_of(span.outputs)
        if prompt is not None and answer is not None:
            latency = (span.end_ns - span.start_ns) / 1e9 if span.end_ns else None
            return prompt, answer, latency
    return None


@dataclass
class WindowCases:
    """A trace window read as cases: `cases` has columns input, response, latency_s and one per
    feedback name the traces carry; the counts say what could not be read."""

    experiment: str
    since_ms: int
    until_ms: int
    cases: Any  # pandas DataFrame
    found: int  # traces in the window (up to max_traces)
    errors: int  # calls that failed: no answer to read
    unfinished: int  # still in progress when read
    unknown_shapes: dict[str, int]  # root span name -> traces whose calls could not be read
    truncated: bool

    @property
    def usable(self) -> int:
        return len(self.cases)

    def label(self) -> str:
        return f"traces of '{self.experiment}' {_iso(self.since_ms)}..{_iso(self.until_ms)}"

    def params(self) -> dict[str, str]:
        return {"experiment": self.experiment, "since": _iso(self.since_ms), "until": _iso(self.until_ms),
                "truncated": str(self.truncated).lower()}

    def metrics(self) -> dict[str, float]:
        return {"traces/found": float(self.found), "traces/usable": float(self.usable),
                "traces/errors": float(self.errors), "traces/unfinished": float(self.unfinished),
                "traces/unknown_shape": float(sum(self.unknown_shapes.values()))}

    def summary(self) -> str:
        text = (f"{self.found} traces in the window{' (the newest only: more were logged)' if self.truncated else ''}: "
                f"{self.usable} read as calls, {self.errors} failed calls, {self.unfinished} unfinished, "
                f"{sum(self.unknown_shapes.values())} of unknown shape")
        if self.unknown_shapes:
            text += " (" + ", ".join(f"'{name}': {n}" for name, n in sorted(self.unknown_shapes.items())) + ")"
        return text


def window_cases(batch: TraceBatch) -> WindowCases:
    """The batch's traces as one row per readable call; failed, unfinished and unreadable
    traces are counted, never dropped silently."""
    import pandas as pd

    rows, errors, unfinished, unknown = [], 0, 0, {}
    for trace in batch.traces:
        if trace.state == "ERROR":
            errors += 1
            continue
        if trace.state != "OK":
            unfinished += 1
            continue
        call = call_of(trace.spans)
        if call is None:
            name = _root_name(trace)
            unknown[name] = unknown.get(name, 0) + 1
            continue
        prompt, answer, latency = call
        rows.append({**trace.assessments, "input": prompt, "response": answer, "latency_s": latency})
    cases = pd.DataFrame.from_records(rows, columns=None if rows else ["input", "response", "latency_s"])
    return WindowCases(batch.experiment, batch.since_ms, batch.until_ms, cases, len(batch.traces), errors,
                       unfinished, unknown, batch.truncated)


def _root_name(trace: TraceRecord) -> str:
    roots = [s.name for s in trace.spans if s.parent_id is None]
    return roots[0] if roots else "(no spans)"


def _refused(requests, answers) -> list[bool]:
    """Each answer to its request scored by the harness's outcome classifier: the same scorer
    on both sides, so a rate difference is the model's, not the scorers'."""
    from harness.scorers.outcome import REFUSAL, classify_answers

    return [o.label == REFUSAL for o in classify_answers(list(requests), list(answers))]


def drift_window(reference_cases, window: WindowCases, *, suite: str = "", reference: str = "reference",
                 alpha: float = ALPHA, psi_threshold: float = PSI_THRESHOLD, rate_threshold: float = RATE_THRESHOLD,
                 text_threshold: float = CENTROID_THRESHOLD, latency_threshold: float | None = None) -> DriftReport:
    """The drift signals between a reference run's per-case table and a trace window. Raises
    InsufficientWindow below MIN_WINDOW_TRACES usable traces. Latency is compared but alerts only
    with `latency_threshold` (a PSI): an eval run and production differ in load and network, so
    by default a latency shift is reported, not called drift."""
    if window.usable < MIN_WINDOW_TRACES:
        what = "no traces in the window" if window.found == 0 else window.summary()
        raise InsufficientWindow(
            f"{window.label()}: {what}; at least {MIN_WINDOW_TRACES} calls are needed to test for drift, so the "
            f"check fails closed (is the deployed app still logging traces to this experiment? widen --since?)",
            window, suite)
    report = DriftReport(suite, reference, window.label(), window=window)
    report.notes.append(window.summary())
    ref = reference_cases
    if "error" in ref:  # a failed call has no answer; the window's failed calls are left out too
        failed = ref["error"].fillna("").astype(str).str.len() > 0
        if failed.any():
            report.notes.append(f"{int(failed.sum())} reference cases without an answer (error) left out")
        ref = ref[~failed]
    if len(ref) < MIN_WINDOW_TRACES:
        report.notes.append(f"the reference run has only {len(ref)} answered cases: its tests have little power")
    cur = window.cases
    ref_in, cur_in = ref["input"].fillna("").astype(str), cur["input"].fillna("").astype(str)
    ref_out, cur_out = ref["response"].fillna("").astype(str), cur["response"].fillna("").astype(str)
    report.signals.append(_distribution("input_length", ref_in.str.len(), cur_in.str.len(), alpha, psi_threshold))
    report.signals.append(_distribution("output_length", ref_out.str.len(), cur_out.str.len(), alpha, psi_threshold))
    report.signals.append(_rate("refusal_rate", _refused(ref_in, ref_out), _refused(cur_in, cur_out), alpha,
                                rate_threshold))
    skipped = ["pass_rate"]  # a trace has no expected answer to pass against
    for column in sorted(tracking.score_columns(ref, numeric=False)):
        if column in ("refused", "latency_s"):
            continue
        ref_scores = ref[column].dropna()
        if ref_scores.empty or not np.issubdtype(ref_scores.dtype, np.number):
            continue
        cur_scores = cur[column].dropna() if column in cur else None
        if cur_scores is None or cur_scores.empty:
            skipped.append(f"score/{column}")
        elif is_pass_fail(ref_scores) and is_pass_fail(cur_scores):
            report.signals.append(_rate(f"score/{column}", ref_scores, cur_scores, alpha, rate_threshold))
        else:
            report.signals.append(_distribution(f"score/{column}", ref_scores, cur_scores, alpha, psi_threshold))
    if "latency_s" in ref and ref["latency_s"].notna().any() and cur["latency_s"].notna().any():
        report.signals.append(_distribution(
            "latency_s", ref["latency_s"].dropna(), cur["latency_s"].dropna(), alpha,
            PSI_THRESHOLD if latency_threshold is None else latency_threshold, advisory=latency_threshold is None))
        if latency_threshold is None:
            report.notes.append("latency_s is reported, not alerted on (an eval run's load and network are not "
                                "production's); set a latency PSI threshold to alert")
    else:
        skipped.append("latency_s")
    report.signals.append(_text("input_text", list(ref_in), list(cur_in), text_threshold))
    report.signals.append(_text("output_text", list(ref_out), list(cur_out), text_threshold))
    report.notes.append("not compared (the traces carry no such values): " + ", ".join(skipped))
    return report


def drift_traces(reference_run_id: str, experiment: str, tracking_uri: str, *, since_ms: int, until_ms: int,
                 max_traces: int = MAX_WINDOW_TRACES, **thresholds) -> DriftReport:
    """Drift between an eval run and the traces logged to `experiment` in [since_ms, until_ms).
    Raises InsufficientWindow (with the window) when there are too few traces to test."""
    run = tracking.load_run(reference_run_id, tracking_uri)
    batch = tracking.load_traces(experiment, tracking_uri, since_ms=since_ms, until_ms=until_ms,
                                 max_traces=max_traces)
    return drift_window(run.cases, window_cases(batch), suite=run.suite, reference=run.run_id, **thresholds)
