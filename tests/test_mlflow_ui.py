"""End to end, as users see it: two real harness runs of one suite, a real `mlflow server` on
their store, and the MLflow UI in headless Chromium. Both runs must be listed in the harness's
experiment with their `case_pass/rate`, and the compare view must show the two runs side by
side with that metric's two values.

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

pytestmark = pytest.mark.e2e

EXPERIMENT = "mini-evals"  # the experiment the eval_project fixture's pyproject names
METRIC = "case_pass/rate"
METRIC_SAME = "contains/rate"  # 1 in both runs (both answer "Paris"): "show diff only" hides it
WAIT_S = 90  # explicit waits: generous, the machine is slow and shared
SERVER_START_S = 180  # `mlflow server` imports a lot; ~40 s on 2 busy cores
WINDOW = (1400, 900)
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-dev-shm-usage", "--hide-scrollbars",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}")


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
def two_runs(stub, eval_project, monkeypatch):
    """Two real harness runs of the `mini` suite into the store: a baseline that answers every
    case right and a candidate that gets four of five wrong. Returns (experiment, [runs])."""
    import mlflow
    from mini_project import BAD_ANSWERS, GOOD_ANSWERS
    from stub_server import answer_table

    monkeypatch.setenv("HARNESS_TRACES", "false")  # traces are not under test here; saves time
    base = eval_project(stub(answer_table(GOOD_ANSWERS)).base_url, "--harness-label", "baseline")
    assert base.ret == 0, base.stdout.str()
    cand = eval_project(stub(answer_table(BAD_ANSWERS)).base_url, "--harness-label", "candidate")
    assert cand.ret == 1, cand.stdout.str()  # its gate fails: the two runs really differ
    client = mlflow.MlflowClient(eval_project.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [r.data.tags.get("harness.label") for r in runs] == ["baseline", "candidate"]
    # the values the UI must show, as MLflow recorded them
    assert [r.data.metrics[METRIC] for r in runs] == [1.0, 0.2]
    assert [r.data.metrics[METRIC_SAME] for r in runs] == [1.0, 1.0]
    return experiment, runs


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


def _number(text: str | None) -> float | None:
    try:
        return float(text.strip())
    except (AttributeError, ValueError):
        return None


# The compare view's metrics table is two react-virtualized grids: metric names on the left,
# one value column per run on the right, rows matched by their offset. Returns the values in
# the metric's row, left to right, or null while the row is not rendered.
_COMPARE_ROW_JS = """
const link = [...document.querySelectorAll('a[title="Plot chart"]')]
  .find(a => a.textContent.trim() === arguments[0]);
if (!link) return null;
const cell = link.closest('div[style*="position: absolute"]');
const grids = [...document.querySelectorAll('.ReactVirtualized__Grid')];
const values = grids[grids.indexOf(cell.closest('.ReactVirtualized__Grid')) + 1];
if (!values) return null;
return [...values.querySelectorAll('div[style*="position: absolute"]')]
  .filter(c => c.style.top === cell.style.top)
  .sort((a, b) => parseFloat(a.style.left) - parseFloat(b.style.left))
  .map(c => c.textContent.trim());
