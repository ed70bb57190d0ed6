"""The red team's judge of an attack (the `attack` check: harness.scorers.safety.attack_check)
measured against people's labels of the embedded model's real answers to the attacks
(datasets/labelled/redteam_embedded.jsonl; labelling rules: datasets/labelled/README.md).

Nothing was trained on these labels: the outcome classifier learnt on the project's own
sources (harness/scorers/data/answer_outcome_train.jsonl) before these answers existed. Two sets:
`first` (399 answers, 28 seeds), whose errors were read before the echo rule
(harness.scorers.safety.ECHO_SHARE, fixed by the labelling rules' wording, not fitted) was
written; `fresh` (168 answers to 12 other seeds, the `-fresh` sources), collected and labelled
after, so the rule never saw them: the honest figure.
Precision, recall and F1 per outcome (compliance is a successful attack), overall, per seed
source (the project's curated requests, HarmBench's) and per strategy family.

    python bench/redteam_accuracy.py [--json OUT]
    python bench/redteam_accuracy.py --extract sqlite:////tmp/rt/big.db --out /tmp/unlabelled.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from common import ROOT

from harness.scorers.outcome import COMPLIANCE, LABELS, NONSENSE, REFUSAL
from harness.scorers.safety import attack_outcome

LABELLED = ROOT / "datasets/labelled/redteam_embedded.jsonl"


def extract(tracking_uri: str, out: str, experiment: str) -> None:
    """The answers of the latest red-team run in a store, without any score: for labelling."""
    import mlflow

    from harness.datasets import load
    from harness.suites.redteam import RedTeamSuite

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                              filter_string="tags.`harness.suite` = 'redteam'", order_by=["attributes.start_time DESC"])
    table = json.loads(open(client.download_artifacts(runs[0].info.run_id, "eval_results.json")).read())
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    seeds = {c.id: c for c in load(ROOT / "datasets/safety/harmful.jsonl").cases}
    cases = {c.id: c for c in RedTeamSuite().load(ROOT / "datasets/safety/harmful.jsonl").cases}
    with open(out, "w") as fh:
        for row in rows:
            if row["error"]:
                continue
            seed_id = row["case_id"].split("~")[0]
            case = cases.get(row["case_id"])
            strategy = row["case_id"].split("~")[1].rsplit("-", 1)[0]
            fh.write(json.dumps({
                "id": row["case_id"], "source": "redteam-" + ("harmbench" if "harmbench" in seed_id else "curated"),
                "strategy": strategy, "prompt": seeds[seed_id].prompt,
                "attack": [dict(m) for m in case.messages] if case else row["input"],
                "encoding": case.checks[0].get("encoding") if case else None,
                "response": row["response"]}) + "\n")


def prf(pairs: list[tuple[str, str]], label: str) -> dict:
    tp = sum(1 for gold, got in pairs if gold == label and got == label)
    predicted = sum(1 for _, got in pairs if got == label)
    actual = sum(1 for gold, _ in pairs if gold == label)
    p = tp / predicted if predicted else float("nan")
    r = tp / actual if actual else float("nan")
    f1 = 2 * p * r / (p + r) if predicted and actual and p + r else float("nan")
    return {"precision": p, "recall": r, "f1": f1, "support": actual}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extract", metavar="TRACKING_URI", help="write a store's latest red-team answers, unlabelled")
    parser.add_argument("--experiment", default="harness-evals")
    parser.add_argument("--out", help="with --extract: where")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--no-echo", action="store_true", help="without the echo rule (the scorer before it)")
    args = parser.parse_args()
    if args.no_echo:
        import harness.scorers.safety as safety

        safety.ECHO_SHARE = float("inf")
    if args.extract:
        extract(args.extract, args.out, args.experiment)
        return
    rows = [json.loads(line) for line in LABELLED.read_text().splitlines() if line.strip()]
    from harness.suites.redteam import STRATEGIES, strategy_steps

    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        check = {"type": "attack", "request": row["prompt"]}
        if row.get("encoding"):
            check["encoding"] = row["encoding"]
        attack = row["attack"] if isinstance(row["attack"], list) else [{"role": "user", "content": row["attack"]}]
        got = attack_outcome(row["response"], check, attack)[0].label
        family = "direct" if row["strategy"] == "direct" else "+".join(
            dict.fromkeys(STRATEGIES[n].family for n in strategy_steps(row["strategy"])))
        split = "fresh" if row["source"].endswith("-fresh") else "first"
        for key in ("all", f"set: {split}", f"source: {row['source']}", f"family: {family}"):
            groups[key].append((row["label"], got))
    figures = {}
    print(f"{'answers':34s} {'n':>4s}  " + "  ".join(f"{label:>22s}" for label in LABELS))
    print(f"{'':34s} {'':>4s}  " + "  ".join(f"{'P     R     F1   (n)':>22s}" for _ in LABELS))
    for key in sorted(groups, key=lambda k: (k != "all", k)):
        pairs = groups[key]
        figures[key] = {label: prf(pairs, label) for label in LABELS}
        cells = []
        for label in LABELS:
            f = figures[key][label]
            cells.append(f"{f['precision']:.2f}  {f['recall']:.2f}  {f['f1']:.2f} ({f['support']:3d})")
        print(f"{key:34s} {len(pairs):4d}  " + "  ".join(f"{c:>22s}" for c in cells))
    print(f"\n{'answers':34s} {'ASR by the labels':>20s} {'ASR by the scorer':>20s}   (compliance / (compliance + refusal))")
    for key in sorted(groups, key=lambda k: (k != "all", k)):
        if not key.startswith(("all", "set:")):
            continue
        asr = []
        for which in (0, 1):
            c = sum(1 for pair in groups[key] if pair[which] == COMPLIANCE)
            r = sum(1 for pair in groups[key] if pair[which] == REFUSAL)
            asr.append(f"{c}/{c + r} = {c / (c + r):.2f}" if c + r else "n/a")
        print(f"{key:34s} {asr[0]:>20s} {asr[1]:>20s}")
    agree = sum(gold == got for gold, got in groups["all"]) / len(groups["all"])
    print(f"\naccuracy {agree:.3f} over {len(groups['all'])} labelled answers; compliance = a successful attack "
          f"({COMPLIANCE}), {REFUSAL} = resisted, {NONSENSE} counted apart")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1)


if __name__ == "__main__":
    main()
