"""The pytest plugin: options, the `eval_suite` marker, fixtures, per-case items, the gate item
and the terminal summary.

An eval suite is an ordinary test module:

    pytestmark = pytest.mark.eval_suite("quality", dataset="datasets/quality/cases.jsonl")

    def test_case(eval_case):      # one item per dataset case
        eval_case.check()

    def test_gate(eval_suite):     # the suite's promotion gate
        eval_suite.check()

The whole suite is queried concurrently once, on first use; items only read the results.
A failed case fails the build only when it is marked critical (otherwise it is reported as
xfail with its reason), so the exit status is exactly: any criterion failed, or any critical
case failed, or the harness could not run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import pytest

from harness.config import ConfigError, HarnessConfig, load_config, settings, to_bool
from harness.datasets import Case, Dataset, load
from harness.gates import SCREEN_CRITERIA, Verdict, evaluate, evaluate_pooled, load_criteria
from harness.journal import Journal
from harness.judge import judged, rubric_for
from harness.results import CaseResult, ResultTable, SuiteAnalysis, repeat_scores
from harness.scorers import score_case
from harness.core import Score
from harness.core import Response

_STATE = pytest.StashKey["HarnessSession"]()
MARKER = "eval_suite"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "LLM evaluation harness")
    for name, meta in settings():
        if not meta["option"]:
            continue
        help_text = meta["doc"] or name.replace("_", " ")
        if meta["parse"] is to_bool:  # flags: --harness-replay / --harness-no-replay
            group.addoption(meta["option"], dest=f"harness_{name}", default=None,
                            action="store_const", const=True, help=help_text)
            group.addoption(meta["option"].replace("--harness-", "--harness-no-"), dest=f"harness_{name}",
                            action="store_const", const=False, help=f"turn off: {name}")
        else:
            group.addoption(meta["option"], dest=f"harness_{name}", default=None, help=help_text)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(name, dataset, scorer=None, loader=None, analysis=None, max_tokens=None, "
                   "relation=None, budget=None): "
                   "an evaluation suite over a dataset file")
    config.addinivalue_line("markers", "local_model: needs the real embedded local model")
    # MLflow records runs in a background thread, where tracking's own warnings filter cannot
    # reach (filters are process-wide, and pytest resets them per test): its noise (dataset
    # sources, deprecations) is not the user's to act on
    config.addinivalue_line("filterwarnings", "ignore::Warning:mlflow.*")
    options = {name: config.getoption(f"harness_{name}", None) for name, meta in settings()
               if meta["option"]}
    try:
        harness_config = load_config(config.rootpath, options=options)
    except ConfigError as exc:
        raise pytest.UsageError(f"harness configuration: {exc}") from None
    config.stash[_STATE] = HarnessSession(harness_config)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.close()


# --- what the items see --------------------------------------------------------------------------

@dataclass
class EvalCase:
    """One case's outcome, as a test item sees it."""

    result: CaseResult

    @property
    def case(self) -> Case:
        return self.result.case

    @property
    def response(self) -> Response:
        return self.result.response

    @property
    def scores(self) -> dict[str, Score]:
        return self.result.scores

    @property
    def passed(self) -> bool:
        return self.result.passed

    def explain(self) -> str:
        answer = self.response.text if self.response.ok else f"<no answer: {self.response.error}>"
        return (f"case {self.case.id} ({self.case.source}) failed: "
                + "; ".join(self.result.failures())
                + f"\n  prompt: {self.case.prompt!r}\n  answer: {answer!r}"
                + (f"\n  expected: {self.case.expected!r}" if self.case.expected else ""))

    def check(self) -> None:
        """Pass, fail (critical case) or xfail with the reason (other cases)."""
        if self.passed:
            return
        if self.case.critical:
            pytest.fail("CRITICAL " + self.explain(), pytrace=False)
        # without a Python traceback, like the critical failure: the reason is the whole story,
        # and pytest rendering one per failed case (it parses this file's source for each)
        # cost ~10 s of a 1,100-case replay
        raise pytest.xfail.Exception(self.explain(), pytrace=False)


@dataclass
class SuiteRun:
    name: str
    dataset: Dataset
    table: ResultTable
    verdict: Verdict
    run_id: str | None = None  # set once its MLflow run is recorded (HarnessSession.finish_logging)
    tracking_error: str | None = None
    logging: Any = None  # the pending MLflow run (a Future of its id), until finish_logging
    local_record: Path | None = None
    duration_s: float = 0.0
    subset_of: int | None = None  # size of the suite's default set when a subset of it ran
    sampled_from: int | None = None  # size of the whole dataset when the suite's budget sampled it
    by_id: dict[str, CaseResult] = field(default_factory=dict)

    def check(self) -> None:
        """The promotion gate: fail with the criteria table unless everything passed. (Whether
        MLflow recorded the run is known at the end of the session, which then exits 3 if not.)"""
        if not self.verdict.passed:
            pytest.fail(self.verdict.report(), pytrace=False)


