"""Metamorphic robustness: perturb a prompt in a way that must not change the answer and check
that the scored outcome stays the same.

Perturbation kinds (each a hypothesis strategy over edits of one prompt):
  case         letter case of the whole prompt (lower, upper, title, swapped)
  whitespace   extra spaces, tabs and newlines between words or at the ends
  punctuation  final punctuation dropped, "?" doubled, commas and apostrophes dropped ...
  typos        1-3 misspelt words (swapped, dropped, doubled or neighbouring-key letters)
  distractor   a harmless unrelated sentence before or after the prompt
  reorder      the prompt's sentences in another order (prompts of two or more sentences)
  paraphrase   the prompt framed by a polite template ("Quick question: ...")

The suite runs in three steps, all deterministic (a fixed seed per source case and kind, no
example database):
1. `RobustnessSuite.load` (collection time, no model calls) draws `examples` perturbations per
   source case and kind; each becomes a case of its own, next to its unperturbed original.
2. The engine asks all of them like any suite (concurrency, retries, journal).
3. `RobustnessSuite.relate` compares each perturbed case's outcome with its original's. For
   every (source case, kind) with a flip, hypothesis replays the same examples and shrinks the
   flipping one, asking the model about each smaller candidate (at most `shrink_calls` new
   model calls per flip, through the engine and a journal, so a replay reproduces it): the
   smallest perturbation found that still flips the outcome is added as a `minimal` row.

`RobustnessSuite.analyze` gives the invariance rate per kind and overall (Wilson intervals,
gated like any suite metric) and the table of smallest flips.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Sequence

from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st

from harness.datasets import Case, Dataset, digest_cases, load
from harness.results import ResultTable, SuiteAnalysis, answered_and_passed, metric_name
from harness.core import Response, Score

KINDS = ("case", "whitespace", "punctuation", "typos", "distractor", "reorder", "paraphrase")
INVARIANT = "invariant"  # the per-case score: 1 when the outcome matches the original's

# Harmless sentences that bear on no question in the datasets.
DISTRACTORS = (
    "By the way, it is raining here today.",
    "I am writing this from a train.",
    "My cat is asleep on the sofa.",
    "I had a cup of tea this morning.",
    "This is for a notebook I keep.",
)
# Framings that keep the request as it is.
TEMPLATES = (
    "Quick question: {prompt}",
    "{prompt} Thanks!",
    "Please help me with this. {prompt}",
    "Hi! {prompt}",
    "I would like to know the following. {prompt}",
    "{prompt} Thank you in advance.",
)
CASE_MODES = ("lower", "upper", "title", "swapcase")
SPACES = ("  ", "\t", "\n", "   ", " \n ")
PUNCTUATION_EDITS = ("drop_final", "double_question", "drop_commas", "drop_apostrophes", "space_before", "add_exclaim")
TYPO_KINDS = ("swap", "drop", "double", "neighbour")
_NEIGHBOURS = dict(zip("qwertyuiopasdfghjklzxcvbnm", "wqrtyuiopoadsfghjkklxcvbnmn"))


@dataclass(frozen=True)
class Perturbation:
    kind: str
    text: str  # the perturbed prompt
    change: str  # what was done, for a human reading the report


# --- the edits (pure functions of the prompt and the drawn parameters) --------------------------

def _recase(prompt: str, mode: str) -> Perturbation:
    text = {"lower": str.lower, "upper": str.upper, "title": str.title, "swapcase": str.swapcase}[mode](prompt)
    return Perturbation("case", text, f"letter case: {mode}")


def _respace(prompt: str, edits: list[tuple[int, str]]) -> Perturbation:
    words = prompt.split(" ")
    gaps = [" "] * (len(words) - 1)
    lead = trail = ""
    for where, space in edits:
        if where == 0:
            lead = space
        elif where == len(words):
            trail = space
        else:
            gaps[where - 1] = space
    text = lead + "".join(w + g for w, g in zip(words, gaps + [""])) + trail
    shown = ", ".join(f"{space!r} at gap {where}" for where, space in sorted(edits))
    return Perturbation("whitespace", text, f"whitespace: {shown}")


def _punctuate(prompt: str, edits: frozenset[str]) -> Perturbation:
    text, done = prompt, []
    for edit in PUNCTUATION_EDITS:  # a fixed order, so one set of edits gives one text
        if edit not in edits:
            continue
        before = text
        if edit == "drop_final":
            text = text.rstrip().rstrip(".?!")
        elif edit == "double_question":
            text = text.replace("?", "??")
        elif edit == "drop_commas":
            text = re.sub(r"(?<!\d),|,(?!\d)", "", text)  # not the thousands separator in 1,000
        elif edit == "drop_apostrophes":
            text = re.sub(r"(?<=[A-Za-z])['’](?=[A-Za-z])", "", text)
        elif edit == "space_before":
            text = re.sub(r"(?<=\w)([?!])", r" \1", text)
        elif edit == "add_exclaim":
            text = text.rstrip() + "!"
        if text != before:
            done.append(edit)
    return Perturbation("punctuation", text, "punctuation: " + ", ".join(done))


def _typo_targets(prompt: str) -> list[re.Match]:
    """Words a typo may hit: alphabetic, 4+ letters, not all capitals (JSON, YES may be part of
    the task) and not inside quotes (text the answer may have to repeat)."""
    quoted = [m.span() for m in re.finditer(r"\"[^\"]*\"|'[^']*'", prompt)]
    return [m for m in re.finditer(r"[A-Za-z]{4,}", prompt)
            if not m.group(0).isupper() and not any(a <= m.start() < b for a, b in quoted)]


def _misspell(word: str, kind: str, position: int) -> str:
    i = 1 + position % (len(word) - 2)  # never the first or last letter: still readable
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "drop":
        return word[:i] + word[i + 1:]
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    near = _NEIGHBOURS.get(word[i].lower(), word[i])
    return word[:i] + (near.upper() if word[i].isupper() else near) + word[i + 1:]


def _typos(prompt: str, edits: list[tuple[int, str, int]]) -> Perturbation:
    targets = _typo_targets(prompt)
    text, shown = prompt, []
    for index, kind, position in sorted(edits, key=lambda e: -targets[e[0]].start()):  # right to left
        match = targets[index]
        wrong = _misspell(match.group(0), kind, position)
        text = text[:match.start()] + wrong + text[match.end():]
        shown.append(f"{match.group(0)!r} -> {wrong!r}")
    return Perturbation("typos", text, "typos: " + ", ".join(reversed(shown)))


def _sentences(prompt: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", prompt.strip()) if s]


def _reorder(prompt: str, order: list[int]) -> Perturbation:
    parts = _sentences(prompt)
    return Perturbation("reorder", " ".join(parts[i] for i in order),
                        "sentences reordered: " + ",".join(str(i + 1) for i in order))


def _distract(prompt: str, sentence: str, where: str) -> Perturbation:
    text = f"{sentence} {prompt}" if where == "before" else f"{prompt} {sentence}"
    return Perturbation("distractor", text, f"distractor {where}: {sentence!r}")


def _frame(prompt: str, template: str) -> Perturbation:
    return Perturbation("paraphrase", template.format(prompt=prompt), f"framed as {template!r}")


def perturbations(kind: str, prompt: str) -> st.SearchStrategy[Perturbation] | None:
    """The strategy of one kind's perturbations of `prompt` (never `prompt` itself); None when
    the kind cannot change this prompt (reorder needs two sentences, typos a long word).
    Hypothesis shrinks towards the first listed options and fewer edits, so the smallest flip
    found is a small, readable one."""
    strategy: st.SearchStrategy[Perturbation]
    if kind == "case":
        strategy = st.sampled_from(CASE_MODES).map(lambda mode: _recase(prompt, mode))
    elif kind == "whitespace":
        n_words = len(prompt.split(" "))
        edit = st.tuples(st.integers(0, n_words), st.sampled_from(SPACES))
        strategy = st.lists(edit, min_size=1, max_size=4, unique_by=lambda e: e[0]).map(
            lambda edits: _respace(prompt, edits))
    elif kind == "punctuation":
        strategy = st.frozensets(st.sampled_from(PUNCTUATION_EDITS), min_size=1).map(
            lambda edits: _punctuate(prompt, edits))
    elif kind == "typos":
        targets = _typo_targets(prompt)
        if not targets:
            return None
        edit = st.tuples(st.integers(0, len(targets) - 1), st.sampled_from(TYPO_KINDS), st.integers(0, 20))
        strategy = st.lists(edit, min_size=1, max_size=min(3, len(targets)), unique_by=lambda e: e[0]).map(
            lambda edits: _typos(prompt, edits))
    elif kind == "distractor":
        strategy = st.builds(lambda s, w: _distract(prompt, s, w), st.sampled_from(DISTRACTORS),
                             st.sampled_from(("after", "before")))
    elif kind == "reorder":
        n = len(_sentences(prompt))
        if n < 2:
            return None
        strategy = st.permutations(range(n)).map(lambda order: _reorder(prompt, list(order)))
    elif kind == "paraphrase":
        strategy = st.sampled_from(TEMPLATES).map(lambda template: _frame(prompt, template))
    else:
        raise ValueError(f"unknown perturbation kind {kind!r}; known: {list(KINDS)}")
    return strategy.filter(lambda p: p.text.strip() != prompt.strip() and p.text != prompt)


def _seed(case_id: str, kind: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{case_id}|{kind}".encode()).digest()[:4], "big")


def _settings(max_examples: int, phases: Sequence[Phase]) -> settings:
    return settings(max_examples=max_examples, database=None, deadline=None, phases=list(phases),
                    suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, derandomize=False)


def draw(case_id: str, kind: str, prompt: str, examples: int) -> list[Perturbation]:
    """Up to `examples` distinct perturbations, the same ones on every machine and run (the seed
    is derived from the case id and the kind)."""
    strategy = perturbations(kind, prompt)
    if strategy is None:
        return []
    found: dict[str, Perturbation] = {}

    @_settings(examples, [Phase.generate])
    @seed(_seed(case_id, kind))
    @given(strategy)
    def collect(p: Perturbation) -> None:
        found.setdefault(p.text, p)

    collect()
    return list(found.values())[:examples]


class _Flipped(Exception):
    """Raised inside the hypothesis test when a perturbation changes the outcome."""


def shrink(case_id: str, kind: str, prompt: str, examples: int,
           flips: Callable[[Perturbation], bool | None]) -> Perturbation | None:
    """The smallest perturbation hypothesis finds that still flips the outcome, replaying the
    examples `draw` gave (same seed, same count) and shrinking the first that flips. `flips`
    answers True/False, or None when it cannot tell (no more model calls allowed): taken as "no
    flip", which only stops the shrinking early. None when no drawn example flips."""
    strategy = perturbations(kind, prompt)
    if strategy is None:
        return None
    smallest: list[Perturbation] = []

    @_settings(examples, [Phase.generate, Phase.shrink])
    @seed(_seed(case_id, kind))
    @given(strategy)
    def invariant(p: Perturbation) -> None:
        if flips(p):
            smallest.append(p)
            raise _Flipped(p.change)

    try:
        invariant()
    except _Flipped:  # hypothesis re-raises the smallest flip; anything else (the model's server
        pass          # died: a harness error) goes on up
    return smallest[-1] if smallest else None


