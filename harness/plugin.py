"""The pytest plugin: options, the `eval_suite` marker (-> harness.suite.Suite), fixtures,
per-case items, the gate item, the exit status, promotion and the terminal summary. The
pipeline itself is `harness.suite.run_suite`; this module only adapts it to pytest.

An eval suite is an ordinary test module:

    pytestmark = pytest.mark.eval_suite("quality", dataset="datasets/quality/cases.jsonl")

    def test_case(eval_case):      # one item per dataset case
        eval_case.check()

    def test_gate(eval_suite):     # the suite's promotion gate
        eval_suite.check()

The whole suite is queried concurrently once, on first use; items only read the results.
A failed case fails the build only when it is marked critical (otherwise it is reported as
xfail with its reason), so the exit status is exactly: any criterion failed, or any critical
case failed, or the harness could not run (exit 3).
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from harness.config import ConfigError, HarnessConfig, load_config, settings, to_bool
from harness.core import Case, CaseResult, Response, Score
from harness.session import HarnessError, Session
from harness.suite import Suite, SuiteRun, run_suite

_STATE = pytest.StashKey["PluginState"]()
MARKER = "eval_suite"
HARNESS_ERROR = pytest.ExitCode.INTERNAL_ERROR  # 3: no verdict could be produced or recorded
_MARKER_ARGS = ("name", "dataset", "scorer", "loader", "analysis", "max_tokens", "relation", "budget", "reserve")


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
                   "relation=None, budget=None, reserve=0): an evaluation suite over a dataset file (harness.suite.Suite)")
    config.addinivalue_line("markers", "local_model: needs the real embedded local model")
    # MLflow records runs in a background thread, where tracking's own warnings filter cannot
    # reach (filters are process-wide, and pytest resets them per test): its noise (dataset
    # sources, deprecations) is not the user's to act on
    config.addinivalue_line("filterwarnings", "ignore::Warning:mlflow.*")
    options = {name: config.getoption(f"harness_{name}", None) for name, meta in settings() if meta["option"]}
    try:
        harness_config = load_config(config.rootpath, options=options)
    except ConfigError as exc:
        raise pytest.UsageError(f"harness configuration: {exc}") from None
    config.stash[_STATE] = PluginState(Session(harness_config, _TerminalObserver(config)))


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.session.close()


# --- what the items see --------------------------------------------------------------------------

class EvalCase:
    """One case's outcome, as a test item sees it."""

    def __init__(self, result: CaseResult):
        self.result = result

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
        return (f"case {self.case.id} ({self.case.source}) failed: " + "; ".join(self.result.failures())
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


class EvalGate:
    """A suite's run as its gate item sees it: the run's fields (verdict, table, dataset ...),
    and `check()`, the promotion gate."""

    def __init__(self, run: SuiteRun):
        self.run = run

    def __getattr__(self, name: str) -> Any:
        return getattr(self.run, name)

    def check(self) -> None:
        """Fail with the criteria table unless everything passed. (Whether MLflow recorded the
        run is known at the end of the session, which then exits 3 if not.)"""
        if not self.run.verdict.passed:
            pytest.fail(self.run.verdict.report(), pytrace=False)


class EvalSuite:
    """A base for suites written as classes: one test item per case and one for the gate. Each
    subclass carries the `eval_suite` marker naming its suite (its criteria) and dataset:

        @pytest.mark.eval_suite("safety_pii", dataset="datasets/safety/pii.jsonl")
        class TestPersonalData(EvalSuite):
            pass
    """

    def test_case(self, eval_case: EvalCase) -> None:
        eval_case.check()

    def test_gate(self, eval_suite: EvalGate) -> None:
        eval_suite.check()


# --- the session -----------------------------------------------------------------------------------

class PluginState:
    """The session, and each suite's run (or the error it raised: every item of the suite gets
    the same error, without trying again)."""

    def __init__(self, session: Session):
        self.session = session
        self.config: HarnessConfig = session.config
        self.outcomes: dict[str, SuiteRun | BaseException] = {}
        self.pooled = None  # the screens over every suite's answers, judged at session end
        self.promotion: tuple[bool, str] | None = None  # (promoted, what to tell the user)

    def suite_run(self, suite: Suite) -> SuiteRun:
        outcome = self.outcomes.get(suite.name)
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome is not None:
            return outcome
        try:
            run = run_suite(suite, session=self.session)
        except HarnessError as exc:  # the harness's own fault: the whole run stops, exit 3
            pytest.exit(f"harness error: {exc}", returncode=HARNESS_ERROR)
        except Exception as exc:  # e.g. bad criteria, a bad dataset
            self.outcomes[suite.name] = exc
            raise
        self.outcomes[suite.name] = run
        return run

    def harness_errors(self) -> list[str]:
        """Suites that raised instead of producing a verdict, or whose run MLflow did not record."""
        errors = [f"suite '{n}': {e}" for n, e in self.outcomes.items() if isinstance(e, BaseException)]
        return errors + self.session.tracking_errors()


class _TerminalObserver:
    """The session's lines and progress bars on the real terminal, while pytest captures output
    (suites run inside a test item's setup): a live bar on a terminal, a line every
    progress_interval seconds otherwise."""

    def __init__(self, config: pytest.Config):
        self._config = config

    def _reporter(self):
        return self._config.pluginmanager.get_plugin("terminalreporter")

    def say(self, line: str) -> None:
        reporter = self._reporter()
        if reporter is None:
            return
        capture = self._config.pluginmanager.getplugin("capturemanager")
        if capture is None:
            reporter.write_line(f"[harness] {line}")
            reporter.flush()
            return
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            # flushed: a CI log is a pipe, where an unflushed line shows up minutes late
            reporter.write_line(f"[harness] {line}")
            reporter.flush()

    def progress(self, label: str, total: int):
        from harness.progress import SuiteProgress

        reporter = self._reporter()
        live = _LiveTerminal(self._config) if reporter is not None and reporter.isatty else None
        interval = self._config.stash[_STATE].config.progress_interval
        return SuiteProgress(label, total, live=live, write_line=self.say, interval=interval)


class _LiveTerminal:
    """A text stream onto the real terminal while pytest captures output: each write suspends
    capture for itself only."""

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


# --- marker, items, fixtures -----------------------------------------------------------------------

def _suite_marker(node: Any) -> Suite:
    marker = node.get_closest_marker(MARKER)
    if marker is None:
        raise pytest.UsageError(
            f"{node.nodeid}: uses eval fixtures but has no @pytest.mark.{MARKER}(name, dataset=...)")
    unknown = set(marker.kwargs) - set(_MARKER_ARGS)
    if unknown:
        raise pytest.UsageError(f"{node.nodeid}: {MARKER} got unknown arguments {sorted(unknown)}")
    given = {**dict(zip(_MARKER_ARGS, marker.args)), **marker.kwargs}
    if not given.get("name") or not given.get("dataset"):
        raise pytest.UsageError(f"{node.nodeid}: {MARKER} needs a name and a dataset")
    try:
        return Suite(**given)
    except ValueError as exc:
        raise pytest.UsageError(f"{node.nodeid}: {MARKER}: {exc}") from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "eval_case" not in metafunc.fixturenames:
        return
    suite = _suite_marker(metafunc.definition)
    # DatasetError -> a collection error naming file:line
    session = metafunc.config.stash[_STATE].session
    dataset, _, _ = session.dataset(suite.dataset, suite.loader, suite.main_budget(session.config), suite.name)
    metafunc.parametrize("eval_case", [c.id for c in dataset.cases], ids=[c.id for c in dataset.cases],
                         indirect=True)


def pytest_collection_finish(session: pytest.Session) -> None:
    """An unknown target kind is a usage error, found once every eval file (which may register
    its own kind) is imported: not one error per suite."""
    state = session.config.stash.get(_STATE, None)
    if state is None or not any(item.get_closest_marker(MARKER) for item in session.items):
        return
    from harness import targets

    try:
        targets.registry.get(state.config.resolved_target())
    except ConfigError as exc:
        raise pytest.UsageError(f"harness configuration: {exc}") from None


@pytest.fixture
def harness_config(request: pytest.FixtureRequest) -> HarnessConfig:
    """The resolved harness configuration."""
    return request.config.stash[_STATE].config


@pytest.fixture(scope="session")
def local_model_server(request: pytest.FixtureRequest):
    """The embedded model's OpenAI-compatible server (SmolLM2 behind llama.cpp on 127.0.0.1),
    health-checked; the suites share it, and it is stopped at the end of the session."""
    try:
        return request.config.stash[_STATE].session.local_server()
    except HarnessError as exc:
        pytest.exit(f"harness error: {exc}", returncode=HARNESS_ERROR)


@pytest.fixture
def eval_suite(request: pytest.FixtureRequest) -> EvalGate:
    """The suite run of the test's module (queried and scored on first use)."""
    return EvalGate(request.config.stash[_STATE].suite_run(_suite_marker(request.node)))


@pytest.fixture
def eval_case(request: pytest.FixtureRequest, eval_suite: EvalGate,
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


# --- the end of the session ------------------------------------------------------------------------

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Exit status 3 when the harness itself failed (a suite could not run, or its results
    could not be recorded in MLflow), so CI tells "the model failed the gate" (1) apart from
    "the gate could not decide". Then promotion: when a registered model version is named and
    everything passed, it gets the promotion alias; otherwise it never does, and says why."""
    state: PluginState | None = session.config.stash.get(_STATE, None)
    if state is None:
        return
    state.session.finish_logging()
    pooled = state.pooled = state.session.pooled_screens()
    if pooled is not None and not pooled.passed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # every suite passed, their answers together did not
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and state.harness_errors():
        session.exitstatus = HARNESS_ERROR
    if not state.config.promote_model:
        return
    from harness import tracking

    status = int(session.exitstatus)
    try:
        state.promotion = state.session.promote(pooled, [f"pytest exit status {status}"] if status else [])
    except tracking.TrackingError as exc:
        state.promotion = (False, f"NOT promoted: {exc}")
        session.exitstatus = HARNESS_ERROR  # a promotion asked for and not done


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state: PluginState | None = config.stash.get(_STATE, None)
    if state is None or (not state.session.runs and state.promotion is None):
        return
    from harness.report import markdown_report, terminal_summary

    tr, runs, experiment = terminalreporter, state.session.runs, state.config.experiment
    tr.section("harness: promotion gates")
    for line, colour in terminal_summary(runs, pooled=state.pooled, promotion=state.promotion, experiment=experiment):
        tr.write_line(line, **({colour: True} if colour else {}))
    if state.config.report:
        path = state.config.path(state.config.report)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown_report(runs, promotion=state.promotion, experiment=experiment, pooled=state.pooled),
                        encoding="utf-8")
        tr.write_line(f"Markdown report: {path}")
    uri = state.config.effective_tracking_uri()
    if uri.startswith("sqlite:"):
        tr.write_line(f"compare runs: mlflow ui --backend-store-uri {uri}")
