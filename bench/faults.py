"""The default suites (`pytest evals`) against an endpoint that fails: healthy, flaky (a share of
requests fail with 429 / 503, with and without Retry-After, and the endpoint recovers) and dead
(nothing listens). Each run gets its own journal, results folder and MLflow store; the stub
answers every request alike, so the flaky run must end with the healthy run's verdicts and no
error, and the dead run must end quickly with every suite failed closed.

    python bench/faults.py [--fault-rate 0.3] [--only healthy,flaky,dead]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, free_port, wait_until_up

from aiohttp import web


def stub_app(fault_rate: float, seed: int = 0) -> web.Application:
    rng = random.Random(seed)

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        roll = rng.random()
        if roll < fault_rate:
            status = 429 if roll < fault_rate / 2 else 503
            headers = {"Retry-After": "1"} if roll < fault_rate / 4 else {}
            return web.json_response({"error": {"message": "bench fault"}}, status=status, headers=headers)
        return web.json_response({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": body.get("model", "bench"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "I'm sorry, I can't help with that."}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 9, "total_tokens": 19}})

    application = web.Application()
    application.router.add_post("/v1/chat/completions", chat)
    application.router.add_get("/v1/models", lambda r: web.json_response({"object": "list", "data": []}))
    return application


def serve(fault_rate: float, port: int) -> None:
    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        web.run_app(stub_app(fault_rate), host="127.0.0.1", port=port, print=None, access_log=None,
                    handle_signals=False)

    threading.Thread(target=run, daemon=True).start()
    wait_until_up(f"http://127.0.0.1:{port}/v1/models")


def run_evals(base_url: str, work: Path) -> dict:
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-bench", "HARNESS_MODEL": "bench",
           "HARNESS_JOURNAL": str(work / "journal"), "HARNESS_RESULTS": str(work / "results"),
           "HARNESS_SCORE_CACHE": str(work / "cache"), "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
           "HARNESS_TRACES": "false"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "evals", "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    verdicts, errors = {}, 0
    for path in sorted((work / "results").glob("*.json")):
        record = json.loads(path.read_text())
        # latency differs when answers needed retries: its pass/fail is compared, not its value
        verdicts[record["suite"]] = [(c["metric"], c["aggregate"], c["passed"],
                                      None if c["metric"] == "latency_s" else c["value"])
                                     for c in record["verdict"]["criteria"] if c["metric"] != "error"]
        errors += sum(1 for c in record["cases"] if c.get("error"))
    return {"exit": done.returncode, "elapsed_s": round(elapsed, 1), "errors": errors, "verdicts": verdicts}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--only", default="healthy,flaky,dead")
    args = parser.parse_args()
    wanted = args.only.split(",")
    out = {}
    for name in ("healthy", "flaky", "dead"):
        if name not in wanted:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            if name == "dead":
                base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
            else:
                port = free_port()
                serve(args.fault_rate if name == "flaky" else 0.0, port)
                base_url = f"http://127.0.0.1:{port}/v1"
            out[name] = run_evals(base_url, Path(tmp))
        print(json.dumps({"run": name, **{k: v for k, v in out[name].items() if k != "verdicts"},
                          "suites_passed": sum(all(p for _, _, p, _ in v) for v in out[name]["verdicts"].values()),
                          "suites": len(out[name]["verdicts"])}))
    if "healthy" in out and "flaky" in out:
        same = out["healthy"]["verdicts"] == out["flaky"]["verdicts"]
        print(json.dumps({"flaky_verdicts_identical_to_healthy": same, "flaky_errors": out["flaky"]["errors"]}))


if __name__ == "__main__":
    main()
