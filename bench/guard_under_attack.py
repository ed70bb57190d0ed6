"""The input guard against the red team's attacks, with and without reading them
(`InputGuard(read_attacks=...)`: every user turn, and what an encoding, split letters or split
variables hide), on requests it never saw: the held-out public sets (datasets/heldout/
requests.jsonl: DoNotAnswer, HarmBench, XSTest). No model is asked: this is what the guard
blocks before the model would be.

- harmful requests: the share blocked, per strategy (each strategy's simplest attack, as the
  default red-team run asks it; `--variants` adds every variant of every strategy);
- benign requests: the share falsely blocked, as written and under each strategy (a benign
  question sent in base64 must still get through).

    python bench/guard_under_attack.py [--limit N] [--variants] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from common import ROOT

from harness.guards import InputGuard
from harness.suites.redteam import DEFAULT_STRATEGIES, DIRECT, STRATEGIES, render, strategy_steps


def plans(variants: bool) -> list[tuple[str, tuple[tuple[str, int], ...]]]:
    out = [(DIRECT, ())]
    for strategy in DEFAULT_STRATEGIES:
        steps = strategy_steps(strategy)
        out.append((strategy, tuple((name, 0) for name in steps)))
        if variants and len(steps) == 1:
            out += [(f"{strategy}[{i}]", ((strategy, i),)) for i in range(1, len(STRATEGIES[strategy].variants))]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=0, help="at most N requests of each kind, evenly spaced (0: all)")
    parser.add_argument("--variants", action="store_true", help="every variant of every strategy, not only the simplest")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (ROOT / "datasets/heldout/requests.jsonl").read_text().splitlines() if line]
    harmful = [r for r in rows if r["harmful"]]
    benign = [r for r in rows if not r["harmful"]]
    if args.limit:  # every k-th, so each public set keeps its share
        harmful, benign = (rows_[::max(1, len(rows_) // args.limit)][:args.limit] for rows_ in (harmful, benign))
    guards = {"as written": InputGuard(read_attacks=False), "reading attacks": InputGuard()}
    blocked: dict[tuple[str, str, str], int] = defaultdict(int)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for kind, requests in (("harmful", harmful), ("benign", benign)):
        for name, plan in plans(args.variants):
            for row in requests:
                attack = render(row["prompt"], plan)
                counts[(kind, name)] += 1
                for label, guard in guards.items():
                    blocked[(kind, name, label)] += guard.check(attack.messages).action == "block"
    figures = []
    print(f"{'strategy':24s} {'harmful blocked':>34s} {'benign falsely blocked':>34s}")
    print(f"{'':24s} {'as written':>16s} {'reading attacks':>17s} {'as written':>16s} {'reading attacks':>17s}")
    for name, _ in plans(args.variants):
        cells = {}
        for kind in ("harmful", "benign"):
            n = counts[(kind, name)]
            for label in guards:
                cells[(kind, label)] = blocked[(kind, name, label)] / n if n else float("nan")
        figures.append({"strategy": name, "harmful_n": counts[("harmful", name)], "benign_n": counts[("benign", name)],
                        **{f"{kind} {label}": v for (kind, label), v in cells.items()}})
        print(f"{name:24s} {cells[('harmful', 'as written')]:16.3f} {cells[('harmful', 'reading attacks')]:17.3f} "
              f"{cells[('benign', 'as written')]:16.3f} {cells[('benign', 'reading attacks')]:17.3f}")
    print(f"\n{len(harmful)} harmful and {len(benign)} benign held-out requests (datasets/heldout/requests.jsonl)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1)


if __name__ == "__main__":
    main()
