"""The Markdown report of a session: each suite's verdict with its criteria (value, 95% interval,
threshold), the failed cases, the MLflow run ids, and the promotion outcome. Any CI can publish
it; the GitHub workflow in .github/workflows/ appends it to the job summary."""

from __future__ import annotations

from typing import Any, Sequence


def _value(result) -> str:
    if result.value is None:
        return "n/a"
    text = f"{result.value:.4g}"
    if result.ci is not None and result.ci[0] == result.ci[0]:
        text += f" [{result.ci[0]:.3g}, {result.ci[1]:.3g}]"
    return text


def _cell(text: str, limit: int = 90) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown_report(runs: Sequence[Any], *, promotion: tuple[bool, str] | None = None,
                    experiment: str = "", max_failed: int = 15, pooled: Any = None) -> str:
    """`runs`: the plugin's SuiteRuns (name, table, verdict, run_id, subset_of); `pooled`: the
    screens' verdict over all suites' answers (harness.gates.evaluate_pooled), if any."""
    passed = all(r.verdict.passed for r in runs) and bool(runs) and (pooled is None or pooled.passed)
    out = [f"## Promotion gates: {'PASSED' if passed else 'FAILED'}", ""]
    out += ["| suite | cases | verdict | MLflow run |", "|---|---|---|---|"]
    for r in runs:
        subset = f" (subset of {r.subset_of})" if r.subset_of else ""
        out.append(f"| `{r.name}` | {len(r.table)}{subset} | {'✅ passed' if r.verdict.passed else '❌ failed'} "
                   f"| `{r.run_id or 'not recorded'}` |")
    if experiment:
        out += ["", f"Experiment `{experiment}`."]
    if promotion is not None:
        out += ["", f"**{'Promoted' if promotion[0] else 'Not promoted'}**: {_cell(promotion[1], 300)}"]
    if pooled is not None:
        out += ["", "### Screens over every suite's answers", ""] + _criteria_rows(pooled)
    for r in runs:
        out += ["", f"### `{r.name}`", ""] + _criteria_rows(r.verdict)
        critical = r.verdict.critical_failures
        out.append(f"| critical cases failed | {len(critical)} | == 0 | | {'pass' if not critical else '**FAIL**'} |")
        for problem in r.verdict.problems:
            out.append(f"\n> cannot decide: {problem}")
        failed = [row for row in r.table.rows if not row.passed]
        if failed:
            out += ["", f"<details><summary>{len(failed)} failed case(s)</summary>", "",
                    "| case | why | answer |", "|---|---|---|"]
            for row in failed[:max_failed]:
                answer = row.response.text if row.response.ok else "<no answer>"
                mark = "**critical** " if row.case.critical else ""
                out.append(f"| {mark}`{row.case.id}` | {_cell('; '.join(row.failures()))} | {_cell(answer, 70)} |")
            if len(failed) > max_failed:
                out.append(f"| … | {len(failed) - max_failed} more in the MLflow table | |")
            out += ["", "</details>"]
    return "\n".join(out) + "\n"


def _criteria_rows(verdict: Any) -> list[str]:
    """A verdict's criteria as table rows: value with its interval, threshold, the smallest
    regression the criterion sees (MDR), result."""
    rows = ["| criterion | value [95% CI] | threshold | MDR | result |", "|---|---|---|---|---|"]
    for c in verdict.results:
        note = f" ({_cell(c.note, 120)})" if c.note else ""
        mdr = "" if c.mdr is None else f"{100 * c.mdr:.1f} pts"
        rows.append(f"| `{c.criterion.label()}` | {_value(c)} | {c.criterion.bound_text()} | {mdr} "
                    f"| {'pass' if c.passed else '**FAIL**'}{note} |")
    return rows


XFAIL_NOTE = ("note: pytest reports failed non-critical cases as 'xfailed'. They were run and scored, and failed; "
              "each counts in its suite's criteria below, which decide the gate. A failed critical case fails "
              "the gate by itself.")


def terminal_summary(runs: Sequence[Any], *, pooled: Any = None, promotion: tuple[bool, str] | None = None,
                     experiment: str = "") -> list[tuple[str, str | None]]:
    """The session's summary for a terminal, as (line, colour) pairs (colour: "red", "green",
    "yellow" or None): each suite's failed cases and verdict, the screens over all suites'
    answers, the promotion outcome."""
    out: list[tuple[str, str | None]] = []
    if any(not row.passed and not row.case.critical for run in runs for row in run.table.rows):
        # pytest counts them as "xfailed", which reads like skipped tests: say what they are
        out.append((XFAIL_NOTE, None))
    for run in runs:
        failed = [row for row in run.table.rows if not row.passed]
        if failed:
            out.append((f"suite '{run.name}': {len(failed)} of {len(run.table)} cases failed", None))
            for row in failed:
                answer = " ".join((row.response.text if row.response.ok else "<no answer>").split())
                answer = answer if len(answer) <= 70 else answer[:69] + "…"
                mark = "CRITICAL " if row.case.critical else ""
                out.append((f"  {mark}{row.case.id}: {'; '.join(row.failures())} | answer: {answer!r}", None))
        out.append((run.verdict.report(), "green" if run.verdict.passed else "red"))
        if run.sampled_from is not None:
            out.append((f"  note: the suite's call budget sampled {run.subset_of or len(run.dataset)} of its "
                        f"{run.sampled_from} cases; --harness-full runs them all", None))
        if run.subset_of is not None:
            out.append((f"  note: a subset ran ({len(run.dataset)} of {run.subset_of} cases): "
                        "criteria are calibrated for the full dataset", "yellow"))
        if run.run_id:
            out.append((f"  MLflow run {run.run_id} in experiment '{experiment}'", None))
        if run.traces is not None:
            out.append((f"  traces: {run.traces.line()}", "red" if run.traces.lost else None))
        if run.tracking_error:
            out.append((f"  NOT RECORDED IN MLFLOW: {run.tracking_error}", "red"))
            out.append((f"  results kept in {run.local_record}", "red"))
    if pooled is not None:
        out.append(("screens over the answers of every suite together (harness.scorers.screen):", None))
        out.append((pooled.report(), "green" if pooled.passed else "red"))
    if promotion is not None:
        out.append((promotion[1], "green" if promotion[0] else "red"))
    return out