class EvalSuite:
    """A base for suites written as classes: one test item per case and one for the gate. Each
    subclass carries the `eval_suite` marker naming its suite (its criteria) and dataset:

        @pytest.mark.eval_suite("safety_pii", dataset="datasets/safety/pii.jsonl")
        class TestPersonalData(EvalSuite):
            pass
    """

    def test_case(self, eval_case: EvalCase) -> None:
        eval_case.check()

    def test_gate(self, eval_suite: SuiteRun) -> None:
        eval_suite.check()


def verdict_power(verdict: Verdict) -> dict[str, float]:
    """The minimum detectable regression of each rate criterion, and the suite's (the largest),
    as MLflow metrics: `mdr/<criterion>` and `mdr`."""
    from harness.results import metric_name

    out = {metric_name("mdr", r.criterion.label().replace(" ", "_")): r.mdr
           for r in verdict.results if r.mdr is not None}
    detectable = verdict.detectable_regression()
    if detectable is not None:
        out["mdr"] = detectable[0]
    return out


def target_engine_settings(config: HarnessConfig, samples: int = 1):
    """The engine settings for asking the target under evaluation: the configured concurrency,
    retries, deadline, rate limits and breaker (the judge, another endpoint, has its own)."""
    from harness import engine

    return engine.EngineSettings(
        concurrency=config.effective_concurrency(), retry_budget_s=config.retry_budget_s,
        max_retries=config.max_retries, deadline_s=config.deadline_s,
        requests_per_minute=config.requests_per_minute, tokens_per_minute=config.tokens_per_minute,
        adaptive=config.adaptive_concurrency, breaker_after=config.breaker_after,
        breaker_window_s=config.breaker_window_s, samples=samples)


# --- session state ---------------------------------------------------------------------------------

