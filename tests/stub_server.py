"""A tiny OpenAI-compatible chat-completions server on 127.0.0.1 for the harness's own tests.

Answers are scripted by a function of the request's messages; it can also add latency and
inject faults (HTTP errors with or without Retry-After, malformed JSON, empty choices, dropped
connections). It is a test double for the harness, never something users evaluate.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping, Sequence

from harness.core import Request


@dataclass
class Fault:
    """What to do instead of answering: an HTTP status (with optional Retry-After), a body that
    is not JSON ("malformed"), no choices ("empty"), or closing the connection ("drop")."""

    status: int | None = None
    retry_after: float | None = None
    kind: str | None = None  # "malformed" | "empty" | "drop" | "truncated"


Answer = str | Fault
Script = Callable[[Sequence[Mapping[str, str]]], Answer]


def flaky(fault: Fault, times: int, then: Script) -> Script:
    """Each distinct prompt first gets `fault` `times` times, then the answer of `then`."""
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def script(messages):
        prompt = messages[-1]["content"]
        with lock:
            seen[prompt] = seen.get(prompt, 0) + 1
            count = seen[prompt]
        return fault if count <= times else then(messages)

    return script


def answer_table(table: Mapping[str, str], default: str = "I don't know.") -> Script:
    """Answer by substring of the last user message."""

    def script(messages):
        prompt = messages[-1]["content"]
        for needle, answer in table.items():
            if needle in prompt:
                return answer
        return default

    return script



def ask_once(target: Any, messages: Sequence[Mapping[str, str]]) -> Any:
    """One request straight to a harness target (no engine, no retries), closing its client."""

    async def ask():
        try:
            return await target.acomplete(Request(tuple(messages)))
        finally:
            await target.aclose()

    return asyncio.run(ask())


class StubServer:
    def __init__(self, script: Script, latency_s: float = 0.0):
        self.script = script
        self.latency_s = latency_s
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with stub._lock:
                    stub.requests.append(body)
                    stub.headers.append({k.lower(): v for k, v in self.headers.items()})
                    stub.paths.append(self.path)
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    if stub.latency_s:
                        time.sleep(stub.latency_s)
                    answer = stub.script(body.get("messages", []))
                finally:
                    with stub._lock:
                        stub.in_flight -= 1
                if isinstance(answer, Fault):
                    return self._fault(answer)
                self._send(200, {
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "stub-model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": len(answer.split()),
                              "total_tokens": 10 + len(answer.split())},
                })

            def _fault(self, fault: Fault):
                if fault.kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault.kind == "truncated":  # promise a body, send half of it, hang up
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", "400")
                    self.end_headers()
                    self.wfile.write(b'{"id": "x", "object": "chat.completion", "choi')
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault.kind == "malformed":
                    return self._send_raw(200, b"{not json", "application/json")
                if fault.kind == "empty":
                    return self._send(200, {"id": "x", "object": "chat.completion", "created": 0,
                                            "model": "stub-model", "choices": []})
                extra = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else {}
                self._send(fault.status or 500, {"error": {"message": f"stub fault {fault.status}"}}, extra)

            def _send(self, status, payload, extra_headers=None):
                self._send_raw(status, json.dumps(payload).encode(), "application/json", extra_headers)

            def _send_raw(self, status, data, content_type, extra_headers=None):
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                for k, v in (extra_headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "StubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
