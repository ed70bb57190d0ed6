"""Drift between two runs: a shifted output distribution, refusal rate and vocabulary are
flagged, a rerun of the same behaviour is not; the command logs the check to MLflow and exits
1 on drift (a scheduled alert)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.drift import drift, psi


def _cases(answers: list[str], refused: list[bool], inputs: list[str] | None = None) -> pd.DataFrame:
    n = len(answers)
    return pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "input": inputs or [f"question number {i}" for i in range(n)],
                         "response": answers, "passed": [not r for r in refused], "refused": [float(r) for r in refused],
                         "rouge_l": [0.4 + 0.001 * i for i in range(n)]})


CALM = [f"The answer to item {i} is explained here in a short and friendly way." for i in range(120)]


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    ref = [float(i % 50) for i in range(500)]
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-9)
    assert psi(ref, [v + 40 for v in ref]) > 1.0


def test_same_behaviour_is_not_drift():
    ref = _cases(CALM, [i % 10 == 0 for i in range(120)])
    cur = _cases(list(reversed(CALM)), [i % 10 == 1 for i in range(120)])
    report = drift(ref, cur)
    assert report.drifted == [], report.text()


def test_shifted_outputs_refusals_and_vocabulary_are_drift():
    ref = _cases(CALM, [i % 10 == 0 for i in range(120)])
    refusing = ["I'm sorry, but I cannot help with that request under any circumstances whatsoever." * 3
                if i % 2 else CALM[i] for i in range(120)]
    cur = _cases(refusing, [bool(i % 2) or i % 10 == 0 for i in range(120)])
    names = {s.name for s in drift(ref, cur).drifted}
    assert {"output_length", "refusal_rate", "output_text", "pass_rate"} <= names
    assert "input_length" not in names and "input_text" not in names


def test_drift_command_logs_to_mlflow_and_exits_1_on_drift(stub, eval_project, monkeypatch):
    import subprocess
    import sys

    import mlflow
    from stub_server import answer_table

    from mini_project import BAD_ANSWERS, GOOD_ANSWERS

    monkeypatch.setenv("HARNESS_TRACES", "false")
    eval_project(stub(answer_table(GOOD_ANSWERS)).base_url)
    eval_project(stub(answer_table(GOOD_ANSWERS)).base_url)
    eval_project(stub(answer_table(BAD_ANSWERS)).base_url)
    client = mlflow.MlflowClient(eval_project.tracking_uri)
    runs = [r.info.run_id for r in client.search_runs([client.get_experiment_by_name("mini-evals").experiment_id],
                                                      order_by=["attributes.start_time ASC"])]

    def run(a, b):
        return subprocess.run([sys.executable, "-m", "harness", "drift", a, b, "--tracking-uri",
                               eval_project.tracking_uri, "--alpha", "0.5"], capture_output=True, text=True)

    same = run(runs[0], runs[1])
    assert same.returncode == 0, same.stdout + same.stderr
    changed = run(runs[0], runs[2])  # 5 cases only: a loose alpha, the effect sizes decide
    assert changed.returncode == 1 and "pass_rate" in changed.stdout and "DRIFT" in changed.stdout
    drift_runs = client.search_runs([client.get_experiment_by_name("harness-drift").experiment_id])
    assert len(drift_runs) == 2 and all(r.data.tags["harness.kind"] == "drift" for r in drift_runs)
    flagged = [r for r in drift_runs if r.data.metrics["drift/signals_drifted"] > 0]
    assert len(flagged) == 1 and flagged[0].data.params["current_run_id"] == runs[2]
    assert not math.isnan(flagged[0].data.metrics["drift/pass_rate/effect"])


# --- the current side as a window of traces logged by a deployed model ------------------------------

COUNTRIES = {"France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Peru": "Lima", "Norway": "Oslo",
             "Egypt": "Cairo", "Canada": "Ottawa", "Chile": "Santiago", "Ghana": "Accra", "Italy": "Rome",
             "Spain": "Madrid", "Cuba": "Havana", "Iran": "Tehran", "Nepal": "Kathmandu", "Mali": "Bamako",
             "Poland": "Warsaw", "Sweden": "Stockholm", "Greece": "Athens", "India": "New Delhi",
             "Mexico": "Mexico City", "Austria": "Vienna", "Hungary": "Budapest", "Portugal": "Lisbon",
             "Ireland": "Dublin"}
CAPITAL_CASES = [{"id": country.lower(), "input": f"What is the capital of {country}?", "expected": capital,
                  "checks": [{"type": "contains", "value": capital}]} for country, capital in COUNTRIES.items()]
CAPITAL_ANSWERS = {f"capital of {country}": f"The capital of {country} is {capital}."
                   for country, capital in COUNTRIES.items()}
REFUSAL = "I'm sorry, but I can't help with that request."
VERBOSE = {needle: answer + " " + " ".join(["It is a large city with a long history and many museums."] * 6)
           for needle, answer in CAPITAL_ANSWERS.items()}

# Deployed apps in their own process: mlflow.openai.autolog() around the real openai client, one
# experiment per deployment (EXPERIMENT=BASE_URL arguments, then the questions), each going three
# times through every question (72 traces) with two failed calls and three spans of a shape
# nobody can read as a call.
DEPLOYED_APP = """
import sys
import mlflow, openai

