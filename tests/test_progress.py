"""A run that shows it is alive: a live bar on a terminal, a line every N seconds in a CI log."""

from __future__ import annotations

import io

from mini_project import GOOD_ANSWERS
from harness.core import Case
from harness.progress import SuiteProgress
from harness.core import Response
from stub_server import answer_table

CASE = Case(id="c", messages=({"role": "user", "content": "hi"},))


def test_lines_say_answered_errors_rate_and_time_left():
    lines = []
    progress = SuiteProgress("suite 'x'", 4, write_line=lines.append, interval=0)
    progress.update(CASE, 0, Response(text="ok", latency_s=0.1))
    progress.update(CASE, 0, Response(text="", latency_s=0.1, error="HTTP 503"))
    assert lines[-1].startswith("suite 'x': 2/4 answered, 1 errors, ")
    assert "/min" in lines[-1] and "left" in lines[-1]


def test_no_line_before_the_interval():
    lines = []
    progress = SuiteProgress("s", 3, write_line=lines.append, interval=3600)
    progress.update(CASE, 0, Response(text="ok", latency_s=0.1))
    assert lines == []


def test_a_terminal_gets_a_bar():
    terminal = io.StringIO()
    progress = SuiteProgress("suite 'x'", 2, live=terminal, write_line=lambda line: None, redraw_s=0)
    progress.update(CASE, 0, Response(text="ok", latency_s=0.1))
    progress.update(CASE, 0, Response(text="", latency_s=0.1, error="boom"))
    progress.close()
    drawn = terminal.getvalue()
    assert "suite 'x'" in drawn and "2/2" in drawn and "1 errors" in drawn


def test_a_ci_log_gets_progress_lines_while_a_suite_is_queried(stub, eval_project, monkeypatch):
    server = stub(answer_table(GOOD_ANSWERS), latency_s=0.05)
    monkeypatch.setenv("HARNESS_PROGRESS_INTERVAL", "0")
    result = eval_project(server.base_url)  # a subprocess: its output is a pipe, not a terminal
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*suite 'mini': 5/5 answered, 0 errors, *"])
