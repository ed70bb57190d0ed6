"""The embedded server's failures are harness errors, never the model's: a server that dies with
SIGILL at its first completion (a native llama.cpp build on a VM that refuses AMX), or later in
the run, stops the run with exit 3 and one message saying what happened and how to fix it.
A stand-in server (tests/dying_server.py) dies on cue; no real model is needed."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from harness.targets import llama_build
from harness.targets.local_server import LocalModelError, LocalModelServer, describe_exit

DYING_SERVER = Path(__file__).parent / "dying_server.py"


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    path = tmp_path / "stand-in.gguf"
    path.write_bytes(b"GGUF")
    return path


def test_sigill_at_the_first_completion_is_explained_with_the_fix(fake_model, monkeypatch):
    monkeypatch.setenv("HARNESS_TEST_DIE_AFTER", "0")
    server = LocalModelServer(fake_model, binary=DYING_SERVER, startup_timeout=30)
    with pytest.raises(LocalModelError) as caught:
        server.start()
    message = str(caught.value)
    assert "illegal instruction (SIGILL)" in message
    assert "python -m harness build-llama --force" in message
    assert "tileloadd" in message  # the server's own last words, from its log
    assert server._process is None  # nothing left running


def test_a_server_that_answers_health_is_not_up_until_it_completes(fake_model, monkeypatch):
    monkeypatch.setenv("HARNESS_TEST_DIE_AFTER", "1")  # the probe is its one completion
    with LocalModelServer(fake_model, binary=DYING_SERVER, startup_timeout=30) as server:
        assert server.failure() is None
        import urllib.request

        request = urllib.request.Request(f"{server.base_url}/chat/completions", data=b"{}",
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(OSError):
            urllib.request.urlopen(request, timeout=10)
        server._process.wait(timeout=10)
        assert "illegal instruction" in server.failure()


def test_exit_statuses_are_described():
    assert "SIGILL" in describe_exit(-signal.SIGILL)
    assert "out-of-memory" in describe_exit(-signal.SIGKILL)
    assert describe_exit(2) == "exited with status 2"


LOCAL_RUN = ("--harness-target", "local")


@pytest.mark.parametrize("die_after, when", [(0, "at start"), (3, "during the suite")])
def test_a_dead_server_stops_the_run_with_exit_3_and_no_model_failure(
        eval_project, fake_model, monkeypatch, die_after, when):
    monkeypatch.setenv("HARNESS_LOCAL_SERVER", str(DYING_SERVER))
    monkeypatch.setenv("HARNESS_LOCAL_MODEL", str(fake_model))
    monkeypatch.setenv("HARNESS_LOCAL_SLOTS", "1")
    monkeypatch.setenv("HARNESS_TEST_DIE_AFTER", str(die_after))
    result = eval_project("http://127.0.0.1:9/v1", *LOCAL_RUN)
    out = result.stdout.str()
    assert result.ret == 3, out
    assert "harness error: the embedded model server died: illegal instruction (SIGILL)" in out
    assert "build-llama --force" in out
    # the model is never blamed: no case scored, no verdict, no gate failure
    outcomes = result.parseoutcomes()
    assert not {"failed", "xfailed", "passed"} & set(outcomes), outcomes
    assert "gate FAILED" not in out and "harness: promotion gates" not in out


PINNED_REPORT = ("system_info: n_threads = 2 (n_threads_batch = 2) / 2 | CPU : SSE3 = 1 | SSSE3 = 1 | "
                 "AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | REPACK = 1 |")


def fake_server(path: Path, report: str) -> Path:
    """An executable that reports `report` the way llama-server does at verbosity 4, then fails
    to load its model."""
    path.write_text(f"#!/bin/sh\necho '0.00.002 I cmn  common_param: {report}' >&2\n"
                    "echo 'failed to load model' >&2\nexit 1\n")
    path.chmod(0o755)
    return path


def test_install_refuses_a_native_build_and_start_refuses_a_replaced_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_LLAMA_HOME", str(tmp_path / "home"))
    with pytest.raises(llama_build.BuildError, match="not built yet"):
        llama_build.installed_server()
    native = fake_server(tmp_path / "native", PINNED_REPORT.replace("BMI2 = 1 |", "BMI2 = 1 | AVX512 = 1 | AMX_INT8 = 1 |"))
    with pytest.raises(llama_build.BuildError, match="has AVX512, AMX_INT8"):
        llama_build.install(native)
    binary = llama_build.install(fake_server(tmp_path / "portable", PINNED_REPORT))
    assert llama_build.installed_server() == binary
    assert "AVX2 = 1" in json.loads((binary.parent / "build.json").read_text())["system_info"]
    binary.write_text(native.read_text())  # a native build copied over the pinned one
    with pytest.raises(llama_build.BuildError, match="not the pinned build"):
        llama_build.installed_server()


def test_reported_cpu_features_are_checked():
    pinned = PINNED_REPORT
    assert llama_build.check_features(pinned) is None
    native = pinned.replace("BMI2 = 1 |", "BMI2 = 1 | AVX512 = 1 | AMX_INT8 = 1 |")
    assert "has AVX512, AMX_INT8" in llama_build.check_features(native)
    assert "missing AVX2" in llama_build.check_features(pinned.replace("AVX2 = 1", "AVX2 = 0"))
    assert "did not report" in llama_build.check_features("no report")
