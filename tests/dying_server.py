#!/usr/bin/env python3
"""A stand-in for llama-server that dies the way a natively built llama.cpp does on a VM that
advertises AMX but refuses it: /health and /v1/models answer, then a chat completion kills the
process with SIGILL. It takes llama-server's command line (only --port, --alias and --log-file
matter). HARNESS_TEST_DIE_AFTER = completions answered before it dies (default 0: the first
one kills it). A test double for the harness's own tests, never something users evaluate."""

from __future__ import annotations

import argparse
import json
import os
import signal
from http.server import BaseHTTPRequestHandler, HTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--alias", default="stand-in")
    parser.add_argument("--log-file")
    args, _ = parser.parse_known_args()
    die_after = int(os.environ.get("HARNESS_TEST_DIE_AFTER", "0"))
    answered = 0

    def log(line: str) -> None:
        if args.log_file:
            with open(args.log_file, "a") as fh:
                fh.write(line + "\n")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

        def _json(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._json({"status": "ok"})
            else:
                self._json({"object": "list", "data": [{"id": args.alias, "object": "model"}]})

        def do_POST(self) -> None:
            nonlocal answered
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if answered >= die_after:
                log("ggml_compute_forward_mul_mat: tileloadd (stand-in: dying with SIGILL)")
                os.kill(os.getpid(), signal.SIGILL)
            answered += 1
            self._json({"id": "x", "object": "chat.completion", "created": 0, "model": args.alias,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "OK"}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})

    log(f"stand-in llama-server on port {args.port}")
    HTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