# --- the suite ----------------------------------------------------------------------------------

def _perturbed_case(source: Case, p: Perturbation, role: str, index: int | str) -> Case:
    messages = list(source.messages)
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    messages[last_user] = MappingProxyType({"role": "user", "content": p.text})
    attributes = {**source.attributes, "source_case": source.id, "role": role, "perturbation": p.kind,
                  "change": p.change, "category": p.kind}
    return Case(id=f"{source.id}~{p.kind}-{index}", messages=tuple(messages), expected=source.expected,
                checks=source.checks, tags=source.tags + ("robustness", p.kind), critical=False,
                attributes=MappingProxyType(attributes), source=source.source)


Scorer = Callable[[Case, Response], list[Score]]
Ask = Callable[[Sequence[Case]], list[Response]]


def _outcome(case: Case, response: Response, scorer: Scorer) -> bool | None:
    """Did the case pass its own checks? None when there is no answer."""
    return answered_and_passed(response, scorer(case, response)) if response.ok else None


def _differs(original: bool | None, perturbed: bool | None) -> bool:
    return original is not None and perturbed is not None and original != perturbed


def _informational(scores: list[Score]) -> list[Score]:
    """The checks' scores kept as measurements: in this suite a case passes when its outcome
    matches the original's, not when the check passes."""
    return [Score(s.name, s.value, None, s.rationale) for s in scores]