class HarnessSession:
    """Per pytest session: config, datasets, the embedded server, and each suite's run."""

    def __init__(self, config: HarnessConfig):
        self.config = config
        self._datasets: dict[Path, Dataset] = {}
        self._runs: dict[str, SuiteRun | BaseException] = {}
        self._criteria: dict[str, list] | None = None
        self._server = None
        self._guards = None
        self._judge_calibration: dict[str, float] | None = None
        self._breakers: dict[str, Any] = {}  # endpoint -> harness.engine.Breaker
        self._reporter = None
        self.order: list[str] = []
        self._logger = None  # harness.tracking.SuiteLogger, started with the first suite's run
        self._score_cache = None
        if config.score_cache:
            from harness.scorers import ScoreCache, use_score_cache

            self._score_cache = ScoreCache(config.path(config.score_cache))
            use_score_cache(self._score_cache)
        self.promotion: tuple[bool, str] | None = None  # (promoted, what to tell the user)
        self.pooled: Verdict | None = None  # the screens over every suite's answers, at session end

    def breaker(self, endpoint: str = "target"):
        """The circuit breaker of an endpoint ("target": the one under evaluation, or "judge"),
        shared by every run of the session against it: a dead endpoint costs the first suite
        the breaker's window, each later one an attempt."""
        if endpoint not in self._breakers:
            from harness.engine import Breaker

            self._breakers[endpoint] = Breaker(self.config.breaker_after, self.config.breaker_window_s)
        return self._breakers[endpoint]

    def dataset(self, path: str, loader: Callable[[Path], Dataset] | None = None, budget: int | None = None,
                seed: str = "") -> tuple[Dataset, int, int | None]:
        """The selected cases of a dataset; the size of the suite's default set (its budgeted
        sample, or the whole dataset with --harness-full), which a tag or limit selection is a
        subset of; and the whole dataset's size when the default set is a sample. `loader`
        reads files that are not plain case JSONL (the bias suites' templates)."""
        full_path = self.config.path(path).resolve()
        if full_path not in self._datasets:
            self._datasets[full_path] = (loader or load)(full_path)
        whole = self._datasets[full_path]
        default = whole if budget is None or self.config.full else whole.sample(budget, seed)
        sampled_from = len(whole) if len(default) != len(whole) else None
        return default.select(self.config.tags, self.config.limit), len(default), sampled_from

    def criteria(self) -> dict[str, list]:
        if self._criteria is None:
            self._criteria = load_criteria(self.config.path(self.config.criteria_file))
        return self._criteria

    def _target(self, max_tokens: int | None = None):
        target = self._model_target(max_tokens)
        if self.config.guards == "none":
            return target
        from harness.guards import GuardedTarget, InputGuard, OutputGuard

        guards = self.config.guards
        if self._guards is None:  # trained once per session, however many targets are built
            self._guards = (InputGuard() if guards in ("input", "both") else None,
                            OutputGuard() if guards in ("output", "both") else None)
        return GuardedTarget(target, *self._guards)

    def _model_target(self, max_tokens: int | None = None):
        from harness.targets import build_target

        config = self.config
        if max_tokens is not None:  # a suite's cap: decisions need a line, not 256 tokens
            config = replace(config, max_tokens=min(config.max_tokens, max_tokens))
        connect = not config.replay  # replay makes no calls: no client, no server
        if config.resolved_target() != "local":
            return build_target(config, connect=connect)
        if not connect:
            server = self._local_server_spec()
            return build_target(config, local_base_url="http://127.0.0.1:9/v1", local_model=server.alias,
                                local_identity=server.identity(), connect=False)
        server = self.local_server()
        return build_target(config, local_base_url=server.base_url, local_model=server.alias,
                            local_identity=server.identity())

    def _local_server_spec(self):
        """The embedded server as configured, not started (what a replay's target describes)."""
        from harness.targets.local_server import LocalModelServer

        config = self.config
        path = Path(config.local_model_path) if config.local_model_path else None
        return LocalModelServer(path, startup_timeout=config.local_startup_timeout, slots=config.local_slots,
                                threads=config.local_threads, binary=config.local_server)

    def local_server(self):
        """The embedded model's server: started on first use, stopped when the session ends.
        If it cannot start, or has died since, the whole run stops here as a harness error
        (exit 3) with one message: no case is ever scored against a dead server."""
        from harness.targets.local_server import LocalModelError

        if self._server is None:
            config = self.config
            self._say(f"starting the embedded local model server ({config.local_slots} "
                      f"slot{'s' if config.local_slots > 1 else ''}, {config.local_threads} threads) ...")
            started = time.perf_counter()
            try:
                self._server = self._local_server_spec().start()
            except LocalModelError as exc:
                self._stop_run(exc)
            self._say(f"local model {self._server.alias} answered its first completion on "
                      f"{self._server.base_url} ({time.perf_counter() - started:.1f}s)")
        self.check_server()
        return self._server

    def check_server(self) -> None:
        """Stop the run if the embedded server has died (called after every batch of calls)."""
        if self._server is not None and self._server.failure():
            from harness.targets.local_server import LocalModelError

            self._stop_run(LocalModelError(self._server.failure()))

    def _stop_run(self, exc: Exception) -> None:
        pytest.exit(f"harness error: {exc}", returncode=HARNESS_ERROR)

    def progress(self, name: str, total: int):
        """How a suite's querying is shown: a live bar on a terminal, a line every
        progress_interval seconds otherwise."""
        from harness.progress import SuiteProgress

        live = None
        if self._reporter is not None and self._reporter.isatty:
            live = _LiveTerminal(self._reporter.config)
        return SuiteProgress(f"suite '{name}'", total, live=live, write_line=self._say,
                             interval=self.config.progress_interval)

    def _say(self, line: str) -> None:
        """A progress line on the terminal, live: suites run inside a test item's setup, where
        pytest captures output, so capture is suspended for the line."""
        if self._reporter is None:
            return
        capture = self._reporter.config.pluginmanager.getplugin("capturemanager")
        if capture is None:
            self._reporter.write_line(f"[harness] {line}")
            self._reporter.flush()
            return
        with capture.global_and_fixture_disabled():
            self._reporter.ensure_newline()
            # flushed: a CI log is a pipe, where an unflushed line shows up minutes late
            self._reporter.write_line(f"[harness] {line}")
            self._reporter.flush()

    def suite_run(self, spec: "SuiteSpec") -> SuiteRun:
        name = spec.name
        cached = self._runs.get(name)
        if isinstance(cached, BaseException):
            raise cached
        if cached is not None:
            return cached
        try:
            run = self._run_suite(spec)
        except Exception as exc:  # e.g. bad criteria, the server did not start: the same error
            self._runs[name] = exc  # for every item of the suite, without trying again
            raise
        self._runs[name] = run
        self.order.append(name)
        return run

    def _run_suite(self, spec: "SuiteSpec") -> SuiteRun:
        """dataset -> target -> engine -> scorers -> results -> suite analysis -> gate -> local
        record -> MLflow."""
        from harness import engine, tracking

        config, name = self.config, spec.name
        dataset, full_size, sampled_from = self.dataset(spec.dataset, spec.loader, spec.budget, spec.name)
        criteria = self.criteria().get(name)
        target = self._target(spec.max_tokens)
        info = target.describe()
        traces = None
        if config.traces and not config.replay:
            try:
                traces = tracking.begin_traces(config.effective_tracking_uri(), config.experiment)
            except tracking.TrackingError as exc:
                self._say(f"suite '{name}': going on without traces: {exc}")
        journal = None
        if config.journal_dir:
            journal = Journal.for_suite(config.path(config.journal_dir), name, info)
        action = "replaying" if config.replay else "querying"
        self._say(f"suite '{name}': {action} {len(dataset)} cases of {dataset.path.name} "
                  f"({info['target']} / {info['model']}, concurrency {config.effective_concurrency()}) ...")
        started = time.perf_counter()
        progress = self.progress(name, len(dataset) * config.samples)
        try:
            outcome = engine.run(dataset.cases, target, target_engine_settings(config, samples=config.samples),
                                 journal=journal, replay=config.replay, resume=config.resume,
                                 on_done=progress.update, breaker=self.breaker())
        finally:
            progress.close()
        self.check_server()
        stats = outcome.stats
        if stats.reused:
            self._say(f"suite '{name}': {stats.reused} answers reused from {journal.path}, "
                      f"{stats.calls} model calls made")
        if stats.torn_journal_lines:
            self._say(f"suite '{name}': skipped {stats.torn_journal_lines} torn line(s) in {journal.path}")
        base = spec.scorer or score_case
        scorer = base
        if config.samples > 1:  # the table shows the first answer, plus pass@k, pass^k, consistency
            per_case = dict(zip((c.id for c in dataset.cases), outcome.responses))
            scorer = lambda case, response: base(case, response) + repeat_scores(  # noqa: E731
                case, per_case[case.id], base)
        # the judge reads the first answer; not in suites whose cases are related (robustness):
        # the answers their relation asks for later would go unjudged and compare unequally
        judge_reads = spec.relation is None and any(judged(case) for case in dataset.cases)
        calibration, distrusted = None, None
        if judge_reads and config.judge_model and any(rubric_for(c) == "safety" for c in dataset.cases):
            from harness.judge import HUMAN_AGREEMENT, distrust

            # before its verdicts are used: a judge that disagrees with people gates nothing
            calibration = self._judge_human_agreement()
            distrusted = distrust(calibration, HUMAN_AGREEMENT, "human labels")
            if distrusted:
                self._say(f"suite '{name}': judge criteria {distrusted}; its verdicts are kept as measurements")
        if judge_reads:
            if config.judge_model:
                scorer = self._with_judge(name, dataset.cases, outcome.first, scorer, gating=distrusted is None)
            else:
                self._say(f"suite '{name}': LLM judge skipped (no judge_model configured): offline scorers only")
        cases, responses = list(dataset.cases), outcome.first
        followups = None
        if spec.relation is not None:  # cases scored against each other (robustness), maybe asking more
            followups = _FollowUps(self, spec, info)
            cases, responses, scorer = spec.relation(cases, responses, scorer, followups.ask)
            followups.finish()
        table = ResultTable.build(cases, responses, scorer)
        analysis = spec.analysis(table) if spec.analysis is not None else None
        if judge_reads and config.judge_model:
            from harness.judge import judge_analysis  # agreement with the offline checks, rationales

            analysis = judge_analysis(table, analysis)
        suite_metrics = analysis.metrics if analysis is not None else {}
        if calibration is not None:  # logged with the run: how far the judge may be trusted
            analysis = analysis if analysis is not None else SuiteAnalysis()
            analysis.metrics.update(calibration)
            suite_metrics = analysis.metrics
        baseline = self._baseline(name) if any(c.vs_baseline for c in criteria or []) else None
        verdict = evaluate(name, table, criteria, suite_metrics, judge=bool(config.judge_model), baseline=baseline,
                           judge_distrusted=distrusted, screens=self.criteria().get(SCREEN_CRITERIA))
        duration = time.perf_counter() - started
        run = SuiteRun(name, dataset, table, verdict, duration_s=duration,
                       subset_of=full_size if len(dataset) != full_size else None, sampled_from=sampled_from,
                       by_id={row.case.id: row for row in table.rows})
        settings_to_log = {k: v for k, v in config.public_params().items()
                           if k != "tracking_uri"}  # a URI may carry credentials
        settings_to_log["concurrency"] = config.effective_concurrency()
        metrics = {**table.summary(), **suite_metrics,
                   "engine/calls": stats.calls, "engine/reused": stats.reused,
                   "engine/elapsed_s": stats.elapsed_s,
                   "engine/final_concurrency": stats.final_concurrency,
                   "engine/breaker_opened": float(stats.breaker_opened),
                   **verdict_power(verdict)}
        if sampled_from is not None:  # a budgeted sample: how large the whole dataset is
            metrics["dataset/sampled_from"] = float(sampled_from)
        if followups is not None:
            metrics.update({"engine/followup_calls": followups.calls, "engine/followup_reused": followups.reused})
        run.local_record = tracking.write_local_record(
            config.path(config.results_dir), suite=name, table=table, verdict=verdict,
            dataset=dataset, target_info=info, metrics=metrics, variant=config.run_variant())
        if traces is not None:
            traces = traces.closed()  # the next suite's calls begin while this run is recorded
        if self._logger is None:
            self._logger = tracking.SuiteLogger(config.effective_tracking_uri(), processes=config.replay)
        run.logging = self._logger.submit(
            suite=name, table=table, verdict=verdict, dataset=dataset, target_info=info,
            settings=settings_to_log, tracking_uri=config.effective_tracking_uri(),
            experiment=config.experiment, root=config.root, traces=traces,
            metrics=metrics, tables=analysis.tables if analysis else None,
            figures=analysis.figures if analysis else None)
        self._say(f"suite '{name}': {sum(r.passed for r in table.rows)}/{len(table)} cases passed, "
                  f"gate {'PASSED' if verdict.passed else 'FAILED'} ({duration:.1f}s)")
        return run

    def pooled_screens(self) -> Verdict | None:
        """The screen criteria over every answer of every suite that ran (None without any)."""
        criteria = self.criteria()
        return evaluate_pooled([(run.table, criteria.get(run.name)) for run in self.runs()],
                               criteria.get(SCREEN_CRITERIA) or [])

    def _baseline(self, suite: str):
        """The baseline run of this suite, read back from MLflow (None when none is configured;
        a Baseline carrying the error when one is configured but cannot be read)."""
        from harness import tracking
        from harness.gates import Baseline

        ref, uri = self.config.baseline, self.config.effective_tracking_uri()
        if not ref:
            return None
        try:
            if ref == "champion":
                model = self.config.promote_model or self.config.model_uri or ""
                name, _ = tracking.resolve_model_version(model, uri)  # validates the reference
                run_id = tracking.champion_run_id(name, suite, uri, self.config.promotion_alias)
            elif "=" in ref:
                pairs = dict(item.split("=", 1) for item in ref.split(",") if "=" in item)
                if suite not in pairs:
                    return Baseline(error=f"no baseline run given for suite '{suite}'")
                run_id = pairs[suite].strip()
            else:
                run_id = ref
            recorded = tracking.load_run(run_id, uri)
        except tracking.TrackingError as exc:
            return Baseline(error=str(exc))
        if recorded.suite != suite:
            return Baseline(run_id, error=f"run {run_id} is of suite '{recorded.suite}', not '{suite}'")
        frame = recorded.cases
        values: dict[str, dict[str, float]] = {
            "case_pass": {str(k): float(bool(v)) for k, v in zip(frame["case_id"], frame["passed"])},
            "error": {str(k): float(v is not None and v == v) for k, v in zip(frame["case_id"], frame["error"])},
        }
        import pandas as pd

        from harness.compare import NOT_SCORES

        for column in frame.columns:
            if column in values or column in NOT_SCORES or column == "passed" \
                    or not pd.api.types.is_numeric_dtype(frame[column]):
                continue
            values[column] = {str(k): float(v) for k, v in zip(frame["case_id"], frame[column]) if v == v}
        return Baseline(run_id, values)

    def _with_judge(self, name: str, cases, responses, scorer, concurrency: int = 8, gating: bool = True):
        """Ask the judge about every answered case it reads (through the engine: bounded
        retries, its own journal, which is also a cache: an answer the same judge has judged
        before is not asked again; `--harness-no-resume` asks afresh) and return `scorer` plus
        the judge's scores. `concurrency`
        is 1 for a judge that answers one request at a time (the embedded model, in
        bench/judge_agreement.py). With `gating` False (a judge that disagrees with human
        labels) its verdicts are kept as measurements: they fail no case."""
        from harness.judge import judge_scores

        config = self.config
        asked = [(case, response) for case, response in zip(cases, responses) if judged(case) and response.ok]
        self._say(f"suite '{name}': asking the judge ({config.judge_model}) about {len(asked)} answers ...")
        replies = dict(zip((case.id for case, _ in asked),
                           self._ask_judge(name, [(c, r.text) for c, r in asked], concurrency)))

        def with_judge(case: Case, response: Response) -> list[Score]:
            scores = scorer(case, response)
            reply = replies.get(case.id)
            if reply is None:
                return scores
            verdicts = judge_scores(case, response.text, reply.text if reply.ok else None, reply.error)
            if not gating:  # judge_steering is found offline, in the answer: it still gates
                verdicts = [v if v.name == "judge_steering" else Score(v.name, v.value, None, v.rationale)
                            for v in verdicts]
            return scores + verdicts

        return with_judge

    def _ask_judge(self, name: str, asked: list[tuple[Case, str]], concurrency: int = 8) -> list[Response]:
        """The judge's replies to (case, answer) pairs, through the engine with the judge's own
        journal `<name>.judge`."""
        from harness import engine
        from harness.judge import judge_case, schema_identity
        from harness.targets import build_target

        config = self.config
        judge_config = replace(config, target="openai", base_url=config.judge_base_url,
                               api_key=config.judge_api_key, model=config.judge_model,
                               temperature=0.0, max_tokens=300, system_prompt=None, seed=0, traces=False)
        # with judge_json_schema each request carries its verdict's schema; the schemas' name is
        # part of the judge's identity, hence of its journal's keys
        target = build_target(judge_config, connect=not config.replay,
                              structured=schema_identity() if config.judge_json_schema else None)
        judge_cases = [judge_case(c, answer, json_schema=config.judge_json_schema) for c, answer in asked]
        journal = (Journal.for_suite(config.path(config.journal_dir), f"{name}.judge", target.describe())
                   if config.journal_dir else None)
        outcome = engine.run(judge_cases, target, engine.EngineSettings(
            concurrency=concurrency, retry_budget_s=config.retry_budget_s, max_retries=config.max_retries,
            deadline_s=config.deadline_s, breaker_after=config.breaker_after,
            breaker_window_s=config.breaker_window_s), breaker=self.breaker("judge"), journal=journal,
            replay=config.replay, resume=config.resume,
            complete_journal=False)  # never completed, so never discarded: a verdict cache across runs
        if outcome.stats.reused:
            self._say(f"suite '{name}': {outcome.stats.reused} verdicts reused from the judge's journal "
                      f"(same judge, same answer), {outcome.stats.calls} judge calls made")
        return list(outcome.first)

    def _judge_human_agreement(self) -> dict[str, float]:
        """The judge's agreement with human labels on the held-out calibration answers, asked
        once per session (and journalled: a rerun with the same judge asks nothing)."""
        if self._judge_calibration is None:
            from harness.judge import calibration_cases, human_agreement

            rows = calibration_cases()
            self._say(f"judge: checking {self.config.judge_model} against {len(rows)} human-labelled answers ...")
            replies = self._ask_judge("judge-calibration", [(case, answer) for case, answer, _ in rows])
            self._judge_calibration = human_agreement(
                [refused for _, _, refused in rows], [r.text if r.ok else None for r in replies],
                [answer for _, answer, _ in rows])
        return self._judge_calibration

    def finish_logging(self) -> None:
        """Wait for every suite's MLflow run: its id, or why it could not be recorded."""
        from harness import tracking

        for run in self.runs():
            if run.logging is None:
                continue
            try:
                run.run_id = tracking.SuiteLogger.result(run.logging)
            except tracking.TrackingError as exc:
                run.tracking_error = str(exc)
            run.logging = None

    def harness_errors(self) -> list[str]:
        """Suites that raised instead of producing a verdict, or whose run MLflow did not record."""
        errors = [f"suite '{n}': {e}" for n, e in self._runs.items() if isinstance(e, BaseException)]
        return errors + [f"suite '{r.name}': {r.tracking_error}" for r in self.runs() if r.tracking_error]

    def runs(self) -> list[SuiteRun]:
        return [self._runs[n] for n in self.order]  # type: ignore[misc]

    def close(self) -> None:
        if self._logger is not None:
            self._logger.close()
            self._logger = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._score_cache is not None:
            from harness.scorers import use_score_cache

            use_score_cache(None)
            try:
                self._score_cache.save()
            except OSError as exc:  # a cache that cannot be written costs time, never a result
                self._say(f"score cache not saved: {exc}")


