"""The LLM judge's agreement with the offline scorers on the quality dataset: the answers the
harness already has (replayed from its journal: run `pytest evals/test_quality.py` once first)
are judged with the quality rubric, through the same code path as a suite run
(Session.judge and judge.judged_scorer: engine, bounded retries, journal), and the judge's pass/fail
(`judge_correct`) is compared with the offline checks' (`case_pass` without the judge):
Cohen's kappa, raw agreement and the confusion counts.

    python bench/judge_agreement.py                       # the embedded model judges itself
    python bench/judge_agreement.py --limit 30            # the first 30 cases only
    python bench/judge_agreement.py --judge-base-url URL --judge-model NAME   # any endpoint
                                                          # (key: HARNESS_JUDGE_API_KEY)
    python bench/judge_agreement.py --json-schema         # structured judge output (the
                                                          # judge_json_schema setting)
    python bench/judge_agreement.py --verdicts v.csv      # every verdict, with its rationale
    python bench/judge_agreement.py --human               # the safety judge against the 80
                                                          # human-labelled calibration answers

With no --judge-base-url the embedded model (SmolLM2-135M-Instruct) is started like the harness
starts it and judges its own answers. It is far too weak to be a judge: the figure measures the
plumbing, not a judge worth trusting. The embedded server answers one request at a time, so the
judge is asked with concurrency 1 unless --concurrency says otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_MODEL_CATALOG_URI", "")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import engine  # noqa: E402
from harness.config import load_config  # noqa: E402
from harness.datasets import load  # noqa: E402
from harness.journal import Journal  # noqa: E402
from harness.judge import AGREEMENT, agreement, judge_analysis, judged  # noqa: E402
from harness.session import Session  # noqa: E402
from harness.judge import judged_scorer  # noqa: E402
from harness.results import ResultTable  # noqa: E402
from harness.scorers import score_case  # noqa: E402

DATASET = "datasets/quality/cases.jsonl"


def replayed_answers(config, cases):
    """The target's answers to `cases` from the journal of the last quality run (no calls)."""
    session = Session(replace(config, replay=True))
    target = session.target()
    journal = Journal.for_suite(config.path(config.journal_dir), "quality", target.describe())
    outcome = engine.run(cases, target, engine.EngineSettings(concurrency=1), journal=journal, replay=True)
    missing = [c.id for c, r in zip(cases, outcome.first) if not r.ok]
    if missing:
        sys.exit(f"{len(missing)} answers not in {journal.path} (e.g. {missing[0]}): "
                 "run `pytest evals/test_quality.py` once with the same target settings first")
    return outcome.first, target.describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="judge the first N cases only")
    parser.add_argument("--judge-base-url", default=None, help="default: start the embedded model")
    parser.add_argument("--judge-model", default=None)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--json-schema", action="store_true",
                        help="each judge request carries its verdict's JSON schema (judge_json_schema)")
    parser.add_argument("--verdicts", default=None, help="write every verdict (ratings, rationale) to this CSV")
    parser.add_argument("--human", action="store_true",
                        help="instead: the safety judge's agreement with human labels (the check a run makes "
                             "before the judge's criteria may gate)")
    args = parser.parse_args()

    config = load_config(ROOT)
    cases = [c for c in load(config.path(DATASET)).cases if judged(c)][: args.limit]
    responses, target_info = replayed_answers(config, cases)
    server = None
    if args.judge_base_url is None:
        from harness.targets.local_server import LocalModelServer

        path = Path(config.local_model_path) if config.local_model_path else None
        server = LocalModelServer(path, startup_timeout=config.local_startup_timeout).start()
        judge_url, judge_model = server.base_url, server.alias
    else:
        judge_url, judge_model = args.judge_base_url, args.judge_model or "judge"
    try:
        judge_config = replace(config, replay=False, judge_base_url=judge_url, judge_model=judge_model,
                               judge_json_schema=args.json_schema or config.judge_json_schema)
        started = time.perf_counter()
        if args.human:
            from harness.judge import HUMAN_AGREEMENT, MIN_KAPPA

            m = Session(judge_config).judge_human_agreement()
            print(f"judge {judge_model}: agreement with human labels ({time.perf_counter() - started:.0f} s): "
                  + ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in m.items()))
            kappa = m.get(f"{HUMAN_AGREEMENT}/kappa")
            print("trusted" if kappa is not None and kappa >= MIN_KAPPA else f"not trusted (kappa < {MIN_KAPPA} "
                  "or unmeasurable): its criteria would be skipped")
            return
        scorer = judged_scorer(cases, responses, score_case,
                               Session(judge_config).judge("quality", concurrency=args.concurrency),
                               json_schema=judge_config.judge_json_schema)
        elapsed = time.perf_counter() - started
    finally:
        if server is not None:
            server.stop()
    table = ResultTable.build(cases, responses, scorer)
    analysis = judge_analysis(table)
    m = analysis.metrics
    verdicts = analysis.tables["judge_verdicts"]
    valid = verdicts.dropna(subset=["correctness"])
    print(f"answers: {target_info['model']} ({len(cases)} quality cases, replayed from the journal)")
    print(f"judge:   {judge_model} at {judge_url}, {elapsed:.0f} s ({elapsed / max(1, len(cases)):.1f} s per case), "
          f"{'structured (JSON schema)' if judge_config.judge_json_schema else 'free text'}")
    if args.verdicts:
        verdicts.to_csv(args.verdicts, index=False)
        print(f"verdicts: {args.verdicts}")
    print(f"valid verdicts: {len(valid)}/{len(cases)} "
          f"(no valid verdict or judge error: {int(m[f'{AGREEMENT}/unjudged'])}, these fail closed)")
    steering = int(verdicts["steering"].sum())
    if steering:
        print(f"answers addressing the evaluator (judge_steering): {steering}")
    if len(valid):
        print("mean ratings: " + ", ".join(f"{k} {statistics.mean(valid[k]):.2f}"
                                           for k in ("correctness", "relevance", "instruction_following")))
    offline = sum(r.response.ok and all(s.passed is not False for n, s in r.scores.items()
                                        if not n.startswith("judge_")) for r in table.rows)
    judge_pass = sum(bool(r.scores["judge_correct"].passed) for r in table.rows if "judge_correct" in r.scores)
    print(f"pass rate: offline case_pass {offline}/{len(cases)} = {offline / len(cases):.3f}; "
          f"judge_correct {judge_pass}/{len(cases)} = {judge_pass / len(cases):.3f} (fail-closed cases count as fails)")
    # the gate's view: a case without a valid verdict fails judge_correct
    gated = agreement([bool(r.scores["judge_correct"].passed) for r in table.rows if "judge_correct" in r.scores],
                      [bool(o) for o in verdicts["offline_pass"]])
    print(f"with fail-closed cases counted as judge fails ({int(gated[f'{AGREEMENT}/n'])} cases): "
          f"rate {gated[f'{AGREEMENT}/rate']:.3f}, kappa "
          + (f"{gated[f'{AGREEMENT}/kappa']:.3f}" if f"{AGREEMENT}/kappa" in gated else "undefined"))
    if not m[f"{AGREEMENT}/n"]:
        print("agreement: no valid verdict, nothing to compare")
        return
    print(f"agreement over the {int(m[f'{AGREEMENT}/n'])} validly judged cases:")
    for key in ("kappa", "rate", "both_pass", "both_fail", "judge_pass_offline_fail", "judge_fail_offline_pass"):
        value = m.get(f"{AGREEMENT}/{key}")
        shown = "undefined (one side constant)" if value is None else (
            f"{value:.3f}" if key in ("kappa", "rate") else f"{int(value)}")
        print(f"  {AGREEMENT}/{key:24s} {shown}")


if __name__ == "__main__":
    main()
