"""Harness overhead per case (scoring + MLflow logging), side by side with mlflow.genai.evaluate.

    python bench/overhead.py [--cases N] [--repeats R] [--genai-cases M] [--genai-repeats K] [--profile]

What is measured
- Harness side: ResultTable.build(cases, responses, score_case) + gates.evaluate(...) ("scoring")
  and tracking.log_suite_run(...) into a SQLite store ("logging"), timed with time.perf_counter,
  median over --repeats runs of N cases. Logging includes the per-case traces with their
  assessments, as the default path writes them (--trace-limit, default the harness's own
  default; 0 leaves traces out, which is what this figure measured before traces were the
  harness's own).
- mlflow.genai.evaluate side: the same rows (prompt, answer, expected) and equivalent scorers
  (@scorer functions wrapping the harness's own token_f1, rouge_l and per-case checks), into its
  own SQLite store, with MLFLOW_GENAI_EVAL_MAX_WORKERS=4, median over --genai-repeats runs of M
  rows (M is smaller because it is slow); both sides are reported per case so they compare.

The answers are built in memory (Response objects whose text is the case's `expected`, latency
0): no HTTP at all. That is equivalent to a zero-latency stub endpoint, and it keeps the HTTP
client out of a figure that is about scoring + logging only.

One-time costs (importing mlflow, creating the SQLite schema, the first rouge-score import) are
excluded: each side does one warm-up run into its store before the timed runs.

Goal (from the issue): <= 2 ms per case, and >= 30x less than mlflow.genai.evaluate.
"""

from __future__ import annotations

import os

# Before mlflow is imported anywhere: no telemetry, no model-catalogue fetch, 4 eval workers
# (the default of 10 stalls on SQLite's single writer).
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["MLFLOW_MODEL_CATALOG_URI"] = ""
os.environ["MLFLOW_GENAI_EVAL_MAX_WORKERS"] = "4"
# The harness records the git commit (`git rev-parse`, `git status`): make sure that `git status`
# never takes the index lock or rewrites the index of a checkout others are working in.
os.environ["GIT_OPTIONAL_LOCKS"] = "0"

import argparse
import contextlib
import cProfile
import dataclasses
import io
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import gates, tracking  # noqa: E402
from harness.config import HarnessConfig  # noqa: E402
from harness.datasets import Case, Dataset, load  # noqa: E402
from harness.gates import Criterion  # noqa: E402
from harness.results import ResultTable  # noqa: E402
from harness import scorers  # noqa: E402
from harness.scorers import quality  # noqa: E402
from harness.targets.base import Response  # noqa: E402

DATASET = ROOT / "datasets" / "quality" / "cases.jsonl"
SUITE = "overhead"
GOAL_MS_PER_CASE = 2.0
DEFAULT_TRACE_LIMIT = HarnessConfig().trace_limit  # the default path's
TRACE_LIMIT = DEFAULT_TRACE_LIMIT
GOAL_RATIO = 30.0
CRITERIA = [
    Criterion("case_pass", "rate", ">=", 0.36, "share of cases whose every check passed"),
    Criterion("rouge_l", "mean", ">=", 0.18, "answers overlap their references"),
    Criterion("latency_s", "p95", "<=", 5.0, "interactive use"),
]


def say(message: str) -> None:
    print(f"[overhead] {message}", file=sys.stderr, flush=True)


# --- inputs -----------------------------------------------------------------------------------

def build_inputs(base: Dataset, n: int) -> tuple[Dataset, list[Case], list[Response]]:
    """N cases cycling through the dataset (unique ids), each answered with its own reference."""
    cases = [dataclasses.replace(base.cases[i % len(base.cases)],
                                 id=f"{base.cases[i % len(base.cases)].id}-{i}") for i in range(n)]
    responses = [Response(text=c.expected or "", latency_s=0.0, finish_reason="stop",
                          model="zero-latency-stub") for c in cases]
    # the load()ed dataset object, with the cycled cases
    dataset = Dataset(base.name, base.path, tuple(cases), base.digest)
    return dataset, cases, responses


# --- harness side -----------------------------------------------------------------------------

def harness_once(dataset: Dataset, cases: list[Case], responses: list[Response], uri: str,
                 experiment: str) -> tuple[float, float, str, Any, ResultTable]:
    """(scoring seconds, logging seconds, run id, verdict, table) of one harness pass."""
    t0 = time.perf_counter()
    scorers.prime(cases, responses)  # as run_suite does: the batched classifiers first
    table = ResultTable.build(cases, responses, scorers.score_case)
    verdict = gates.evaluate(SUITE, table, CRITERIA)
    t1 = time.perf_counter()
    run_id = tracking.log_suite_run(
        suite=SUITE, table=table, verdict=verdict, dataset=dataset,
        target_info={"kind": "in-process", "model": "zero-latency-stub"},
        settings={"bench": "overhead", "cases": len(cases)},
        tracking_uri=uri, experiment=experiment, root=ROOT, trace_limit=TRACE_LIMIT, full_traces=True).run_id
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, run_id, verdict, table


