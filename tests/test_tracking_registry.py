"""The MLflow registry in the LLMOps loop: a registered model (models:/name/version, @alias) is
the target, loaded as a pyfunc; a model-serving endpoint (/invocations) is another target; and
the promotion alias is set on a version only when every gate passed — tested against a real
SQLite registry."""

from __future__ import annotations

import json
import re
import uuid

import mlflow.pyfunc  # noqa: F401  imported before pytester snapshots sys.modules: its restore
import pytest        # would otherwise drop mlflow's modules between tests (two PythonModel classes)

from mini_project import BAD_ANSWERS, GOOD_ANSWERS, MINI_CASES, MINI_CRITERIA

MODEL_CODE = '''
import json
import mlflow
from mlflow.pyfunc import PythonModel

ANSWERS = json.loads({answers!r})


class TableChatModel(PythonModel):
    """A stand-in chat model: answers by substring of the last user message."""

    def predict(self, context, model_input, params=None):
        prompt = model_input["messages"][-1]["content"]
        for needle, answer in ANSWERS.items():
            if needle in prompt:
                return {{"choices": [{{"message": {{"role": "assistant", "content": answer}}}}]}}
        return "I don't know."


mlflow.models.set_model(TableChatModel())
'''


def _register(tmp_path, tracking_uri: str, answers: dict, name: str = "toy-chat") -> str:
    """Log a models-from-code pyfunc and register it; returns the new version."""
    import mlflow

    # a fresh file name each time: MLflow imports the code by module name to validate it
    code = tmp_path / f"model_{uuid.uuid4().hex}.py"
    code.write_text(MODEL_CODE.format(answers=json.dumps(answers)))
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_experiment("registered-models")  # this store's, whatever another test left active
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=str(code), pip_requirements=["mlflow"],
                                       registered_model_name=name)
    return str(info.registered_model_version)


@pytest.fixture
def registry_project(make_eval_project, monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_TRACES", "false")
    run = make_eval_project("mini", MINI_CASES, MINI_CRITERIA)
    good = _register(tmp_path, run.tracking_uri, GOOD_ANSWERS)
    bad = _register(tmp_path, run.tracking_uri, BAD_ANSWERS)
    return run, good, bad


def _client(uri):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_promotion_alias_set_only_when_every_gate_passes(registry_project, monkeypatch):
    run, good, bad = registry_project
    client = _client(run.tracking_uri)
    client.set_registered_model_alias("toy-chat", "candidate", good)

    # the candidate is evaluated through the alias and promoted
    monkeypatch.setenv("HARNESS_MODEL_URI", "models:/toy-chat@candidate")
    passed = run("unused", "--harness-promote-model", "models:/toy-chat@candidate")
    assert passed.ret == 0, passed.stdout.str()[-3000:]
    passed.stdout.fnmatch_lines([f"*promoted: toy-chat version {good} is now @champion*"])
    assert str(client.get_model_version_by_alias("toy-chat", "champion").version) == good
    tags = client.get_model_version("toy-chat", good).tags
    assert tags["harness.verdict"] == "passed" and re.fullmatch(r"mini=[0-9a-f]{32}", tags["harness.eval_run_ids"])
    # the eval run records which model it evaluated
    eval_run = client.get_run(tags["harness.eval_run_ids"].split("=")[1])
    assert eval_run.data.params["target"] == "mlflow-model"
    assert eval_run.data.params["model"] == "models:/toy-chat@candidate"

    # a worse version fails the gate: no alias moves, and the summary says so
    monkeypatch.setenv("HARNESS_MODEL_URI", f"models:/toy-chat/{bad}")
    failed = run("unused", "--harness-promote-model", f"models:/toy-chat/{bad}")
    assert failed.ret == 1
    failed.stdout.fnmatch_lines([f"*NOT promoted: toy-chat version {bad} keeps its aliases*failed its gate*"])
    assert str(client.get_model_version_by_alias("toy-chat", "champion").version) == good
    assert client.get_model_version("toy-chat", bad).tags["harness.verdict"] == "failed"


def test_subset_runs_never_promote(registry_project, monkeypatch):
    run, good, _ = registry_project
    monkeypatch.setenv("HARNESS_MODEL_URI", f"models:/toy-chat/{good}")
    result = run("unused", "--harness-promote-model", f"models:/toy-chat/{good}", "--harness-limit", "2")
    result.stdout.fnmatch_lines(["*NOT promoted*ran a subset (2 of 5 cases)*"])
    with pytest.raises(Exception):
        _client(run.tracking_uri).get_model_version_by_alias("toy-chat", "champion")


def test_unknown_model_version_is_a_clear_error(registry_project, monkeypatch):
    run, good, _ = registry_project
    monkeypatch.setenv("HARNESS_MODEL_URI", f"models:/toy-chat/{good}")
    result = run("unused", "--harness-promote-model", "models:/toy-chat/99")
    assert result.ret == 3  # the promotion asked for could not be done: a harness error
    result.stdout.fnmatch_lines(["*NOT promoted: registry at*cannot find models:/toy-chat/99*"])


def test_serving_endpoint_target_posts_a_chat_payload_to_invocations(stub, tmp_path):
    from stub_server import answer_table, ask_once

    from harness.config import load_config
    from harness.targets import build_target

    server = stub(answer_table({"hi": "hello from serving"}))
    config = load_config(tmp_path, env={"HARNESS_SERVING_URL": server.base_url.removesuffix("/v1"),
                                        "HARNESS_MAX_TOKENS": "20"})
    target = build_target(config)
    assert target.describe()["target"] == "mlflow-serving"

    response = ask_once(target, [{"role": "user", "content": "hi"}])
    assert response.text == "hello from serving"
    assert server.paths == ["/invocations"]
    assert server.requests[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert server.requests[0]["max_tokens"] == 20


@pytest.mark.parametrize("output, text", [
    ("plain", "plain"), (["one"], "one"), ({"predictions": ["p"]}, "p"),
    ({"choices": [{"message": {"content": "c"}}]}, "c"), ([{"content": "x"}], "x"),
])
def test_answer_text_reads_the_shapes_mlflow_models_return(output, text):
    from harness.targets.mlflow_model import answer_text

    assert answer_text(output) == text
