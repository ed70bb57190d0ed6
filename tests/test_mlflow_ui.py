"""End to end, as users see it: two real harness runs of one suite (traces on, as by default), a
real `mlflow server` on their store, and MLflow's GenAI experiment view in headless Chromium:

1. *Evaluation runs* lists both runs as evaluation runs, with their `case_pass/rate`;
2. a run's *Traces* tab has one row per case with a score column per check (each check's pass or
   fail, `case_passed`, the expected response) and the case id (`harness.case_id`), as MLflow
   recorded them;
3. *compare to* the other run lines the cases up, both runs' values in every column, marks each
   case that regressed and shows each column's change (`case_passed` -80%);
4. the filter `case_passed` = False leaves exactly the failed cases;
5. ticking two runs in *Evaluation runs* and *Actions* > *Compare* shows the same comparison.

Run with `pytest tests -m e2e`. Needs Debian's `chromium` and `chromium-driver`
(`.ci/install-browser`) and selenium (the `test` extra). Without them the test skips, unless
HARNESS_REQUIRE_BROWSER=1 (CI), where it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from harness.tracking.case_traces import CASE_ID_TAG, CASE_PASSED, EXPECTED_RESPONSE

pytestmark = pytest.mark.e2e

EXPERIMENT = "mini-evals"  # the experiment the eval_project fixture's pyproject names
METRIC = "case_pass/rate"
CHECKS = ("contains", "exact_match", "json", "length", "list_items", "regex")  # the mini suite's checks
FAILED = ["add", "json", "list", "one-word"]  # the cases BAD_ANSWERS fails
# the traces table's column ids (mlflow/server/js: `<name>_assessment_column`, `tags:<key>` ...)
CASE_ID_COL = f"tags:{CASE_ID_TAG}"
EXPECTED_COL = f"{EXPECTED_RESPONSE}_expectation_column"
WAIT_S = 90  # explicit waits: generous, the machine is slow and shared
SERVER_START_S = 180  # `mlflow server` imports a lot; ~40 s on 2 busy cores
WINDOW = (1400, 900)
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-dev-shm-usage", "--hide-scrollbars",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}")
# what MLflow's UI keeps in localStorage: no assistant panel, no first-visit popovers
QUIET_UI = {"mlflow.assistant.panelOpen_v1": "false", "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
            "mlflow.detectIssues.guidanceShown_v1": "true"}


def _column(name: str) -> str:
    return f"{name}_assessment_column"


@pytest.fixture(scope="session")  # session scope: checked before the (session) store template
def browser_tools() -> tuple[str, str]:
    """(chromium, chromedriver) paths. Skips when the browser, its driver or selenium is
    missing; fails instead when HARNESS_REQUIRE_BROWSER=1, so CI can never skip silently."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    missing = []
    if not (chromium and driver):
        missing.append("Debian's chromium and chromium-driver on PATH (run .ci/install-browser)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (install the `test` extra: pip install -e '.[test]')")
    if missing:
        reason = f"the MLflow UI test needs {' and '.join(missing)}"
        if os.environ.get("HARNESS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"HARNESS_REQUIRE_BROWSER=1 and {reason}", pytrace=False)
        pytest.skip(reason)
    return chromium, driver


class MlflowServer:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path):
        self.proc, self.url, self.log = proc, url, log

    def wait_ready(self) -> str:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"mlflow server exited with status {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as resp:
                    if resp.status == 200 and resp.read().strip() == b"OK":
                        return self.url
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer /health within {SERVER_START_S} s:\n{self.tail()}")
            time.sleep(0.5)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def mlflow_server(browser_tools, eval_project, tmp_path):
    """`mlflow server` on 127.0.0.1 over the eval project's SQLite store, started before the
    harness runs (it takes tens of seconds to boot); terminated whatever happens."""
    store = eval_project.store
    # the harness puts a SQLite store's artifacts next to the database (harness.tracking)
    artifacts = (store / "mlruns").as_uri()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "mlflow-server.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_MODEL_CATALOG_URI": ""}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", eval_project.tracking_uri,
             "--default-artifact-root", artifacts, "--artifacts-destination", artifacts,
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield MlflowServer(proc, f"http://127.0.0.1:{port}", log)
    finally:
        # it leads its own process group (uvicorn worker included): end the whole group
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def two_runs(stub, eval_project):
    """Two real harness runs of the `mini` suite into the store: a baseline that answers every
    case right and a candidate that gets four of five wrong. Returns the experiment, the two
    runs, and what MLflow recorded on each run's traces: run id -> case id -> {assessment name:
    value} (each check's pass as a bool, case_passed, the expected response)."""
    import mlflow
    from mini_project import BAD_ANSWERS, GOOD_ANSWERS, MINI_CASES
    from stub_server import answer_table

    base = eval_project(stub(answer_table(GOOD_ANSWERS)).base_url, "--harness-label", "baseline")
    assert base.ret == 0, base.stdout.str()
    cand = eval_project(stub(answer_table(BAD_ANSWERS)).base_url, "--harness-label", "candidate")
    assert cand.ret == 1, cand.stdout.str()  # its gate fails: the two runs really differ
    client = mlflow.MlflowClient(eval_project.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags.get("harness.label") for r in runs] == ["baseline", "candidate"]
    assert [r.data.tags.get("mlflow.runType") for r in runs] == ["genai_evaluate"] * 2
    assert [r.data.metrics[METRIC] for r in runs] == [1.0, 0.2]
    recorded = {}
    for run in runs:
        traces = client.search_traces(locations=[experiment.experiment_id], run_id=run.info.run_id,
                                      include_spans=False)
        recorded[run.info.run_id] = {t.info.tags[CASE_ID_TAG]: {a.name: a.value for a in t.info.assessments}
                                     for t in traces}
    base_cases, cand_cases = (recorded[r.info.run_id] for r in runs)
    assert set(base_cases) == set(cand_cases) == {c["id"] for c in MINI_CASES}
    assert [c for c, v in sorted(base_cases.items()) if not v[CASE_PASSED]] == []
    assert [c for c, v in sorted(cand_cases.items()) if not v[CASE_PASSED]] == FAILED
    return experiment, runs[0], runs[1], recorded


