"""A fast OpenAI-compatible stub for benchmarks, run in its own process so its CPU does not
count against the harness: `python bench/fast_stub.py PORT LATENCY_S`. aiohttp (installed with
mlflow) serves thousands of concurrent keep-alive requests from one event loop."""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web


def app(latency_s: float) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        if latency_s:
            await asyncio.sleep(latency_s)
        answer = "Paris"
        return web.Response(content_type="application/json", text=json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 0,
            "model": body.get("model", "bench"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
        }))

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "bench", "object": "model"}]})

    application = web.Application()
    application.router.add_post("/v1/chat/completions", chat)
    application.router.add_get("/v1/models", models)
    return application


if __name__ == "__main__":
    web.run_app(app(float(sys.argv[2])), host="127.0.0.1", port=int(sys.argv[1]),
                print=None, access_log=None, backlog=1024)
