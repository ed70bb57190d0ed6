"""Configuration: precedence (pyproject < env < option), secrets, and the clients it builds."""

from __future__ import annotations


import openai
import pytest

from harness.config import ConfigError, load_config
from harness.targets import build_target
from stub_server import answer_table, ask_once


def write_pyproject(tmp_path, body: str):
    (tmp_path / "pyproject.toml").write_text("[tool.harness]\n" + body)
    return tmp_path


def test_defaults_without_pyproject(tmp_path):
    config = load_config(tmp_path, env={})
    assert config.resolved_target() == "local"
    assert config.temperature == 0.0
    assert config.effective_tracking_uri() == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"


@pytest.mark.parametrize("layers, expected", [
    ({}, 0.0),
    ({"file": "0.5"}, 0.5),
    ({"file": "0.5", "env": "0.7"}, 0.7),
    ({"file": "0.5", "env": "0.7", "option": "0.9"}, 0.9),
    ({"file": "0.5", "option": "0.9"}, 0.9),
    ({"env": "0.7"}, 0.7),
])
def test_precedence_pyproject_then_env_then_option(tmp_path, layers, expected):
    if "file" in layers:
        write_pyproject(tmp_path, f"temperature = {layers['file']}\n")
    env = {"HARNESS_TEMPERATURE": layers["env"]} if "env" in layers else {}
    options = {"temperature": layers.get("option")}
    assert load_config(tmp_path, env=env, options=options).temperature == expected


def test_every_setting_type_parses_from_env(tmp_path):
    config = load_config(tmp_path, env={
        "HARNESS_MAX_TOKENS": "64", "HARNESS_TAGS": "smoke, fast", "HARNESS_TRACES": "yes",
        "HARNESS_LIMIT": "3", "HARNESS_SYSTEM_PROMPT": "Be brief.", "HARNESS_REQUEST_TIMEOUT": "7.5",
    })
    assert (config.max_tokens, config.tags, config.traces, config.limit) == (64, ("smoke", "fast"), True, 3)
    assert config.system_prompt == "Be brief." and config.request_timeout == 7.5


def test_invalid_values_name_their_source(tmp_path):
    write_pyproject(tmp_path, "max_tokens = 'lots'\n")
    with pytest.raises(ConfigError, match=r"\[tool.harness\] max_tokens: invalid value 'lots'"):
        load_config(tmp_path, env={})
    with pytest.raises(ConfigError, match="HARNESS_CONCURRENCY"):
        load_config(tmp_path / "..", env={"HARNESS_CONCURRENCY": "x"})


def test_unknown_key_and_secret_in_pyproject_are_rejected(tmp_path):
    write_pyproject(tmp_path, "temprature = 0.1\n")
    with pytest.raises(ConfigError, match="unknown"):
        load_config(tmp_path, env={})
    write_pyproject(tmp_path, "api_key = 'sk-in-a-reviewed-file'\n")
    with pytest.raises(ConfigError, match="environment only"):
        load_config(tmp_path, env={})


def test_target_resolution(tmp_path):
    model = {"HARNESS_MODEL": "m"}  # the openai target cannot run without one (a usage error)
    assert load_config(tmp_path, env={"OPENAI_API_KEY": "k", **model}).resolved_target() == "openai"
    assert load_config(tmp_path, env={"OPENAI_BASE_URL": "http://x/v1", **model}).resolved_target() == "openai"
    azure = {"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com", "OPENAI_API_VERSION": "2024-06-01",
             "AZURE_OPENAI_DEPLOYMENT": "gpt4o", "AZURE_OPENAI_API_KEY": "k", "OPENAI_API_KEY": "o"}
    assert load_config(tmp_path, env=azure).resolved_target() == "azure"
    # an explicit choice wins over detection
    assert load_config(tmp_path, env={**azure, **model}, options={"target": "openai"}).resolved_target() == "openai"


def test_azure_without_deployment_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="AZURE_OPENAI_DEPLOYMENT"):
        load_config(tmp_path, env={"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com",
                                   "OPENAI_API_VERSION": "2024-06-01"})


def test_secrets_never_in_public_params(tmp_path):
    config = load_config(tmp_path, env={"OPENAI_API_KEY": "sk-secret-1", "AZURE_OPENAI_API_KEY": "az-secret-2",
                                        "HARNESS_MODEL": "m"})
    params = config.public_params()
    assert "api_key" not in params and "azure_api_key" not in params
    assert not any("secret" in str(v) for v in params.values())