"""


def test_two_eval_runs_are_listed_and_compared_in_the_mlflow_ui(browser_tools, mlflow_server, two_runs,
                                                                browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    experiment, runs = two_runs
    base, cand = runs
    expected = {r.info.run_id: r.data.metrics[METRIC] for r in runs}
    url = mlflow_server.wait_ready()

    # the artifacts resolve through the server (the per-case table the docs point users to)
    for run in runs:
        query = urllib.parse.urlencode({"run_id": run.info.run_id})
        with urllib.request.urlopen(f"{url}/ajax-api/2.0/mlflow/artifacts/list?{query}", timeout=30) as resp:
            listed = {f["path"] for f in json.load(resp).get("files", [])}
        assert {"eval_results.json", "verdict.json"} <= listed, listed

    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException])

    def texts(selector: str) -> list[str]:
        return [e.get_attribute("textContent").strip() for e in browser.find_elements(By.CSS_SELECTOR, selector)]

    try:
        # keep the assistant side panel closed: it would cover half of every screenshot
        browser.get(f"{url}/health")
        browser.execute_script("localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
                               "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');")

        # 1. The experiment's runs table lists both runs (rows keyed by run id) ...
        browser.get(f"{url}/#/experiments/{experiment.experiment_id}/runs")
        for run in runs:
            wait.until(lambda d, run=run: texts(
                f'[row-id="{run.info.run_id}"] a[href$="/runs/{run.info.run_id}"]') == [run.info.run_name],
                f"run {run.info.run_name!r} not listed in the runs table")
        wait.until(lambda d: "2 matching runs" in d.find_element(By.TAG_NAME, "body").text,
                   "the runs table does not count 2 runs")
        # ... and, once the user adds the metric's column, its value for each run
        browser.find_element(By.CSS_SELECTOR, '[data-testid="column-selection-dropdown"]').click()
        search = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, 'input[placeholder="Search columns"]'))
        search.send_keys(METRIC)
        node = (f'//*[@data-testid="column-selector-tree"]//div[contains(@class, "tree-treenode")]'
                f'[normalize-space(.)="{METRIC}"]//span[contains(@class, "tree-checkbox")]')
        wait.until(lambda d: d.find_element(By.XPATH, node)).click()
        search.send_keys(Keys.ESCAPE)
        column = f'[col-id="metrics.`{METRIC}`"]'
        for run_id, value in expected.items():
            wait.until(lambda d, run_id=run_id, value=value: [_number(t) for t in texts(
                f'[row-id="{run_id}"] {column}')] == [pytest.approx(value, abs=1e-3)],
                f"{METRIC} = {value} not shown for run {run_id}")
        _screenshot(browser, tmp_path, "mlflow-experiment.png")

        # 2. The compare view of the two runs: both runs, and the metric with both values
        ids = urllib.parse.quote(json.dumps([base.info.run_id, cand.info.run_id]))
        exps = urllib.parse.quote(json.dumps([experiment.experiment_id]))
        browser.get(f"{url}/#/compare-runs?runs={ids}&experiments={exps}")
        wait.until(lambda d: "Comparing 2 Runs from 1 Experiment" in d.find_element(By.TAG_NAME, "body").text,
                   "the compare view did not open")
        for run in runs:
            wait.until(lambda d, run=run: run.info.run_id in d.find_element(By.TAG_NAME, "body").text
                       and run.info.run_name in d.find_element(By.TAG_NAME, "body").text,
                       f"the compare view does not show run {run.info.run_name!r}")
        # its columns follow the run ids in the URL: baseline, then candidate
        wait.until(lambda d: [_number(v) for v in d.execute_script(_COMPARE_ROW_JS, METRIC) or []]
                   == [pytest.approx(expected[base.info.run_id], abs=1e-3),
                       pytest.approx(expected[cand.info.run_id], abs=1e-3)],
                   f"the compare view does not show {METRIC} for both runs")
        assert browser.execute_script(_COMPARE_ROW_JS, METRIC_SAME) == ["1", "1"]
        # "show diff only" keeps what differs between the runs and hides what does not
        for section in ("Parameters", "Metrics"):
            browser.find_element(By.CSS_SELECTOR, f'button[aria-label="{section} - Show diff only"]').click()
        wait.until(lambda d: d.execute_script(_COMPARE_ROW_JS, METRIC_SAME) is None,
                   f"'show diff only' did not hide {METRIC_SAME}")
        assert browser.execute_script(_COMPARE_ROW_JS, METRIC) is not None
        assert "config.label" in browser.find_element(By.TAG_NAME, "body").text
        details = browser.find_element(By.XPATH, "//*[normalize-space(text())='Run details']")
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", details)
        shot = _screenshot(browser, tmp_path, "mlflow-compare.png")
        assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    except BaseException:
        print(f"mlflow server log:\n{mlflow_server.tail()}")
        try:  # what the browser showed, for the failure report; never masks the failure
            (tmp_path / "failure.html").write_text(browser.page_source)
            _screenshot(browser, tmp_path, "failure.png")
            print(f"failure screenshot and page: {tmp_path}")
        except (WebDriverException, OSError) as exc:
            print(f"could not save the page: {exc!r}")
        raise
