"""A suite, and `run_suite`: the pipeline of DESIGN.md, one call per stage, with no pytest in it.

    datasets -> [Case] -> Target -> engine (journal) -> [Response] -> scorers -> ResultTable
             -> suite analysis -> gates -> Verdict -> tracking (local record, MLflow run)

The pytest plugin, a script and a notebook all run suites through `run_suite`. A suite and the
run it returns can be pickled (a worker process, a Spark task), when its scorer, loader,
analysis and relation are module-level functions or objects, as the shipped suites' are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness import engine
from harness.config import ConfigError, HarnessConfig, load_config
from harness.core import Case, CaseResult, Generation, Response, Score
from harness.datasets import Dataset
from harness.gates import SCREEN_CRITERIA, Criterion, Verdict, evaluate, power_metrics
from harness.results import ResultTable, SuiteAnalysis, repeat_scores
from harness.scorers import prime, score_case
from harness.session import Observer, Session, engine_settings

Scorer = Callable[[Case, Response], list[Score]]
Ask = Callable[[Sequence[Case]], list[Response]]
# A model-assisted scoring step: (cases, responses, scorer, ask) -> (cases, responses, scorer). It
# scores cases against each other and may ask the model more questions through `ask` (the
# engine, the suite's journal and settings): the robustness suite's shrinking (harness.suites.robustness).
Relation = Callable[[list[Case], list[Response], Scorer, Ask], tuple[list[Case], list[Response], Scorer]]


@dataclass(frozen=True)
class Suite:
    """An evaluation suite: its name (which names its criteria), its dataset (a file, or a
    Dataset already made, e.g. from a DataFrame or an MLflow evaluation dataset), and
    optionally a per-case scorer (default: every check of the case, `harness.scorers.score_case`),
    a loader for files that are not plain case JSONL, a suite-level analysis (table ->
    SuiteAnalysis: metrics, tables, figures), a cap on answer length, a relation between cases
    (model-assisted scoring), and a call budget: the model calls its default run may make
    (`budgets` in the config overrides it; `full` lifts it). A fixed sample of the cases is
    asked, `reserve` calls fewer than the budget; the relation's follow-up questions get what the
    main run left."""

    name: str
    dataset: str | Dataset
    scorer: Scorer | None = None
    loader: Callable[[Path], Dataset] | None = None
    analysis: Callable[[ResultTable], SuiteAnalysis] | None = None
    max_tokens: int | None = None
    relation: Relation | None = None
    budget: int | None = None
    reserve: int = 0

    def __post_init__(self) -> None:
        if not self.name or not self.dataset:
            raise ValueError("a suite needs a name and a dataset")
        if isinstance(self.dataset, Dataset) and self.loader is not None:
            raise ValueError("a suite given a Dataset has no file for a loader to read")
        if self.budget is not None and (isinstance(self.budget, bool) or not isinstance(self.budget, int)
                                        or self.budget < 1):
            raise ValueError("a suite's budget must be a positive number of model calls")
        if isinstance(self.reserve, bool) or not isinstance(self.reserve, int) or self.reserve < 0:
            raise ValueError("a suite's reserve must be a number of model calls, 0 or more")
        if self.reserve and self.relation is None:
            raise ValueError("a suite's reserve keeps calls for its relation's follow-up questions: it has no relation")
        if self.budget is not None and self.reserve >= self.budget:
            raise ValueError(f"a suite's reserve ({self.reserve}) must leave part of its budget ({self.budget}) "
                             "for the main run")

    def main_budget(self, config: HarnessConfig) -> int | None:
        """Cases of the main run in a default run: the call budget ([tool.harness.budgets],
        else the marker's) less the calls reserved for follow-ups; None: every case."""
        budget = config.budget_for(self.name, self.budget)
        if budget is None:
            return None
        if budget <= self.reserve:
            raise ConfigError(f"[tool.harness.budgets] {self.name} = {budget}: suite '{self.name}' keeps "
                              f"{self.reserve} calls of its budget for follow-up questions; give it more")
        return budget - self.reserve


@dataclass
class SuiteRun:
    """One run of a suite: the cases asked, their results, and the verdict of its criteria."""

    name: str
    dataset: Dataset
    table: ResultTable
    verdict: Verdict
    duration_s: float = 0.0
    subset_of: int | None = None  # size of the suite's default set when a subset of it ran
    sampled_from: int | None = None  # size of the whole dataset when the suite's budget sampled it
    run_id: str | None = None  # its MLflow run, once recorded (Session.finish_logging)
    tracking_error: str | None = None  # why MLflow did not record it
    traces: Any = None  # what became of its per-case traces (tracking.TraceReport), once recorded
    local_record: Path | None = None  # its results as JSON on local disk
    by_id: dict[str, CaseResult] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.by_id:
            self.by_id = {row.case.id: row for row in self.table.rows}


def run_suite(suite: Suite, config: HarnessConfig | None = None, *, session: Session | None = None,
              observer: Observer | None = None) -> SuiteRun:
    """Run one suite. Without a `session`, one is opened for it (from `config`, or the
    project's configuration in the working directory) and closed after its MLflow run is
    recorded. Raises harness.session.HarnessError when the harness itself fails."""
    if session is None:
        own = Session(config if config is not None else load_config("."), observer)
        try:
            run = run_suite(suite, session=own)
            own.finish_logging()
            return run
        finally:
            own.close()
    # datasets -> [Case]; the criteria are read first too: a bad criteria file costs no model call
    dataset, default_size, sampled_from = session.dataset(suite.dataset, suite.loader, suite.main_budget(session.config),
                                                          suite.name)
    criteria = session.criteria()
    # config -> Target (and what the suite asks with)
    generation = generation_for(session.config, suite)
    target = session.target()
    identity = engine.identity(target, generation)
    started = time.perf_counter()
    # engine (journal) -> [Response]
    outcome = _query(session, suite, dataset, target, generation, identity)
    # scorers (pure; model-assisted via ask) -> [Score] -> ResultTable
    scored = _score(session, suite, dataset.cases, outcome, generation, identity,
                    follow_up_limit=_follow_up_limit(session.config, suite, outcome.stats, len(dataset), default_size))
    table = ResultTable.build(scored.cases, scored.responses, scored.scorer)
    analysis = _analyse(session, suite, table, scored)
    # gates.evaluate(table, criteria[, baseline]) -> Verdict
    verdict = _gate(session.config, suite, criteria, table, analysis, scored.distrusted)
    run = SuiteRun(suite.name, dataset, table, verdict, duration_s=time.perf_counter() - started,
                   subset_of=default_size if len(dataset) != default_size else None, sampled_from=sampled_from)
    # tracking: the local record and one MLflow evaluation run (recorded in the background)
    session.record(run, target_info=identity, tables=analysis.tables, figures=analysis.figures,
                   metrics=_metrics(run, analysis, outcome.stats, scored))
    session.say(f"suite '{suite.name}': {sum(r.passed for r in table.rows)}/{len(table)} cases passed, "
                f"gate {'PASSED' if verdict.passed else 'FAILED'} ({run.duration_s:.1f}s)")
    return run


# --- the stages --------------------------------------------------------------------------------

def generation_for(config: HarnessConfig, suite: Suite) -> Generation:
    """What a suite asks with: a suite's cap on answer length (decisions need a line, not 256
    tokens); every other setting is the target's own."""
    return Generation(max_tokens=min(config.max_tokens, suite.max_tokens) if suite.max_tokens is not None else None)


def _query(session: Session, suite: Suite, dataset: Dataset, target, generation: Generation,
           identity: dict) -> engine.RunOutcome:
    """Every case asked `samples` times, concurrently, through the journal."""
    config = session.config
    journal = session.journal(suite.name, identity)
    action = "replaying" if config.replay else "querying"
    session.say(f"suite '{suite.name}': {action} {len(dataset)} cases of {dataset.path.name} "
                f"({identity['target']} / {identity['model']}, concurrency {config.effective_concurrency()}) ...")
    progress = session.observer.progress(f"suite '{suite.name}'", len(dataset) * config.samples)
    try:
        outcome = engine.run(dataset.cases, target, engine_settings(config, samples=config.samples),
                             journal=journal, replay=config.replay, resume=config.resume,
                             on_done=progress.update, breaker=session.breaker(), generation=generation)
    finally:
        progress.close()
    session.check_server()
    if outcome.stats.reused:
        session.say(f"suite '{suite.name}': {outcome.stats.reused} answers reused from {journal.path}, "
                    f"{outcome.stats.calls} model calls made")
    if outcome.stats.torn_journal_lines:
        session.say(f"suite '{suite.name}': skipped {outcome.stats.torn_journal_lines} torn line(s) in {journal.path}")
    return outcome


@dataclass
class _Scored:
    cases: list[Case]
    responses: list[Response]
    scorer: Scorer
    judged: bool = False  # the LLM judge read this suite's answers
    calibration: dict[str, float] | None = None  # the judge's agreement with people
    distrusted: str | None = None  # why the judge's verdicts gate nothing
    follow_ups: engine.Asker | None = None


def _follow_up_limit(config: HarnessConfig, suite: Suite, stats: engine.RunStats, selected: int,
                     default_size: int) -> int | None:
    """How many follow-up questions a suite's relation may ask: what its call budget left after
    the main run (answers reused from the journal count as calls, so a replay decides alike); a
    selection from the default set (tags, limit) gets its share of the reserve. None: no budget."""
    budget = config.budget_for(suite.name, suite.budget)
    if budget is None:
        return None
    if selected < default_size:
        return round(suite.reserve * selected / default_size)
    return max(0, budget - stats.calls - stats.reused)


def _score(session: Session, suite: Suite, cases: Sequence[Case], outcome: engine.RunOutcome,
           generation: Generation, identity: dict, follow_up_limit: int | None = None) -> _Scored:
    """The scorer of every case: its checks (pure), the k-sample scores, then the two
    model-assisted steps, each handed an `ask` through the engine: the LLM judge, and a
    relation between cases (the robustness shrinking)."""
    config = session.config
    base = suite.scorer or score_case
    scorer = base
    if config.samples > 1:  # the table shows the first answer, plus pass@k, pass^k, consistency
        per_case = dict(zip((c.id for c in cases), outcome.responses))
        scorer = lambda case, response: base(case, response) + repeat_scores(  # noqa: E731
            case, per_case[case.id], base)
    scored = _Scored(list(cases), outcome.first, scorer)
    prime(scored.cases, scored.responses)  # the batched classifiers, before any case is scored
    _judge(session, suite, scored)
    if suite.relation is not None:  # cases scored against each other, maybe asking more
        session.say(f"suite '{suite.name}': relating its {len(scored.cases)} answers (follow-up questions, "
                    "one at a time) ...")
        scored.follow_ups = session.follow_ups(suite.name, generation, identity, limit=follow_up_limit)
        scored.cases, scored.responses, scored.scorer = suite.relation(
            scored.cases, scored.responses, scored.scorer, scored.follow_ups)
        scored.follow_ups.finish()
        bound = "" if scored.follow_ups.limit is None else f" of the {scored.follow_ups.limit} its budget left"
        session.say(f"suite '{suite.name}': {scored.follow_ups.calls} follow-up questions asked, "
                    f"{scored.follow_ups.reused} answered from the journal{bound}")
        prime(scored.cases, scored.responses)  # the answers the relation asked for
    return scored


def _judge(session: Session, suite: Suite, scored: _Scored) -> None:
    """The LLM judge reads the first answers, when one is configured. Not in suites whose
    cases are related (robustness): the answers their relation asks for later would go unjudged
    and compare unequally. Before its verdicts are used on safety cases, the judge is checked
    against human labels: a judge that disagrees with people gates nothing."""
    from harness import judge

    config, name = session.config, suite.name
    if suite.relation is not None or not any(judge.judged(case) for case in scored.cases):
        return
    if not config.judge_model:
        session.say(f"suite '{name}': LLM judge skipped (no judge_model configured): offline scorers only")
        return
    scored.judged = True
    if any(judge.rubric_for(c) == "safety" for c in scored.cases):
        scored.calibration = session.judge_human_agreement()
        scored.distrusted = judge.distrust(scored.calibration, judge.HUMAN_AGREEMENT, "human labels")
        if scored.distrusted:
            session.say(f"suite '{name}': judge criteria {scored.distrusted}; its verdicts are kept as measurements")
    asked = sum(judge.judged(c) and r.ok for c, r in zip(scored.cases, scored.responses))
    session.say(f"suite '{name}': asking the judge ({config.judge_model}) about {asked} answers ...")
    scored.scorer = judge.judged_scorer(scored.cases, scored.responses, scored.scorer, session.judge(name),
                                        json_schema=config.judge_json_schema, gating=scored.distrusted is None)


def _analyse(session: Session, suite: Suite, table: ResultTable, scored: _Scored) -> SuiteAnalysis:
    """What the suite computes over all its cases, the judge's agreement with the offline
    checks, and how far the judge may be trusted."""
    analysis = suite.analysis(table) if suite.analysis is not None else None
    if scored.judged:
        from harness.judge import judge_analysis

        analysis = judge_analysis(table, analysis)
    analysis = analysis if analysis is not None else SuiteAnalysis()
    if scored.calibration is not None:
        analysis.metrics.update(scored.calibration)
    return analysis


def _gate(config: HarnessConfig, suite: Suite, criteria: dict[str, list[Criterion]], table: ResultTable,
          analysis: SuiteAnalysis, distrusted: str | None) -> Verdict:
    """The suite's criteria, the screens and, where a criterion asks, the baseline run."""
    own = criteria.get(suite.name)
    baseline = None
    if any(c.vs_baseline for c in own or []):
        from harness import tracking

        baseline = tracking.read_baseline(config.baseline, suite.name, config.effective_tracking_uri(),
                                          model=config.promote_model or config.model_uri or "",
                                          alias=config.promotion_alias)
    return evaluate(suite.name, table, own, analysis.metrics, judge=bool(config.judge_model), baseline=baseline,
                    judge_distrusted=distrusted, screens=criteria.get(SCREEN_CRITERIA))


def _metrics(run: SuiteRun, analysis: SuiteAnalysis, stats: engine.RunStats, scored: _Scored) -> dict[str, float]:
    """Everything logged as the run's metrics: the table's aggregates, the suite's own, the
    engine's figures, and how small a regression the gate can see."""
    metrics: dict[str, Any] = {
        **run.table.summary(), **analysis.metrics,
        "engine/calls": stats.calls, "engine/reused": stats.reused, "engine/elapsed_s": stats.elapsed_s,
        "engine/final_concurrency": stats.final_concurrency, "engine/breaker_opened": float(stats.breaker_opened),
        **power_metrics(run.verdict)}
    if run.sampled_from is not None:  # a budgeted sample: how large the whole dataset is
        metrics["dataset/sampled_from"] = float(run.sampled_from)
    if scored.follow_ups is not None:
        metrics.update({"engine/followup_calls": scored.follow_ups.calls,
                        "engine/followup_reused": scored.follow_ups.reused})
    return metrics