def harness_side(base: Dataset, n: int, repeats: int, workdir: Path, profile: bool) -> dict:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    experiment = "bench-overhead-harness"

    say(f"harness: warm-up run ({len(base)} cases) into {uri} (mlflow import, schema creation, "
        "rouge-score import are paid here and not timed)")
    t = time.perf_counter()
    wd, wc, wr = build_inputs(base, len(base))
    harness_once(wd, wc, wr, uri, experiment)
    warmup_s = time.perf_counter() - t

    dataset, cases, responses = build_inputs(base, n)
    scoring, logging_, runs = [], [], []
    for r in range(repeats):
        s, l, run_id, verdict, table = harness_once(dataset, cases, responses, uri, experiment)
        scoring.append(s)
        logging_.append(l)
        runs.append(run_id)
        say(f"harness: repeat {r + 1}/{repeats}: {n} cases, scoring {s * 1e3:.0f} ms, "
            f"logging {l * 1e3:.0f} ms")

    # check that the run really is in the store, with its metrics, params and artifacts
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    run = client.get_run(runs[-1])
    artifacts = sorted(a.path for a in client.list_artifacts(runs[-1]))

    result = {
        "n": n, "repeats": repeats, "uri": uri, "warmup_s": warmup_s,
        "scoring_ms": statistics.median(scoring) * 1e3 / n,
        "logging_ms": statistics.median(logging_) * 1e3 / n,
        "total_ms": statistics.median(s + l for s, l in zip(scoring, logging_)) * 1e3 / n,
        "total_runs_ms": [(s + l) * 1e3 / n for s, l in zip(scoring, logging_)],
        "passed_cases": sum(row.passed for row in table.rows),
        "verdict": "passed" if verdict.passed else "failed",
        "logged_metrics": len(run.data.metrics), "logged_params": len(run.data.params),
        "logged_inputs": len(run.inputs.dataset_inputs) if run.inputs else 0,
        "artifacts": artifacts,
        "means": {k: table.aggregate(k, "mean") for k in ("token_f1", "rouge_l")},
    }

    if profile:
        say("harness: profiling one more run with cProfile")
        profiler = cProfile.Profile()
        profiler.enable()
        harness_once(dataset, cases, responses, uri, experiment)
        profiler.disable()
        result["profile"] = profiler
    return result


# --- mlflow.genai.evaluate side ---------------------------------------------------------------

def make_scorers(base: Dataset):
    from mlflow.genai.scorers import scorer

    by_prompt = {c.prompt: c for c in base.cases}  # the 72 prompts are unique
    assert len(by_prompt) == len(base.cases), "dataset prompts are not unique"

    @scorer(name="token_f1")
    def token_f1(outputs, expectations):
        return quality.token_f1(outputs, expectations["expected_response"])

    @scorer(name="rouge_l")
    def rouge_l(outputs, expectations):
        return quality.rouge_l(outputs, expectations["expected_response"])

    @scorer(name="checks")
    def checks(inputs, outputs):
        case = by_prompt[inputs["question"]]
        return all(scorers.CHECKS[c["type"]](outputs, c, case.expected).passed is not False
                   for c in case.checks)

    return [token_f1, rouge_l, checks]


def genai_rows(cases: list[Case], responses: list[Response]) -> list[dict]:
    return [{"inputs": {"question": c.prompt}, "outputs": r.text,
             "expectations": {"expected_response": c.expected}} for c, r in zip(cases, responses)]


def count_traces(client, experiment_id: str, run_id: str) -> tuple[int, int]:
    """(traces linked to the run, feedback assessments on them)."""
    import mlflow

    traces = mlflow.search_traces(locations=[experiment_id], run_id=run_id, include_spans=False,
                                  return_type="list")
    ids = {t.info.trace_id for t in traces}
    feedback = sum(1 for t in traces for a in (t.info.assessments or []) if a.feedback is not None)
    return len(ids), feedback


def genai_once(rows: list[dict], scorers, experiment_id: str) -> tuple[float, Any]:
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id)
    captured = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(captured), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = mlflow.genai.evaluate(data=rows, scorers=scorers)
    return time.perf_counter() - t0, result