@pytest.fixture
def browser(browser_tools):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_tools
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    # Debian's driver, explicitly: Selenium Manager must never try to download one
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        # --window-size sizes the window, not the page: make the viewport itself 1400x900
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False})
        driver.set_page_load_timeout(WAIT_S)
        yield driver
    finally:
        driver.quit()


def _screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    extra = os.environ.get("HARNESS_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / name)
    return path


# The GenAI traces table: one [role=row] per case; each cell's style names its column
# (`flex: ... var(--col-<column id>-size)`); with *compare to* a cell holds one value per run,
# this run's first. Returns, per row, column id -> the cell's lines, and under "arrows" the
# visible change arrows of each assessment cell, as angles: 45 (down: this run is worse than
# the other), -45 (up).
_TRACE_ROWS_JS = """
return [...document.querySelectorAll('[role="row"]')]
  .filter(r => !r.classList.contains('table-isHeader'))
  .map(r => {
    const row = {arrows: {}};
    for (const cell of r.querySelectorAll('[role="cell"]')) {
      const m = /--col-(.+?)-size\\)/.exec(cell.getAttribute('style') || '');
      if (!m) continue;
      const id = m[1].replace(/\\\\(.)/g, '$1');
      const link = cell.querySelector('a');
      row[id] = id === 'request' && link ? [link.textContent.trim()]
        : cell.innerText.split('\\n').map(s => s.trim()).filter(Boolean);
      row.arrows[id] = [...cell.querySelectorAll('span.anticon')]
        .filter(a => !a.closest('[data-state]') && getComputedStyle(a).visibility === 'visible')
        .map(a => new DOMMatrix(getComputedStyle(a).transform))
        .filter(t => !t.isIdentity)
        .map(t => Math.round(Math.atan2(t.b, t.a) * 180 / Math.PI));
    }
    return row;
  })
  .filter(row => Object.keys(row).length > 1);
"""

# One row of the *Evaluation runs* table (found by its checkbox, which carries the run id):
# the run name, and header -> cell text for the other columns.
_EVAL_RUN_ROW_JS = """
const box = document.querySelector(`[data-testid="eval-runs-table-cell-checkbox-${arguments[0]}"]`);
const row = box && box.closest('[role="row"]');
const header = document.querySelector('[role="row"].table-isHeader');
if (!row || !header) return null;
const names = [...header.querySelectorAll('[role="columnheader"]')].map(h => h.textContent.trim());
const cells = [...row.querySelectorAll('[role="cell"]')];
const out = {};
names.forEach((name, i) => { if (name && cells[i]) out[name] = cells[i].textContent.trim(); });
const link = row.querySelector('a[data-component-id="mlflow.eval-runs.run-name-cell"]');
out['Run Name'] = link ? link.textContent.trim() : null;
return out;
"""


def _lines(driver, xpath: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [line.strip() for e in driver.find_elements(By.XPATH, xpath)
            for line in e.get_attribute("innerText").split("\n") if line.strip()]


def test_eval_runs_traces_compare_to_and_failed_cases_in_the_mlflow_ui(mlflow_server, two_runs, browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    experiment, base, cand, recorded = two_runs
    eid = experiment.experiment_id
    mine, theirs = recorded[cand.info.run_id], recorded[base.info.run_id]
    url = mlflow_server.wait_ready()
    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException])

    def shown(verdict: dict, name: str) -> str:
        """How the traces table shows an assessment: True / False, `null` where the case has none."""
        return str(verdict[name]) if name in verdict else "null"

    def passing(cases: dict) -> int:
        """The percentage of passed cases, as the column headers show it."""
        return round(100 * sum(bool(v[CASE_PASSED]) for v in cases.values()) / len(cases))

    def trace_rows() -> dict[str, dict]:
        """The traces table's rows by case id (the `harness.case_id` column, once shown)."""
        return {(r.get(CASE_ID_COL) or [None])[0]: r for r in browser.execute_script(_TRACE_ROWS_JS)}

    def click(xpath: str, what: str):
        wait.until(lambda d: d.find_element(By.XPATH, xpath).is_displayed(), f"{what} not shown")
        browser.find_element(By.XPATH, xpath).click()

    def choose(trigger: str, option: str):
        """Open a dropdown (an XPath) and pick the option with this text."""
        click(trigger, f"dropdown {trigger}")
        click(f"//*[@role='option'][normalize-space(.)='{option}' or .//*[normalize-space(text())='{option}']]",
              f"option {option!r}")

    def set_column(name: str, on: bool):
        """Tick or untick a column in the traces table's *Columns* dropdown (open)."""
        option = f"//*[@role='option'][.//*[normalize-space(text())='{name}']]"
        element = wait.until(lambda d: d.find_element(By.XPATH, option), f"column {name!r} not offered")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        box = element.find_element(By.CSS_SELECTOR, "input[type=checkbox]")
        if box.is_selected() != on:
            element.click()
        wait.until(lambda d: d.find_element(By.XPATH, option).find_element(
            By.CSS_SELECTOR, "input[type=checkbox]").is_selected() == on, f"column {name!r} not toggled")

    def rest():
        """The pointer onto the page title: no hover highlight or tooltip in a screenshot."""
        ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h2")).perform()

    def narrow_columns():
        """Request and Response columns dragged narrower, as a user would, so that every check
        fits in the screenshots; the pointer then rests on the title."""
        for title, width in (("Request", 170), ("Response", 200)):
            header = browser.find_element(By.XPATH, f"//*[@role='columnheader'][.//*[@title='{title}']]")
            by = width - round(header.rect["width"])
            if abs(by) > 10:
                ActionChains(browser).click_and_hold(header.find_element(
                    By.CSS_SELECTOR, '[aria-label="Resize Column"]')).move_by_offset(by, 0).release().perform()
        rest()

    try:
        browser.get(f"{url}/health")
        browser.execute_script("for (const [k, v] of Object.entries(arguments[0])) localStorage.setItem(k, v);",
                               QUIET_UI)

        # 1. Evaluation runs: both runs, as evaluation runs, with their case_pass/rate
        browser.get(f"{url}/#/experiments/{eid}/evaluation-runs")
        for run in (base, cand):
            row = wait.until(lambda d, run=run: d.execute_script(_EVAL_RUN_ROW_JS, run.info.run_id),
                             f"run {run.info.run_name!r} not listed under Evaluation runs")
            assert row["Run Name"] == run.info.run_name
            assert row["Type"] == "Eval", row
            assert float(row[METRIC]) == pytest.approx(run.data.metrics[METRIC]), row
        # the page's heading renders after its table on a busy machine: waited for, not read once
        wait.until(lambda d: "Evaluation runs" in _lines(d, "//h2"), "no 'Evaluation runs' heading")
        wait.until(lambda d: d.find_element(
            By.CSS_SELECTOR, '[data-component-id="mlflow.eval-runs.table-refresh-button"]').is_enabled())
        _screenshot(browser, tmp_path, "mlflow-eval-runs.png")

        # 2. Clicking the candidate's name shows its cases beside the list; its ↗ opens the run
        click(f"//a[@data-component-id='mlflow.eval-runs.run-name-cell'][normalize-space(.)='{cand.info.run_name}']",
              "the candidate's name")
        wait.until(lambda d: f"selectedRunUuid={cand.info.run_id}" in d.current_url
                   and f"{len(mine)} of {len(mine)}" in _lines(d, "//*[contains(text(), ' of ')]"),
                   "the candidate's traces are not shown beside the runs list")
        href = browser.find_element(By.CSS_SELECTOR, f'a[href$="/runs/{cand.info.run_id}/evaluations"]')
        run_page = href.get_attribute("href")
        browser.get(run_page)  # the link opens a new tab; same page here
        compare_buttons = '//button[@data-component-id="mlflow.evaluations_review.table_ui.compare_to_run_button"]'
        wait.until(lambda d: len(d.find_elements(By.XPATH, compare_buttons)) == 2, "the run page has no 'compare to'")
        wait.until(lambda d: len(d.execute_script(_TRACE_ROWS_JS)) == len(mine), "the run's traces are not listed")
        browser.find_element(By.CSS_SELECTOR, '[data-component-id="mlflow_header.toggle_sidebar_button"]').click()

        # 3. Its traces: a row per case, a column per check; the case id and every check shown
        click('//button[@data-testid="column-selector-button"]', "Columns")
        set_column(CASE_ID_TAG, True)
        for check in CHECKS:
            set_column(check, True)
        for base_column in ("Trace ID", "Tokens", "Execution time", "State"):  # room for the checks
            set_column(base_column, False)
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        wanted = {CASE_ID_COL, EXPECTED_COL, _column(CASE_PASSED), *map(_column, CHECKS)}
        wait.until(lambda d: set(trace_rows()) == set(mine) and all(wanted <= set(r) for r in trace_rows().values()),
                   "the traces table does not show a row per case with the case id and every check")
        narrow_columns()
        rows = trace_rows()
        for case, verdict in mine.items():
            for name in (CASE_PASSED, *CHECKS):
                assert rows[case][_column(name)] == [shown(verdict, name)], (case, name, rows[case])
            assert rows[case][EXPECTED_COL], (case, rows[case])
        assert rows["add"][EXPECTED_COL] == ["12"] and rows["add"][_column("regex")] == ["False"]
        assert rows["capital"][_column(CASE_PASSED)] == ["True"]
        _screenshot(browser, tmp_path, "mlflow-run-traces.png")

        # 4. compare to the baseline: cases lined up, both runs' values, regressions, deltas
        choose(f"({compare_buttons})[2]", base.info.run_name)
        wait.until(lambda d: f"compareToRunUuid={base.info.run_id}" in d.current_url, "compare to did not apply")
        wait.until(lambda d: set(trace_rows()) == set(mine)
                   and all(len(r.get(_column(CASE_PASSED), ())) == 2 for r in trace_rows().values()),
                   "the compare view does not line up both runs' cases")
        rows = trace_rows()
        for case in mine:
            row = rows[case]
            assert row[CASE_ID_COL] == [case, case], row  # the same case on both sides
            for name in (CASE_PASSED, *CHECKS):
                assert row[_column(name)] == [shown(mine[case], name), shown(theirs[case], name)], (case, name, row)
            # a down arrow beside the candidate's case_passed where it fell from the baseline's
            assert row["arrows"][_column(CASE_PASSED)] == ([45] if case in FAILED else []), (case, row)
        assert rows["one-word"][_column("exact_match")] == ["False", "True"]
        # the column's change: the candidate passes 20% of its cases, the baseline 100%: -80%
        def header_change(d) -> bool:
            header = _lines(d, f"//*[@role='columnheader'][.//*[@title='{CASE_PASSED}']]")
            share = f"{passing(mine)}%"
            return share in header and header[header.index(share) + 1:][:1] == [
                f"{passing(mine) - passing(theirs):+d}%"]

        wait.until(header_change, "the case_passed header does not show the candidate's share and its change")
        narrow_columns()
        _screenshot(browser, tmp_path, "mlflow-compare.png")

        # 5. Only the failed cases: compare off, filter case_passed = False
        browser.find_element(By.XPATH, f"({compare_buttons})[2]/following-sibling::*[@role='button']").click()
        wait.until(lambda d: "compareToRunUuid" not in d.current_url
                   and all(len(r.get(_column(CASE_PASSED), ())) == 1 for r in trace_rows().values()),
                   "compare to not cleared")
        click("//button[starts-with(normalize-space(.), 'Filters')]", "Filters")
        choose("//*[@id='filter-column-0']", "Assessments")
        choose("//*[@id='filter-key-0']", CASE_PASSED)
        assert _lines(browser, "//*[@id='filter-operator-0']") == ["="]
        choose("//*[@id='filter-value-0']", "False")
        click("//button[normalize-space(.)='Apply filters']", "Apply filters")
        wait.until(lambda d: sorted(trace_rows()) == FAILED, "the filter does not leave exactly the failed cases")
        assert all(r[_column(CASE_PASSED)] == ["False"] for r in trace_rows().values())
        wait.until(lambda d: f"{len(FAILED)} of {len(mine)}" in _lines(d, "//*[contains(text(), ' of ')]"),
                   f"no '{len(FAILED)} of {len(mine)}' count")
        browser.find_element(By.TAG_NAME, "h2").click()  # closes the filter popover
        wait.until(lambda d: not d.find_elements(By.XPATH, "//button[normalize-space(.)='Apply filters']"))
        narrow_columns()
        shot = _screenshot(browser, tmp_path, "mlflow-failed-cases.png")
        assert shot.stat().st_size > 10_000  # a rendered page, not a blank one

        # 6. The same comparison from the list: tick the candidate, then the baseline, Actions > Compare
        browser.get(f"{url}/#/experiments/{eid}/evaluation-runs")
        for run in (cand, base):  # the first ticked is the run shown, the second the one it is compared to
            box = f'[data-testid="eval-runs-table-cell-checkbox-{run.info.run_id}"]'
            wait.until(lambda d, box=box: not d.find_element(By.CSS_SELECTOR, box).is_selected(),
                       f"{run.info.run_name} not listed, or already ticked")
            browser.find_element(By.CSS_SELECTOR, box).click()
            wait.until(lambda d, box=box: d.find_element(By.CSS_SELECTOR, box).is_selected(), "run not ticked")
        click('//button[@data-component-id="mlflow.eval-runs.actions-button"]', "Actions")
        click("//*[@role='menuitem'][normalize-space(.)='Compare']", "Actions > Compare")
        wait.until(lambda d: f"selectedRunUuid={cand.info.run_id}" in d.current_url
                   and f"compareToRunUuid={base.info.run_id}" in d.current_url, "Actions > Compare did not compare")
        wait.until(lambda d: set(trace_rows()) == set(mine)
                   and all(len(r.get(_column(CASE_PASSED), ())) == 2 for r in trace_rows().values()),
                   "Actions > Compare does not line up both runs' cases beside the list")
        lines = _lines(browser, "//body")
        heading = lines[lines.index("Comparing"):][:6]  # Comparing <candidate> to <baseline>
        assert heading.index(cand.info.run_name) < heading.index("to") < heading.index(base.info.run_name), heading
        for case, row in trace_rows().items():
            assert row[_column(CASE_PASSED)] == [shown(mine[case], CASE_PASSED), shown(theirs[case], CASE_PASSED)]

        # the per-case table is still there as an artifact, for scripts
        query = urllib.parse.urlencode({"run_id": cand.info.run_id})
        with urllib.request.urlopen(f"{url}/ajax-api/2.0/mlflow/artifacts/list?{query}", timeout=30) as resp:
            assert {"eval_results.json", "verdict.json"} <= {f["path"] for f in json.load(resp).get("files", [])}
    except BaseException:
        print(f"mlflow server log:\n{mlflow_server.tail()}")
        try:  # what the browser showed, for the failure report; never masks the failure
            (tmp_path / "failure.html").write_text(browser.page_source)
            _screenshot(browser, tmp_path, "failure.png")
            print(f"failure screenshot and page: {tmp_path}")
        except (WebDriverException, OSError) as exc:
            print(f"could not save the page: {exc!r}")
        raise