tracking_uri, rest = sys.argv[1], sys.argv[2:]
deployments = [arg.split("=", 1) for arg in rest[:rest.index("--")]]
questions = rest[rest.index("--") + 1:]
mlflow.set_tracking_uri(tracking_uri)
mlflow.openai.autolog(silent=True)
for experiment, base_url in deployments:
    mlflow.set_experiment(experiment)
    client = openai.OpenAI(base_url=base_url, api_key="sk-stub", max_retries=0)
    for _ in range(3):
        for question in questions:
            client.chat.completions.create(model="prod-model", messages=[
                {"role": "system", "content": "You are a geography assistant."},
                {"role": "user", "content": question}])
    for _ in range(2):
        try:
            client.chat.completions.create(model="prod-model", messages=[{"role": "user", "content": "FAIL please"}])
        except openai.APIStatusError:
            pass
    for i in range(3):
        with mlflow.start_span("embed_documents") as span:
            span.set_inputs({"documents": [[0.1, 0.2], [0.3, i]]})
            span.set_outputs({"vectors": [[1.0, 2.0]]})
    mlflow.flush_trace_async_logging()
"""


def _span(name, inputs, outputs, parent=None, span_type="UNKNOWN", start=0, end=2_000_000):
    from harness.tracking import SpanRecord

    return SpanRecord(name, span_type, parent, start, end, inputs, outputs)


def _completion(text):
    return {"id": "c", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def test_parse_time_takes_durations_and_iso_times_naive_as_utc():
    from harness.drift import parse_time

    now = 1_800_000_000_000
    assert parse_time("24h", now) == now - 24 * 3600 * 1000
    assert parse_time("90m", now) == now - 90 * 60 * 1000
    assert parse_time("now", now) == now
    assert parse_time("2026-11-20T00:00", now) == parse_time("2026-11-20T01:00+01:00", now) == 1_795_132_800_000
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday", now)


def test_a_call_is_read_from_autolog_app_and_nested_trace_shapes():
    from harness.drift import call_of

    autolog = [_span("Completions", {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                                                 {"role": "user", "content": "Hi there?"}]},
                     _completion("Hello!"), span_type="CHAT_MODEL")]
    assert call_of(autolog) == ("Hi there?", "Hello!", 0.002)
    parts = [_span("Completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": "Look"}]}]},
                   _completion("A cat."), span_type="CHAT_MODEL")]
    assert call_of(parts)[:2] == ("Look", "A cat.")
    app = [_span("answer", {"question": "Where?"}, "Over there.")]  # @mlflow.trace def answer(question)
    assert call_of(app)[:2] == ("Where?", "Over there.")
    # the app's own root span is unreadable: the chat-model call inside it is read instead
    nested = [_span("pipeline", {"docs": [1, 2]}, {"ids": [3]}),
              _span("Completions", {"messages": [{"role": "user", "content": "Q?"}]}, _completion("A."),
                    parent="root", span_type="CHAT_MODEL", start=1)]
    assert call_of(nested)[:2] == ("Q?", "A.")
    tool_call = [_span("Completions", {"messages": [{"role": "user", "content": "Weather?"}]},
                       {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [{}]}}]},
                       span_type="CHAT_MODEL")]
    assert call_of(tool_call) is None  # not an empty answer (that would count as a refusal)
    assert call_of([_span("embed", {"documents": [[0.1]]}, {"vectors": [[1.0]]})]) is None


def _trace(i: int, question: str, answer: str, assessments: dict | None = None):
    from harness.tracking import TraceRecord

    return TraceRecord(f"tr-{i}", i, "OK", (_span("Completions", {"messages": [{"role": "user", "content": question}]},
                                                  _completion(answer), span_type="CHAT_MODEL"),), assessments or {})


def _window(traces):
    from harness.drift import window_cases
    from harness.tracking import TraceBatch

    return window_cases(TraceBatch("prod", "1", 0, 86_400_000, list(traces), False))


def test_a_window_too_small_to_test_fails_closed_and_says_what_it_holds():
    from harness.drift import MIN_WINDOW_TRACES, InsufficientWindow, drift_window
    from harness.tracking import TraceRecord

    ref = _cases(CALM, [False] * 120)
    unreadable = [TraceRecord("tr-x", 1, "OK", (_span("embed", {"documents": []}, {"vectors": []}),), {}),
                  TraceRecord("tr-e", 2, "ERROR", (_span("Completions", {"messages": []}, None),), {})]
    calls = [_trace(i, f"question number {i}", CALM[i]) for i in range(MIN_WINDOW_TRACES - 1)]
    with pytest.raises(InsufficientWindow, match=f"{MIN_WINDOW_TRACES - 1} read as calls") as raised:
        drift_window(ref, _window(calls + unreadable))
    assert "1 failed calls" in str(raised.value) and "'embed': 1" in str(raised.value)
    with pytest.raises(InsufficientWindow, match="no traces"):
        drift_window(ref, _window([]))


def test_window_signals_skip_scores_the_traces_lack_and_compare_those_they_carry():
    from harness.drift import drift_window

    ref = _cases(CALM, [False] * 120)
    report = drift_window(ref, _window(_trace(i, f"question number {i}", CALM[i]) for i in range(60)))
    assert report.drifted == [], report.text()
    assert {"input_length", "output_length", "refusal_rate", "input_text", "output_text"} <= {
        s.name for s in report.signals}
    assert "not compared (the traces carry no such values): pass_rate, score/rouge_l" in report.text()
    # feedback logged on the traces under a score's name (a production scorer) is compared
    scored = _window(_trace(i, f"question number {i}", CALM[i], {"rouge_l": 0.05}) for i in range(60))
    assert [s.name for s in drift_window(ref, scored).drifted] == ["score/rouge_l"]


def test_drift_against_a_deployed_models_traces(stub, make_eval_project, monkeypatch, tmp_path, capsys):
    """The reference is a real eval run (the harness tracing its own calls); the current side is
    a fake deployed app logging through mlflow.openai.autolog in its own process."""
    import subprocess
    import sys

    import mlflow
    from stub_server import Fault, answer_table

    from harness.__main__ import main
    from harness.drift import EXIT_INSUFFICIENT_WINDOW, window_cases
    from harness.tracking import load_traces

    def answers(table):
        lookup = answer_table(table)
        return lambda messages: Fault(status=500) if "FAIL" in messages[-1]["content"] else lookup(messages)

    project = make_eval_project("mini", CAPITAL_CASES, "[[mini]]\nmetric = \"case_pass\"\naggregate = \"rate\"\n"
                                                       "op = \">=\"\nthreshold = 0.8\n")
    monkeypatch.setenv("HARNESS_TRACES", "true")
    project(stub(answer_table(CAPITAL_ANSWERS)).base_url).assert_outcomes(passed=len(CAPITAL_CASES) + 1)
    uri = project.tracking_uri
    client = mlflow.MlflowClient(uri)
    [reference] = [r.info.run_id for r in client.search_runs([client.get_experiment_by_name("mini-evals").experiment_id])]

    # the harness's own traces read back as the calls it made
    batch = load_traces("mini-evals", uri, since_ms=0, until_ms=2**62, max_traces=1000)
    harness_window = window_cases(batch)
    assert harness_window.usable == len(CAPITAL_CASES) and not harness_window.unknown_shapes
    assert (sorted(zip(harness_window.cases["input"], harness_window.cases["response"]))
            == sorted((c["input"], CAPITAL_ANSWERS[f"capital of {k}"]) for c, k in zip(CAPITAL_CASES, COUNTRIES)))

    app = tmp_path / "deployed_app.py"
    app.write_text(DEPLOYED_APP)
    questions = [c["input"] for c in CAPITAL_CASES]
    deployments = [f"{experiment}={stub(answers(table)).base_url}" for experiment, table in [
        ("prod-same", CAPITAL_ANSWERS), ("prod-refusing", {"capital": REFUSAL}), ("prod-verbose", VERBOSE)]]
    done = subprocess.run([sys.executable, str(app), uri, *deployments, "--", *questions],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]

    def drift_cli(*args):
        code = main(["drift", reference, "--tracking-uri", uri, *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = drift_cli("--traces-experiment", "prod-same", "--since", "1h")
    assert code == 0, out
    assert "72 read as calls, 2 failed calls, 0 unfinished, 3 of unknown shape ('embed_documents': 3)" in out
    assert "latency_s" in out and "not compared (the traces carry no such values): pass_rate" in out

    code, out, _ = drift_cli("--traces-experiment", "prod-refusing")
    drifted = {line.split()[0] for line in out.splitlines() if line.rstrip().endswith("DRIFT")}
    assert code == 1 and {"refusal_rate", "output_length", "output_text"} <= drifted, out
    assert not drifted & {"input_length", "input_text"}, out

    code, out, _ = drift_cli("--traces-experiment", "prod-verbose", "--since", "2h", "--max-traces", "500")
    drifted = {line.split()[0] for line in out.splitlines() if line.rstrip().endswith("DRIFT")}
    assert code == 1 and {"output_length", "output_text"} <= drifted and "refusal_rate" not in drifted, out

    # fail closed: a window with nothing in it, and the harness's own 24 calls capped at 10
    code, _, err = drift_cli("--traces-experiment", "prod-same", "--since", "2020-01-01", "--until", "2020-01-02")
    assert code == EXIT_INSUFFICIENT_WINDOW and "no traces" in err and "fails closed" in err
    code, _, err = drift_cli("--traces-experiment", "mini-evals", "--max-traces", "10")
    assert code == EXIT_INSUFFICIENT_WINDOW and "10 read as calls" in err and "newest only" in err
    code, _, err = drift_cli("--traces-experiment", "no-such-experiment")
    assert code == 2 and "no experiment 'no-such-experiment'" in err

    checks = client.search_runs([client.get_experiment_by_name("harness-drift").experiment_id],
                                order_by=["attributes.start_time ASC"])
    assert [r.data.tags["harness.drift.status"] for r in checks] == ["checked"] * 3 + ["insufficient_window"] * 2
    assert all(r.data.tags["harness.drift.current"] == "traces" and r.data.params["reference_run_id"] == reference
               and "current_run_id" not in r.data.params for r in checks)
    same, refusing = checks[0].data, checks[1].data
    assert same.params["current_traces.experiment"] == "prod-same" and same.metrics["drift/signals_drifted"] == 0
    assert same.metrics["traces/usable"] == 72 and same.metrics["traces/unknown_shape"] == 3
    assert refusing.metrics["drift/refusal_rate/drifted"] == 1 and refusing.params["suite"] == "mini"
    assert checks[3].data.params["current_traces.since"] == "2020-01-01T00:00:00Z"
    assert checks[3].data.metrics["traces/found"] == 0