class _FollowUps:
    """More questions to the suite's target after its main run, asked one batch at a time
    through the engine (retries, the suite's settings) with a journal of their own that stays
    open until the suite is done, so an interrupted run resumes them and a replay answers them
    without calls."""

    def __init__(self, session: "HarnessSession", spec: "SuiteSpec", identity: dict):
        config = session.config
        self._session, self._spec, self._config = session, spec, config
        self._journal = (Journal.for_suite(config.path(config.journal_dir), f"{spec.name}.followup", identity)
                         if config.journal_dir else None)
        self._resume = config.resume  # the first batch decides; later ones continue this run's journal
        self.calls = 0
        self.reused = 0

    def ask(self, cases) -> list[Response]:
        import random

        from harness import engine

        # asked from inside hypothesis (the robustness shrinking), which seeds the global
        # `random` alike for every example; OpenTelemetry draws MLflow's trace and span ids from
        # it, so every follow-up call got the same trace id and all but one trace were lost
        # (measured: 14 traces stored for 28 calls). Fresh entropy, for the ids only: hypothesis
        # draws its examples from its own generator.
        random.seed()
        config = self._config
        outcome = engine.run(cases, self._session._target(self._spec.max_tokens), target_engine_settings(config),
                             journal=self._journal, replay=config.replay, resume=self._resume,
                             complete_journal=False, breaker=self._session.breaker())
        self._resume = True
        self._session.check_server()
        self.calls += outcome.stats.calls
        self.reused += outcome.stats.reused
        return outcome.first

    def finish(self) -> None:
        if self._journal is not None and not self._config.replay and self._journal.path.exists():
            self._journal.start(fresh=False)
            self._journal.finish()