def _verdict(original: bool | None, perturbed: bool | None, change: str) -> Score:
    if original is None:
        return Score(INVARIANT, 0.0, False, "the original prompt got no answer: invariance unknown (fails closed)")
    if perturbed is None:
        return Score(INVARIANT, 0.0, False, "no answer to the perturbed prompt")
    word = {True: "passed", False: "failed"}
    if original == perturbed:
        return Score(INVARIANT, 1.0, True, f"same outcome as the original ({word[original]})")
    return Score(INVARIANT, 0.0, False, f"outcome flipped: the original {word[original]}, "
                                        f"this {word[perturbed]} ({change})")


@dataclass(frozen=True)
class RobustnessSuite:
    """A robustness suite over a dataset of source cases (any check types). Use its methods as
    the `eval_suite` marker's loader, relation and analysis."""

    examples: int = 2  # perturbations per source case and kind
    shrink_calls: int = 8  # new model calls allowed per flip while shrinking
    kinds: tuple[str, ...] = KINDS

    def load(self, path: Path) -> Dataset:
        """The source cases, each followed by its perturbations (tagged like their source, so a
        smoke subset keeps whole groups)."""
        source = load(path)
        cases: list[Case] = []
        for case in source.cases:
            original_attributes = {**case.attributes, "source_case": case.id, "role": "original",
                                   "perturbation": "", "change": ""}
            cases.append(Case(case.id, case.messages, case.expected, case.checks, case.tags + ("robustness",),
                              MappingProxyType(original_attributes), case.critical, case.source))
            for kind in self.kinds:
                for index, p in enumerate(draw(case.id, kind, case.prompt, self.examples), start=1):
                    cases.append(_perturbed_case(case, p, "perturbed", index))
        return Dataset(source.name, path, tuple(cases), digest_cases(cases))

    def relate(self, cases: Sequence[Case], responses: Sequence[Response], scorer: Scorer,
               ask: Ask) -> tuple[list[Case], list[Response], Scorer]:
        """The metamorphic relation: the scorer that fails a perturbed case whose outcome differs
        from its original's, and the smallest flips found by shrinking (extra rows)."""
        answers = {case.id: response for case, response in zip(cases, responses)}
        by_id = {case.id: case for case in cases}
        outcome = {case.id: _outcome(case, answers[case.id], scorer) for case in cases}

        def original_of(case: Case) -> Case:
            return by_id[case.attributes["source_case"]]

        drawn: dict[tuple[str, str], dict[str, Response]] = {}  # (source, kind) -> answers by prompt
        flipped: set[tuple[str, str]] = set()
        for case in cases:
            if case.attributes.get("role") == "perturbed":
                source, kind = original_of(case).id, case.attributes["perturbation"]
                drawn.setdefault((source, kind), {})[case.prompt] = answers[case.id]
                if _differs(outcome[source], outcome[case.id]):
                    flipped.add((source, kind))
        extra_cases: list[Case] = []
        extra_responses: list[Response] = []
        for (source_id, kind), known in drawn.items():
            if (source_id, kind) not in flipped:
                continue
            found = self._smallest_flip(by_id[source_id], kind, known, outcome[source_id], scorer, ask)
            if found is not None:
                extra_cases.append(found[0])
                extra_responses.append(found[1])

        def related(case: Case, response: Response) -> list[Score]:
            raw = scorer(case, response)
            scores = _informational(raw)
            if case.attributes.get("role") in ("perturbed", "minimal"):
                perturbed = answered_and_passed(response, raw) if response.ok else None
                scores.append(_verdict(outcome[original_of(case).id], perturbed, case.attributes["change"]))
            return scores

        return list(cases) + extra_cases, list(responses) + extra_responses, related

    def _smallest_flip(self, source: Case, kind: str, known: dict[str, Response], original: bool | None,
                       scorer: Scorer, ask: Ask) -> tuple[Case, Response] | None:
        """Shrink the first flipping perturbation of `kind`. `known` holds the answers already
        given, by prompt; each other candidate costs a model call, at most `shrink_calls`."""
        known = dict(known)
        calls = 0

        def flips(p: Perturbation) -> bool | None:
            nonlocal calls
            if p.text not in known:
                remaining = getattr(ask, "remaining", None)  # the suite's call budget, if it has one
                if calls >= self.shrink_calls or (remaining is not None and remaining <= 0):
                    return None
                calls += 1
                known[p.text] = ask([_perturbed_case(source, p, "minimal", "minimal")])[0]
            answer = _outcome(source, known[p.text], scorer)
            return answer is not None and answer != original

        smallest = shrink(source.id, kind, source.prompt, self.examples, flips)
        if smallest is None:
            return None
        case = _perturbed_case(source, smallest, "minimal", "minimal")
        attributes = {**case.attributes, "shrink_calls": calls}
        return (Case(case.id, case.messages, case.expected, case.checks, case.tags + ("minimal",),
                     MappingProxyType(attributes), False, case.source), known[smallest.text])

    def analyze(self, table: ResultTable) -> SuiteAnalysis:
        """Invariance rate per kind and overall with Wilson intervals (over the drawn examples
        only: the shrunk rows are chosen because they flip), and the smallest flips."""
        import pandas as pd

        from harness.stats import rate_ci

        out = SuiteAnalysis()
        per_kind: dict[str, list[float]] = {}
        for row in table.rows:
            if row.case.attributes.get("role") == "perturbed" and INVARIANT in row.scores:
                per_kind.setdefault(row.case.attributes["perturbation"], []).append(row.scores[INVARIANT].value)
        summary = []
        for kind, values in sorted(per_kind.items()) + [("all", [v for vs in per_kind.values() for v in vs])]:
            if not values:
                continue
            held = int(sum(values))
            low, high = rate_ci(held, len(values))
            name = metric_name("invariance", "rate") if kind == "all" else metric_name("invariance", kind)
            out.metrics.update({name: held / len(values), f"{name}/ci_low": low, f"{name}/ci_high": high,
                                f"{name}/n": float(len(values))})
            summary.append({"perturbation": kind, "cases": len(values), "invariant": held,
                            "rate": held / len(values), "ci_low": low, "ci_high": high})
        originals = {row.case.id: row for row in table.rows if row.case.attributes.get("role") == "original"}
        minimal = []
        for row in table.rows:
            if row.case.attributes.get("role") != "minimal":
                continue
            source = originals.get(row.case.attributes["source_case"])
            minimal.append({
                "source_case": row.case.attributes["source_case"],
                "perturbation": row.case.attributes["perturbation"],
                "change": row.case.attributes["change"],
                "original_prompt": source.case.prompt if source else "",
                "perturbed_prompt": row.case.prompt,
                "original_passed": source.passed if source else None,
                "original_answer": source.response.text if source else "",
                "perturbed_answer": row.response.text,
                "still_flips": bool(INVARIANT in row.scores and row.scores[INVARIANT].passed is False),
                "shrink_calls": row.case.attributes.get("shrink_calls", 0),
            })
        out.metrics[metric_name("robustness", "smallest_flips")] = float(len(minimal))
        out.tables["robustness_by_perturbation"] = pd.DataFrame(summary)
        out.tables["robustness_smallest_flips"] = pd.DataFrame(minimal, columns=[
            "source_case", "perturbation", "change", "original_prompt", "perturbed_prompt", "original_passed",
            "original_answer", "perturbed_answer", "still_flips", "shrink_calls"])
        return out
