"""The README's "a check of your own" and "a target of your own" examples, as printed there,
run together in an eval project: the check scores the cases, the target is asked over HTTP,
and the gate fails on the answers that miss."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

GREETINGS = [{"id": "hi", "input": "Say hello, loudly.", "checks": [{"type": "shouts", "word": "hello"}]},
             {"id": "bye", "input": "Say goodbye, loudly.", "checks": [{"type": "shouts", "word": "goodbye"}]}]
CRITERIA = '[[greetings]]\nmetric = "case_pass"\naggregate = "rate"\nop = ">="\nthreshold = 1.0\n'


def _readme_block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


class _RestModel:
    """The plain JSON endpoint the README's target speaks to: {"prompt", "max_tokens"} -> {"text"}."""

    def __init__(self):
        self.bodies: list[dict] = []
        model = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                model.bodies.append(body)
                reply = json.dumps({"text": "HELLO, everyone!"}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/generate"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_the_readmes_own_check_and_target_run_a_suite(make_eval_project, pytester):
    run = make_eval_project("greetings", GREETINGS, CRITERIA)
    pytester.makepyfile(test_greetings_suite=_readme_block('@harness.check("shouts"'),
                        conftest=_readme_block('@harness.target("my-rest")'))
    model = _RestModel()
    try:
        result = run("http://127.0.0.1:9/v1", "--harness-target", "my-rest", "--harness-base-url", model.url)
    finally:
        model.server.shutdown()
    out = result.stdout.str()
    assert result.ret == 1, out[-3000:]  # one of the two answers misses: the gate fails
    assert "shouts: 'GOODBYE' not shouted" in out
    assert "(my-rest / stub-model, concurrency" in out
    assert [b["prompt"] for b in sorted(model.bodies, key=lambda b: b["prompt"])] == [
        "Say goodbye, loudly.", "Say hello, loudly."]
    assert {b["max_tokens"] for b in model.bodies} == {256}  # the configured default reached it