def genai_side(base: Dataset, n: int, repeats: int, workdir: Path) -> dict:
    import mlflow
    import mlflow.genai

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    say(f"genai.evaluate: warm-up run (8 rows) into {uri} (schema creation not timed)")
    t = time.perf_counter()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    # artifacts next to the database, never in the current directory
    experiment_id = client.create_experiment(
        "bench-overhead-genai", artifact_location=(workdir / "mlruns").as_uri())
    scorers = make_scorers(base)
    _, wcases, wresp = build_inputs(base, 8)
    genai_once(genai_rows(wcases, wresp), scorers, experiment_id)
    warmup_s = time.perf_counter() - t

    _, cases, responses = build_inputs(base, n)
    rows = genai_rows(cases, responses)
    times, checks = [], []
    for r in range(repeats):
        elapsed, result = genai_once(rows, scorers, experiment_id)
        traces, feedback = count_traces(client, experiment_id, result.run_id)
        df_rows = 0 if result.result_df is None else len(result.result_df)
        times.append(elapsed)
        checks.append({"run_id": result.run_id, "metrics": dict(result.metrics), "traces": traces,
                       "feedback": feedback, "result_rows": df_rows})
        say(f"genai.evaluate: repeat {r + 1}/{repeats}: {n} rows in {elapsed:.1f} s, "
            f"{traces} traces, {feedback} feedback assessments, result_df {df_rows} rows")
    return {"n": n, "repeats": repeats, "uri": uri, "warmup_s": warmup_s,
            "ms_per_row": statistics.median(times) * 1e3 / n,
            "runs_ms": [t * 1e3 / n for t in times], "checks": checks,
            "workers": os.environ["MLFLOW_GENAI_EVAL_MAX_WORKERS"]}


# --- report -----------------------------------------------------------------------------------

def print_profile(profiler: cProfile.Profile) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"(harness|mlflow)/", 15)
    text = out.getvalue()
    # keep the table, drop pstats' preamble of file names
    start = text.find("   ncalls")
    print(text[start:] if start >= 0 else text)

    # a coarse attribution of one run's wall time to its parts
    by_func = {}
    for (filename, _, funcname), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = (Path(filename).name, funcname)
        by_func[key] = max(by_func.get(key, 0.0), cumulative)
    parts = [
        ("scoring: score_case (all)", ("quality.py", "score_case")),
        ("  rouge_l (rouge-score)", ("quality.py", "rouge_l")),
        ("  token_f1", ("quality.py", "token_f1")),
        ("gates.evaluate", ("gates.py", "evaluate")),
        ("logging: log_suite_run (all)", ("runs.py", "log_suite_run")),
        ("  git_commit (2 git subprocesses)", ("client.py", "git_commit")),
        ("  _experiment_id + create_run", None),
        ("  client.log_batch (metrics/params/tags)", None),
        ("  _table_frame (pandas)", ("runs.py", "_table_frame")),
        ("  mlflow.log_table", ("fluent.py", "log_table")),
        ("  mlflow.start_run + end_run", None),
        ("  mlflow.log_dict", ("fluent.py", "log_dict")),
        ("  _dataset_frame (pandas)", ("runs.py", "_dataset_frame")),
        ("  mlflow.data.from_pandas", ("pandas_dataset.py", "from_pandas")),
        ("  mlflow.log_input", ("fluent.py", "log_input")),
        ("  table.summary()", ("results.py", "summary")),
    ]
    total = by_func.get(("overhead.py", "harness_once"), 0.0)
    print(f"one profiled harness run: {total * 1e3:.0f} ms (profiler overhead included)")
    for label, key in parts:
        if key is None:
            if "start_run" in label:
                value = by_func.get(("fluent.py", "start_run"), 0.0) + by_func.get(("fluent.py", "end_run"), 0.0)
            elif "create_run" in label:
                value = by_func.get(("client.py", "_experiment_id"), 0.0) + by_func.get(("client.py", "create_run"), 0.0)
            else:
                value = by_func.get(("client.py", "log_batch"), 0.0)
        else:
            value = by_func.get(key, 0.0)
        share = f"{100 * value / total:5.1f}%" if total else "  n/a"
        print(f"  {label:<42} {value * 1e3:8.1f} ms  {share}")


