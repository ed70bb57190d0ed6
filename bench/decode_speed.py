"""Decoding and prompt speed of a llama-server build, from the server's own `timings`.

Starts BINARY (default: the pinned build) on the embedded model with the harness's server flags
plus any extra ones given, asks two 200-token completions, and prints each one's timings.

    python bench/decode_speed.py                              # the pinned build
    python bench/decode_speed.py /tmp/native/bin/llama-server # another build, same flags
    python bench/decode_speed.py --extra "-fa off"            # another setting
"""

from __future__ import annotations

import argparse
import json
import subprocess
import urllib.request

from common import free_port, wait_until_up  # (also puts the project on sys.path)

from harness.targets import llama_build
from harness.targets.local_server import LocalModelServer

PROMPTS = ["Write a long story about a dragon who learns to code.",
           "Explain in detail how photosynthesis works, step by step, for a student."]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("binary", nargs="?")
    parser.add_argument("--extra", default="", help="more server flags, space-separated")
    args = parser.parse_args()
    binary = args.binary or str(llama_build.installed_server())
    server = LocalModelServer()
    server.port = free_port()
    server._log_path = "/dev/null"
    command = server.command(binary) + args.extra.split()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{server.port}"
    try:
        wait_until_up(f"{url}/health", tries=300, pause_s=0.2)

        def ask(content: str, n: int) -> dict:
            body = json.dumps({"messages": [{"role": "user", "content": content}], "max_tokens": n,
                               "temperature": 0}).encode()
            request = urllib.request.Request(f"{url}/v1/chat/completions", data=body,
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=300) as response:
                return json.load(response)["timings"]

        ask("hi", 4)  # warm-up
        for prompt in PROMPTS:
            timings = ask(prompt, 200)
            print(json.dumps({"binary": binary, "extra": args.extra,
                              "decode_tokens_per_s": round(timings["predicted_per_second"], 1),
                              "prompt_tokens_per_s": round(timings["prompt_per_second"], 1)}))
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
