"""What the suites of one session share, whatever runs them (pytest, a script, a notebook):
the config; datasets, read once; the criteria; the target's parts (the embedded server, the
guards, trained once); a circuit breaker per endpoint; the judge's agreement with people, asked
once; the score cache; the MLflow logger; and the suites' runs, for what is decided over all of
them (the pooled screens, promotion). Nothing here imports pytest: a harness fault is raised as
HarnessError, which a front end turns into its own "the harness failed" (pytest: exit 3).
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from harness.config import HarnessConfig
from harness.core import Case, Generation, Response
from harness.datasets import Dataset, load
from harness.engine import Asker, Breaker, EngineSettings, RunStats
from harness.gates import SCREEN_CRITERIA, Criterion, Verdict, evaluate_pooled, load_criteria
from harness.journal import Journal

if TYPE_CHECKING:
    from harness.suite import SuiteRun
    from harness.targets.base import Target


class HarnessError(RuntimeError):
    """The harness itself could not go on (its embedded server died or did not start): no
    verdict about the model can be given."""


class Progress(Protocol):
    def update(self, case: Case, sample: int, response: Response) -> None: ...

    def close(self) -> None: ...


class Observer(Protocol):
    """Where a session reports what it is doing: a line at a time, and a progress display per
    suite's querying. The pytest plugin draws on the terminal; the default prints."""

    def say(self, line: str) -> None: ...

    def progress(self, label: str, total: int) -> Progress: ...


class PrintObserver:
    """Lines printed to stdout, a progress line every `interval` seconds (a script, a notebook)."""

    def __init__(self, interval: float = 30.0):
        self.interval = interval

    def say(self, line: str) -> None:
        print(f"[harness] {line}", flush=True)

    def progress(self, label: str, total: int) -> Progress:
        from harness.progress import SuiteProgress

        return SuiteProgress(label, total, write_line=self.say, interval=self.interval)


def engine_settings(config: HarnessConfig, samples: int = 1) -> EngineSettings:
    """The engine settings for asking the target under evaluation: the configured concurrency,
    retries, deadline, rate limits and breaker (the judge, another endpoint, has its own)."""
    return EngineSettings(
        concurrency=config.effective_concurrency(), retry_budget_s=config.retry_budget_s,
        max_retries=config.max_retries, deadline_s=config.deadline_s,
        requests_per_minute=config.requests_per_minute, tokens_per_minute=config.tokens_per_minute,
        adaptive=config.adaptive_concurrency, breaker_after=config.breaker_after,
        breaker_window_s=config.breaker_window_s, samples=samples)


JUDGE_CONCURRENCY = 8