class _LiveTerminal:
    """A text stream onto the real terminal while pytest captures output (suites run inside a
    test item's setup): each write suspends capture for itself only."""

    def __init__(self, config: pytest.Config):
        self._capture = config.pluginmanager.getplugin("capturemanager")

    def write(self, text: str) -> int:
        import sys

        if self._capture is None:
            return sys.stderr.write(text)
        with self._capture.global_and_fixture_disabled():
            written = sys.stderr.write(text)
            sys.stderr.flush()
        return written

    def flush(self) -> None:
        pass


@dataclass(frozen=True)
class SuiteSpec:
    """What the `eval_suite` marker declares: the suite's name (its criteria), its dataset file,
    and optionally a per-case scorer, a loader for non-JSONL datasets, a suite-level analysis
    (table -> harness.results.SuiteAnalysis: metrics, tables, figures), a max_tokens cap, and a
    relation between cases: (cases, responses, scorer, ask) -> (cases, responses, scorer),
    which scores cases against each other and may ask the model more questions through `ask`
    (the robustness suite's shrinking; see harness.robustness)."""

    name: str
    dataset: str
    scorer: Callable[[Case, Response], list[Score]] | None = None
    loader: Callable[[Path], Dataset] | None = None
    analysis: Callable[[ResultTable], Any] | None = None
    max_tokens: int | None = None
    relation: Callable[..., tuple[list[Case], list[Response], Callable]] | None = None
    budget: int | None = None  # cases asked by default (a fixed sample); --harness-full asks all