def report(h: dict, g: dict | None, profile: bool, load: tuple[tuple, tuple]) -> None:
    print()
    print("Harness overhead per case: scoring + MLflow logging, no HTTP")
    print(f"  {os.cpu_count()} CPUs; 1-min load average {load[0][0]:.2f} before, {load[1][0]:.2f} after"
          " (other processes on the machine skew the figures; rerun when quiet)")
    print("  answers are in-memory Response objects (text = the case's `expected`, latency 0):")
    print("  equivalent to a zero-latency stub endpoint; the HTTP client is not measured.")
    print("  one warm-up run per side first (mlflow import, SQLite schema creation, first")
    print(f"  rouge-score import excluded); harness warm-up took {h['warmup_s']:.1f} s"
          + (f", genai.evaluate warm-up {g['warmup_s']:.1f} s" if g else "") + ".")
    print()
    rows = [("side", "cases", "runs", "scoring ms/case", "logging ms/case", "total ms/case")]
    rows.append(("harness (build+gate+log_suite_run)", str(h["n"]), str(h["repeats"]),
                 f"{h['scoring_ms']:.3f}", f"{h['logging_ms']:.3f}", f"{h['total_ms']:.3f}"))
    if g:
        rows.append((f"mlflow.genai.evaluate ({g['workers']} workers)", str(g["n"]), str(g["repeats"]),
                     "-", "-", f"{g['ms_per_row']:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print("  " + "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print()
    print(f"  harness runs (ms/case): {', '.join(f'{x:.3f}' for x in h['total_runs_ms'])} (median taken)")
    if g:
        print(f"  genai.evaluate runs (ms/row): {', '.join(f'{x:.2f}' for x in g['runs_ms'])} (median taken)")
    print()
    ok_abs = h["total_ms"] <= GOAL_MS_PER_CASE
    print(f"  goal 1: harness <= {GOAL_MS_PER_CASE:g} ms/case: {h['total_ms']:.3f} ms -> "
          f"{'MET' if ok_abs else 'NOT MET'}")
    if g:
        ratio = g["ms_per_row"] / h["total_ms"]
        print(f"  goal 2: genai.evaluate / harness >= {GOAL_RATIO:g}x: {ratio:.1f}x (medians) -> "
              f"{'MET' if ratio >= GOAL_RATIO else 'NOT MET'}")
        worst = min(g["runs_ms"]) / max(h["total_runs_ms"])
        print(f"          conservative (fastest genai run / slowest harness run): {worst:.1f}x -> "
              f"{'MET' if worst >= GOAL_RATIO else 'NOT MET'}")
    dominant = "scoring" if h["scoring_ms"] >= h["logging_ms"] else "logging"
    share = max(h["scoring_ms"], h["logging_ms"]) / h["total_ms"] * 100
    print(f"  harness side dominated by {dominant} ({share:.0f}% of the total)")
    print()
    print("Sanity checks")
    print(f"  harness: {h['passed_cases']}/{h['n']} cases passed, gate {h['verdict']}; "
          f"last run in {h['uri']}: {h['logged_metrics']} metrics, {h['logged_params']} params, "
          f"{h['logged_inputs']} dataset input(s), artifacts {h['artifacts']}")
    print(f"  harness means: token_f1 {h['means']['token_f1']:.4f}, rouge_l {h['means']['rouge_l']:.4f}")
    if g:
        for i, c in enumerate(g["checks"], 1):
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(c["metrics"].items()))
            print(f"  genai.evaluate run {i}: metrics {{{metrics}}}")
            print(f"    traces linked to the run: {c['traces']} of {g['n']} rows"
                  f"{'' if c['traces'] == g['n'] else '  <-- TRACES MISSING'}; feedback assessments "
                  f"{c['feedback']} of {3 * g['n']} expected; result_df rows {c['result_rows']}")
    if profile and "profile" in h:
        print()
        print("cProfile of one harness run (top 15 cumulative under harness/ and mlflow/)")
        print_profile(h["profile"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="cases per harness run (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed harness runs, median taken (default 3)")
    parser.add_argument("--genai-cases", type=int, default=300,
                        help="rows per mlflow.genai.evaluate run (default 300: it is slow)")
    parser.add_argument("--genai-repeats", type=int, default=3,
                        help="timed mlflow.genai.evaluate runs, median taken (default 3)")
    parser.add_argument("--skip-genai", action="store_true", help="harness side only")
    parser.add_argument("--trace-limit", type=int, default=DEFAULT_TRACE_LIMIT,
                        help=f"cases traced per run (default {DEFAULT_TRACE_LIMIT}, the harness's default; 0: none)")
    parser.add_argument("--profile", action="store_true",
                        help="also run the harness side once under cProfile and print where time goes")
    args = parser.parse_args(argv)
    global TRACE_LIMIT
    TRACE_LIMIT = args.trace_limit
    if args.cases < 1 or args.repeats < 1 or args.genai_cases < 1 or args.genai_repeats < 1:
        parser.error("counts must be >= 1")

    base = load(DATASET)
    started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        tmp = Path(tmp)
        (tmp / "harness").mkdir()
        (tmp / "genai").mkdir()
        previous = Path.cwd()
        os.chdir(tmp)  # whatever MLflow writes relative to the cwd stays out of the checkout
        try:
            h = harness_side(base, args.cases, args.repeats, tmp / "harness", args.profile)
            g = None if args.skip_genai else genai_side(base, args.genai_cases, args.genai_repeats,
                                                       tmp / "genai")
        finally:
            os.chdir(previous)
    report(h, g, args.profile, (load_before, os.getloadavg()))
    say(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