class Session:
    """One session's shared state (see the module's docstring). Close it to stop the embedded
    server, the MLflow logger and to save the score cache."""

    def __init__(self, config: HarnessConfig, observer: Observer | None = None):
        self.config = config
        self.observer: Observer = observer if observer is not None else PrintObserver(config.progress_interval)
        self._datasets: dict[tuple[Path, Any], Dataset] = {}  # by file and loader: two suites may read one file
        self._criteria: dict[str, list[Criterion]] | None = None
        self._server = None
        self._guards = None
        self._judge_calibration: dict[str, float] | None = None
        self._breakers: dict[str, Breaker] = {}
        self._logger = None  # harness.tracking.SuiteLogger, started with the first run to log
        self._pending: dict[str, Future] = {}  # suite -> its MLflow run being recorded
        self.runs: list[SuiteRun] = []
        self._score_cache = None
        if config.score_cache:
            from harness.scorers import ScoreCache, use_score_cache

            self._score_cache = ScoreCache(config.path(config.score_cache))
            use_score_cache(self._score_cache)

    def say(self, line: str) -> None:
        self.observer.say(line)

    # --- inputs ------------------------------------------------------------------------------

    def dataset(self, path: str | Dataset, loader: Callable[[Path], Dataset] | None = None,
                budget: int | None = None, seed: str = "") -> tuple[Dataset, int, int | None]:
        """The selected cases of a dataset; the size of the suite's default set (its budgeted
        sample, or the whole dataset with --harness-full), which a tag or limit selection is a
        subset of; and the whole dataset's size when the default set is a sample. `loader`
        reads files that are not plain case JSONL (the bias suites' templates); a Dataset
        already made (from a DataFrame, an MLflow evaluation dataset) is taken as it is."""
        if isinstance(path, Dataset):
            whole = path
        else:
            full_path = self.config.path(path).resolve()
            key = (full_path, loader)  # the red team reads the harmful suite's file its own way
            if key not in self._datasets:
                self._datasets[key] = (loader or load)(full_path)
            whole = self._datasets[key]
        default = whole if budget is None or self.config.full else whole.sample(budget, seed)
        sampled_from = len(whole) if len(default) != len(whole) else None
        return default.select(self.config.tags, self.config.limit), len(default), sampled_from

    def criteria(self) -> dict[str, list[Criterion]]:
        if self._criteria is None:
            self._criteria = load_criteria(self.config.path(self.config.criteria_file))
        return self._criteria

    # --- the target and its endpoint ------------------------------------------------------------

    def breaker(self, endpoint: str = "target") -> Breaker:
        """The circuit breaker of an endpoint ("target": the one under evaluation, or "judge"),
        shared by every run of the session against it: a dead endpoint costs the first suite
        the breaker's window, each later one an attempt."""
        if endpoint not in self._breakers:
            self._breakers[endpoint] = Breaker(self.config.breaker_after, self.config.breaker_window_s)
        return self._breakers[endpoint]

    def target(self) -> Target:
        """A fresh client of the configured target (the engine closes it after a run), behind
        the configured guards, which are trained once per session."""
        target = self._model_target()
        if self.config.guards == "none":
            return target
        from harness.guards import GuardedTarget, InputGuard, OutputGuard

        guards = self.config.guards
        if self._guards is None:
            self._guards = (InputGuard() if guards in ("input", "both") else None,
                            OutputGuard() if guards in ("output", "both") else None)
        return GuardedTarget(target, *self._guards)

    def _model_target(self) -> Target:
        from harness.targets import build_target

        config = self.config
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
        """The embedded model's server: started on first use, stopped when the session closes.
        If it cannot start, or has died since, HarnessError: no case is ever scored against a
        dead server."""
        from harness.targets.local_server import LocalModelError

        if self._server is None:
            config = self.config
            self.say(f"starting the embedded local model server ({config.local_slots} "
                     f"slot{'s' if config.local_slots > 1 else ''}, {config.local_threads} threads) ...")
            started = time.perf_counter()
            try:
                self._server = self._local_server_spec().start()
            except LocalModelError as exc:
                raise HarnessError(str(exc)) from None
            self.say(f"local model {self._server.alias} answered its first completion on "
                     f"{self._server.base_url} ({time.perf_counter() - started:.1f}s)")
        self.check_server()
        return self._server

    def check_server(self) -> None:
        """HarnessError if the embedded server has died (checked after every batch of calls)."""
        if self._server is not None and self._server.failure():
            raise HarnessError(self._server.failure())

    def journal(self, name: str, identity: dict) -> Journal | None:
        config = self.config
        return Journal.for_suite(config.path(config.journal_dir), name, identity) if config.journal_dir else None

    def follow_ups(self, name: str, generation: Generation, identity: dict, limit: int | None = None) -> Asker:
        """More questions to the target after a suite's main run (the robustness shrinking, the
        red-team search), through the engine with the suite's settings and a journal of their
        own (`<name>.followup`); at most `limit` of them (None: no bound)."""
        config = self.config
        return Asker(self.target, engine_settings(config), journal=self.journal(f"{name}.followup", identity),
                     replay=config.replay, resume=config.resume, breaker=self.breaker(), generation=generation,
                     after=self.check_server, limit=limit)

    # --- the judge ---------------------------------------------------------------------------

    def judge(self, name: str, concurrency: int = JUDGE_CONCURRENCY) -> Asker:
        """The judge, asked through the engine (bounded retries, the judge's breaker) with its
        own journal `<name>.judge`, never completed: it is the judge's cache across runs (an
        answer the same judge has judged before is not asked again; --harness-no-resume asks
        afresh). `concurrency` is 1 for a judge that answers one request at a time."""
        from harness.judge import schema_identity
        from harness.targets import judge_target

        config = self.config
        # with judge_json_schema each request carries its verdict's schema; the schemas' name is
        # part of the judge's identity, hence of its journal's keys
        structured = schema_identity() if config.judge_json_schema else None
        settings = EngineSettings(concurrency=concurrency, retry_budget_s=config.retry_budget_s,
                                  max_retries=config.max_retries, deadline_s=config.deadline_s,
                                  breaker_after=config.breaker_after, breaker_window_s=config.breaker_window_s)
        identity = judge_target(config, connect=False, structured=structured).describe()

        def reused(stats: RunStats) -> None:
            if stats.reused:
                self.say(f"suite '{name}': {stats.reused} verdicts reused from the judge's journal "
                         f"(same judge, same answer), {stats.calls} judge calls made")

        return Asker(lambda: judge_target(config, connect=not config.replay, structured=structured), settings,
                     journal=self.journal(f"{name}.judge", identity), replay=config.replay, resume=config.resume,
                     breaker=self.breaker("judge"), on_batch=reused)

    def judge_human_agreement(self) -> dict[str, float]:
        """The judge's agreement with human labels on the held-out calibration answers, asked
        once per session (and journalled: a rerun with the same judge asks nothing)."""
        if self._judge_calibration is None:
            from harness.judge import calibration_cases, human_agreement_of

            rows = calibration_cases()
            self.say(f"judge: checking {self.config.judge_model} against {len(rows)} human-labelled answers ...")
            self._judge_calibration = human_agreement_of(rows, self.judge("judge-calibration"),
                                                         json_schema=self.config.judge_json_schema)
        return self._judge_calibration

    # --- recording ---------------------------------------------------------------------------

    def record(self, run: SuiteRun, **logged: Any) -> None:
        """Keep the run, write its local record, and start recording it in MLflow (the next
        suite's calls begin meanwhile; finish_logging waits)."""
        from harness import tracking

        config = self.config
        run.local_record = tracking.write_local_record(
            config.path(config.results_dir), suite=run.name, table=run.table, verdict=run.verdict,
            dataset=run.dataset, target_info=logged["target_info"], metrics=logged["metrics"],
            variant=config.run_variant())
        self.runs.append(run)
        if self._logger is None:
            self._logger = tracking.SuiteLogger(config.effective_tracking_uri())
        settings = {k: v for k, v in config.public_params().items()
                    if k != "tracking_uri"}  # a URI may carry credentials
        settings["concurrency"] = config.effective_concurrency()
        self._pending[run.name] = self._logger.submit(
            suite=run.name, table=run.table, verdict=run.verdict, dataset=run.dataset, settings=settings,
            tracking_uri=config.effective_tracking_uri(), experiment=config.experiment, root=config.root,
            trace_limit=config.trace_limit, full_traces=config.traces and not config.replay, **logged)

    def finish_logging(self) -> None:
        """Wait for every suite's MLflow run: its id, or why it could not be recorded."""
        from harness import tracking

        for run in self.runs:
            pending = self._pending.pop(run.name, None)
            if pending is None:
                continue
            try:
                logged = tracking.SuiteLogger.result(pending)
            except tracking.TrackingError as exc:
                run.tracking_error = str(exc)
                continue
            run.run_id, run.traces = logged.run_id, logged.traces

    def tracking_errors(self) -> list[str]:
        """Runs MLflow did not record, and runs whose case traces the store refused in part: the
        evidence a user opens in the UI is incomplete either way (a harness error, not a pass)."""
        errors = [f"suite '{r.name}': {r.tracking_error}" for r in self.runs if r.tracking_error]
        return errors + [f"suite '{r.name}': {r.traces.lost} case traces lost: {r.traces.why_lost}"
                         for r in self.runs if r.traces is not None and r.traces.lost]

    # --- over every suite ----------------------------------------------------------------------

    def pooled_screens(self) -> Verdict | None:
        """The screen criteria over every answer of every suite that ran (None without any)."""
        if not self.runs:
            return None
        criteria = self.criteria()
        return evaluate_pooled([(run.table, criteria.get(run.name)) for run in self.runs],
                               criteria.get(SCREEN_CRITERIA) or [])

    def promote(self, pooled: Verdict | None, reasons: Sequence[str] = ()) -> tuple[bool, str]:
        """Promotion of the registered model version named by `promote_model`: when every suite
        passed and was recorded, it gets the promotion alias; otherwise it keeps its aliases and
        the reasons are said (and recorded on the version). `reasons`: the front end's own (a
        failed exit status). Raises tracking.TrackingError when the registry cannot be updated."""
        from harness import tracking

        config, runs = self.config, self.runs
        why = [] if runs else ["no eval suite ran"]
        why += [f"suite '{r.name}' failed its gate" for r in runs if not r.verdict.passed]
        if pooled is not None and not pooled.passed:
            why.append("the answers of all suites together failed the screen criteria")
        why += [f"suite '{r.name}' ran a subset ({len(r.dataset)} of {r.subset_of} cases)"
                for r in runs if r.subset_of is not None]
        why += [f"suite '{r.name}' was not recorded in MLflow" for r in runs if not r.run_id]
        why += list(reasons)
        run_ids = {r.name: r.run_id for r in runs if r.run_id}
        uri = config.effective_tracking_uri()
        name, version = tracking.resolve_model_version(config.promote_model, uri)
        if why:
            tracking.mark_model_version_failed(name, version, run_ids=run_ids, tracking_uri=uri)
            return False, f"NOT promoted: {name} version {version} keeps its aliases (" + "; ".join(why) + ")"
        tracking.promote_model_version(name, version, alias=config.promotion_alias, run_ids=run_ids,
                                       tracking_uri=uri)
        return True, f"promoted: {name} version {version} is now @{config.promotion_alias}"

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
                self.say(f"score cache not saved: {exc}")
            self._score_cache = None