def test_openai_target_needs_a_model_name(tmp_path):
    with pytest.raises(ConfigError, match="model name"):
        load_config(tmp_path, env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})


@pytest.mark.parametrize("env, message", [
    ({"OPENAI_BASE_URL": "localhost:8000/v1", "HARNESS_MODEL": "m"}, "not an http"),
    ({"OPENAI_BASE_URL": "http://host:port/v1", "HARNESS_MODEL": "m"}, "not a URL"),
    ({"HARNESS_SERVING_URL": "ftp://x"}, "HARNESS_SERVING_URL"),
    ({"HARNESS_JUDGE_MODEL": "j", "HARNESS_JUDGE_BASE_URL": "judge:8000"}, "HARNESS_JUDGE_BASE_URL"),
    ({"AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com", "OPENAI_API_VERSION": "2024-06-01",
      "AZURE_OPENAI_DEPLOYMENT": "d"}, "AZURE_OPENAI_API_KEY"),
])
def test_configurations_that_cannot_run_fail_at_load(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, env=env)


def test_a_url_for_another_target_is_not_checked(tmp_path):
    config = load_config(tmp_path, env={"OPENAI_BASE_URL": "unused", "HARNESS_MODEL_URI": "models:/m/1"})
    assert config.resolved_target() == "mlflow-model"


def test_an_endpoint_without_a_model_is_one_usage_error_before_collection(eval_project):
    result = eval_project("http://127.0.0.1:9/v1", "--harness-model", "")  # "" = not given
    assert result.ret == 4
    errors = [line for line in result.stderr.lines if "harness configuration" in line]
    assert errors == ["ERROR: harness configuration: the openai target needs a model name: HARNESS_MODEL "
                      "or --harness-model (endpoint: http://127.0.0.1:9/v1)"]
    assert "collected" not in result.stdout.str()


@pytest.mark.parametrize("traces", ["true", "false"])  # typed method / generic request
def test_azure_config_builds_azure_client_that_calls_the_deployment(tmp_path, stub, traces):
    server = stub(answer_table({}, default="ok"))
    endpoint = server.base_url.removesuffix("/v1")
    config = load_config(tmp_path, env={
        "AZURE_OPENAI_ENDPOINT": endpoint, "AZURE_OPENAI_API_KEY": "az-key",
        "OPENAI_API_VERSION": "2024-10-21", "AZURE_OPENAI_DEPLOYMENT": "my-gpt",
        "HARNESS_TRACES": traces,
    })
    target = build_target(config)
    assert isinstance(target.client, openai.AsyncAzureOpenAI)
    assert target.model == "my-gpt"
    assert "az-key" not in str(target.describe())

    response = ask_once(target, [{"role": "user", "content": "hi"}])
    assert response.text == "ok"
    assert server.paths == ["/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21"]
    assert server.headers[0]["api-key"] == "az-key"


def test_openai_target_sends_settings_and_system_prompt(tmp_path, stub):
    server = stub(answer_table({}, default="ok"))
    config = load_config(tmp_path, env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-1"},
                         options={"model": "m1", "max_tokens": "33", "temperature": "0.2",
                                  "system_prompt": "Be terse."})
    target = build_target(config)
    assert isinstance(target.client, openai.AsyncOpenAI)

    ask_once(target, [{"role": "user", "content": "hi"}])
    body = server.requests[0]
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("m1", 33, 0.2)
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert server.headers[0]["authorization"] == "Bearer sk-1"


def test_readme_documents_every_setting():
    """The README's configuration table is the user's reference: it must not drift."""
    from pathlib import Path

    from harness.config import settings

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name, meta in settings():
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"setting {name} missing from the README table"
        for key in ("env", "option"):
            if meta[key]:
                assert f"`{meta[key]}`" in row, f"{meta[key]} missing from the README row of {name}"


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:9/v1", "http://h:8000/v1/", None])
def test_endpoint_identity_is_the_clients_without_importing_it(tmp_path, monkeypatch, base_url):
    """Replay builds the target without a client: its journal identity must be the same as the
    connected target's, or stored answers would not be found."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    options = {"model": "m1", "target": "openai"}
    if base_url:
        options["base_url"] = base_url
    connected = build_target(load_config(tmp_path, env={}, options=options))
    offline = build_target(load_config(tmp_path, env={}, options={**options, "replay": "true"}),
                           connect=False)
    assert offline.client is None
    assert offline.describe() == connected.describe()
    assert offline.describe()["endpoint"] == str(connected.client.base_url)