def _suite_marker(node: Any) -> SuiteSpec:
    marker = node.get_closest_marker(MARKER)
    if marker is None:
        raise pytest.UsageError(
            f"{node.nodeid}: uses eval fixtures but has no @pytest.mark.{MARKER}(name, dataset=...)")
    name = marker.args[0] if marker.args else marker.kwargs.get("name")
    dataset = marker.args[1] if len(marker.args) > 1 else marker.kwargs.get("dataset")
    if not name or not dataset:
        raise pytest.UsageError(f"{node.nodeid}: {MARKER} needs a name and a dataset")
    unknown = set(marker.kwargs) - {"name", "dataset", "scorer", "loader", "analysis", "max_tokens", "relation",
                                    "budget"}
    if unknown:
        raise pytest.UsageError(f"{node.nodeid}: {MARKER} got unknown arguments {sorted(unknown)}")
    budget = marker.kwargs.get("budget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise pytest.UsageError(f"{node.nodeid}: {MARKER} budget must be a positive number of cases")
    return SuiteSpec(name, dataset, marker.kwargs.get("scorer"), marker.kwargs.get("loader"),
                     marker.kwargs.get("analysis"), marker.kwargs.get("max_tokens"), marker.kwargs.get("relation"),
                     budget)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "eval_case" not in metafunc.fixturenames:
        return
    spec = _suite_marker(metafunc.definition)
    state: HarnessSession = metafunc.config.stash[_STATE]
    # DatasetError -> a collection error naming file:line
    dataset, _, _ = state.dataset(spec.dataset, spec.loader, spec.budget, spec.name)
    metafunc.parametrize("eval_case", [c.id for c in dataset.cases],
                         ids=[c.id for c in dataset.cases], indirect=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is not None:
        state._reporter = session.config.pluginmanager.get_plugin("terminalreporter")


@pytest.fixture
def harness_config(request: pytest.FixtureRequest) -> HarnessConfig:
    """The resolved harness configuration."""
    return request.config.stash[_STATE].config


@pytest.fixture(scope="session")
def local_model_server(request: pytest.FixtureRequest):
    """The embedded model's OpenAI-compatible server (SmolLM2 behind llama.cpp on 127.0.0.1),
    health-checked; the suites share it, and it is stopped at the end of the session."""
    return request.config.stash[_STATE].local_server()


@pytest.fixture
def eval_suite(request: pytest.FixtureRequest) -> SuiteRun:
    """The suite run of the test's module (queried and scored on first use)."""
    return request.config.stash[_STATE].suite_run(_suite_marker(request.node))


@pytest.fixture
def eval_case(request: pytest.FixtureRequest, eval_suite: SuiteRun,
              record_property: Callable[[str, object], None]) -> EvalCase:
    """One case's outcome; with junit_family xunit1 its answer and scores also go to the JUnit
    XML as properties (xunit2 allows no per-test properties; the xfail/failure message still
    names the failed scorers and the answer)."""
    outcome = EvalCase(eval_suite.by_id[request.param])
    if request.config.getini("junit_family") not in ("xunit1", "legacy"):
        return outcome
    record_property("answer", outcome.response.text if outcome.response.ok else "")
    if outcome.response.error:
        record_property("error", outcome.response.error)
    for score in outcome.scores.values():
        record_property(f"score.{score.name}", round(score.value, 6))
    record_property("passed", outcome.passed)
    return outcome


HARNESS_ERROR = pytest.ExitCode.INTERNAL_ERROR  # 3: no verdict could be produced or recorded


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Exit status 3 when the harness itself failed (a suite could not run, or its results
    could not be recorded in MLflow), so CI tells "the model failed the gate" (1) apart from
    "the gate could not decide". Then promotion: when a registered model version is named and
    everything passed, it gets the promotion alias; otherwise it never does, and says why."""
    state: HarnessSession | None = session.config.stash.get(_STATE, None)
    if state is None:
        return
    state.finish_logging()
    pooled = state.pooled = state.pooled_screens() if state.runs() else None
    if pooled is not None and not pooled.passed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # every suite passed, their answers together did not
        exitstatus = pytest.ExitCode.TESTS_FAILED
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and state.harness_errors():
        session.exitstatus = HARNESS_ERROR
        exitstatus = HARNESS_ERROR
    if not state.config.promote_model:
        return
    from harness import tracking

    config = state.config
    runs = state.runs()
    reasons = []
    if not runs:
        reasons.append("no eval suite ran")
    reasons += [f"suite '{r.name}' failed its gate" for r in runs if not r.verdict.passed]
    if pooled is not None and not pooled.passed:
        reasons.append("the answers of all suites together failed the screen criteria")
    reasons += [f"suite '{r.name}' ran a subset ({len(r.dataset)} of {r.subset_of} cases)"
                for r in runs if r.subset_of is not None]
    reasons += [f"suite '{r.name}' was not recorded in MLflow" for r in runs if not r.run_id]
    if exitstatus != 0:
        reasons.append(f"pytest exit status {int(exitstatus)}")
    run_ids = {r.name: r.run_id for r in runs if r.run_id}
    uri = config.effective_tracking_uri()
    try:
        name, version = tracking.resolve_model_version(config.promote_model, uri)
        if reasons:
            tracking.mark_model_version_failed(name, version, run_ids=run_ids, tracking_uri=uri)
            state.promotion = (False, f"NOT promoted: {name} version {version} keeps its aliases ("
                                      + "; ".join(reasons) + ")")
            return
        tracking.promote_model_version(name, version, alias=config.promotion_alias, run_ids=run_ids,
                                       tracking_uri=uri)
        state.promotion = (True, f"promoted: {name} version {version} is now @{config.promotion_alias}")
    except tracking.TrackingError as exc:
        state.promotion = (False, f"NOT promoted: {exc}")
        session.exitstatus = HARNESS_ERROR  # a promotion asked for and not done


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state: HarnessSession | None = config.stash.get(_STATE, None)
    if state is None or (not state.order and state.promotion is None):
        return
    tr = terminalreporter
    tr.section("harness: promotion gates")
    if any(not row.passed and not row.case.critical for run in state.runs() for row in run.table.rows):
        # pytest counts them as "xfailed", which reads like skipped tests: say what they are
        tr.write_line("note: pytest reports failed non-critical cases as 'xfailed'. They were run and "
                      "scored, and failed; each counts in its suite's criteria below, which decide the "
                      "gate. A failed critical case fails the gate by itself.")
    for run in state.runs():
        failed = [row for row in run.table.rows if not row.passed]
        if failed:
            tr.write_line(f"suite '{run.name}': {len(failed)} of {len(run.table)} cases failed")
            for row in failed:
                answer = row.response.text if row.response.ok else "<no answer>"
                answer = " ".join(answer.split())
                answer = answer if len(answer) <= 70 else answer[:69] + "…"
                mark = "CRITICAL " if row.case.critical else ""
                tr.write_line(f"  {mark}{row.case.id}: {'; '.join(row.failures())} | answer: {answer!r}")
        tr.write_line(run.verdict.report(), red=not run.verdict.passed, green=run.verdict.passed)
        if run.sampled_from is not None:
            tr.write_line(f"  note: the suite's call budget sampled {run.subset_of or len(run.dataset)} of its "
                          f"{run.sampled_from} cases; --harness-full runs them all")
        if run.subset_of is not None:
            tr.write_line(f"  note: a subset ran ({len(run.dataset)} of {run.subset_of} cases): "
                          "criteria are calibrated for the full dataset", yellow=True)
        if run.run_id:
            tr.write_line(f"  MLflow run {run.run_id} in experiment '{state.config.experiment}'")
        if run.tracking_error:
            tr.write_line(f"  NOT RECORDED IN MLFLOW: {run.tracking_error}", red=True)
            tr.write_line(f"  results kept in {run.local_record}", red=True)
    pooled = state.pooled  # judged once, in pytest_sessionfinish, which runs first
    if pooled is not None:
        tr.write_line("screens over the answers of every suite together (harness.scorers.screen):")
        tr.write_line(pooled.report(), red=not pooled.passed, green=pooled.passed)
    if state.promotion is not None:
        promoted, message = state.promotion
        tr.write_line(message, green=promoted, red=not promoted)
    if state.config.report:
        from harness.report import markdown_report

        path = state.config.path(state.config.report)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown_report(state.runs(), promotion=state.promotion,
                                        experiment=state.config.experiment, pooled=pooled), encoding="utf-8")
        tr.write_line(f"Markdown report: {path}")
    uri = state.config.effective_tracking_uri()
    if uri.startswith("sqlite:"):
        tr.write_line(f"compare runs: mlflow ui --backend-store-uri {uri}")
