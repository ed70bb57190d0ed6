"""Targets spoken to with the official `openai` client: OpenAI, Azure OpenAI, and any
OpenAI-compatible base_url (vLLM, Ollama, llama.cpp, Databricks serving, MLflow AI Gateway)."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from harness.config import ConfigError, HarnessConfig
from harness.core import Request, Response
from harness.targets.base import TargetError
from harness.targets.registry import target

if TYPE_CHECKING:  # imported on first call: a replay never pays for them
    import openai


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from model endpoints; fall back to our own backoff


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            break
        exc = nxt
    return exc


def _response_from(payload: Any, latency: float) -> Response:
    """The Response in a chat-completions body, or TargetError if the body is not one."""
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise TargetError("malformed response: no choices", retryable=True)
    choice = choices[0]
    message = choice.get("message") or {}
    usage = payload.get("usage") or {}
    return Response(
        text=(message.get("content") if isinstance(message, dict) else None) or "",
        latency_s=latency,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        finish_reason=choice.get("finish_reason"),
        model=payload.get("model"),
    )


def _json_object_form(response_format: Mapping[str, Any]) -> dict[str, Any]:
    """llama-cpp-python's form of a `json_schema` response_format: its server (0.3.x) accepts only
    `text` and `json_object`, and compiles a `schema` given with `json_object` into a grammar."""
    return {"type": "json_object", "schema": response_format["json_schema"]["schema"]}


def _rejects_json_schema(exc: openai.APIStatusError, body: Mapping[str, Any]) -> bool:
    """Whether the server refused the `json_schema` response_format type itself, as
    llama-cpp-python's does: HTTP 500 carrying its validation error "Input should be 'text' or
    'json_object'" (400/422 from a stricter server). Nothing else is taken for it: a real
    fault must not be hidden behind a second request."""
    rf = body.get("response_format")
    if not isinstance(rf, Mapping) or rf.get("type") != "json_schema" or exc.status_code not in (400, 422, 500):
        return False
    message = str(exc.message)
    return "json_schema" in message and "json_object" in message


class OpenAICompatibleTarget:
    """One chat-completions endpoint. Retries are the engine's job: the client makes exactly
    one attempt per call (max_retries=0) so every attempt is counted and bounded."""

    def __init__(self, client: "openai.AsyncOpenAI | None", *, kind: str, model: str, temperature: float,
                 max_tokens: int, seed: int | None = None, system_prompt: str | None = None,
                 endpoint: str | None = None, structured: str | None = None):
        self.client = client
        self.kind = kind
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self.system_prompt = system_prompt
        self.endpoint = endpoint
        # names the per-request response_formats this target may send (e.g. the judge's verdict
        # schemas): part of its identity, so journalled free-text and structured answers never mix
        self.structured = structured
        self._json_object_form = False  # set once the server turned the json_schema type down

    def describe(self) -> dict[str, Any]:
        identity = {
            "target": self.kind,
            "endpoint": self.endpoint or "",
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "system_prompt": self.system_prompt or "",
        }
        if self.structured:  # only then: the identities (and journals) of plain targets stay as they were
            identity["response_format"] = self.structured
        return identity

    def _messages(self, messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        out = [dict(m) for m in messages]
        if self.system_prompt and not any(m["role"] == "system" for m in out):
            out.insert(0, {"role": "system", "content": self.system_prompt})
        return out

    async def acomplete(self, request: Request) -> Response:
        """One attempt. Returns a Response or raises TargetError. The request's settings that
        are None are this target's own."""
        import httpx2 as httpx  # the HTTP library of openai>=3
        import openai

        if request.response_format is not None and not self.structured:
            raise TargetError("a response_format for a target built without `structured`: its journal could "
                              "not tell structured from free-text answers", retryable=False)
        if self.client is None:
            raise TargetError("this target was built without a client (replay): no model calls",
                              retryable=False)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self._messages(request.messages),
            "temperature": self.temperature if request.temperature is None else request.temperature,
            "max_tokens": self.max_tokens if request.max_tokens is None else request.max_tokens,
        }
        seed = self.seed if request.seed is None else request.seed
        if seed is not None:
            body["seed"] = seed
        response_format = request.response_format
        if response_format is not None:
            response_format = json.loads(json.dumps(response_format))
            body["response_format"] = (_json_object_form(response_format) if self._json_object_form
                                       else response_format)

        async def send() -> Any:
            # the client's generic request (auth, base URL, Azure deployment routing,
            # timeouts and status errors all included) without its typed request and
            # response models: measured here, half the CPU per call (bench/throughput.py)
            raw = await self.client.post("/chat/completions", body=body, cast_to=httpx.Response)
            return json.loads(raw.content)

        started = time.perf_counter()
        try:
            try:
                payload = await send()
            except openai.APIStatusError as exc:
                if not _rejects_json_schema(exc, body):
                    raise
                # the OpenAI-standard type is refused (llama-cpp-python's server): the same
                # schema in its own form, from now on. Not a retry: the request was never
                # considered, so it is resent at once, within this attempt.
                self._json_object_form = True
                body["response_format"] = _json_object_form(response_format)  # type: ignore[arg-type]
                payload = await send()
        except openai.APIConnectionError as exc:  # APITimeoutError included
            root = _root_cause(exc)
            if isinstance(exc, openai.APITimeoutError) and isinstance(root, TimeoutError):
                raise TargetError("request timed out", retryable=True) from None
            # the aiohttp transport reports a dropped connection as a connect *timeout*: say
            # what actually happened
            detail = str(root) or type(root).__name__
            raise TargetError(f"connection failed: {detail}", retryable=True) from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            retryable = status in (408, 409, 429) or status >= 500
            detail = exc.message if len(exc.message) < 300 else exc.message[:300] + "…"
            raise TargetError(f"HTTP {status}: {detail}", retryable=retryable,
                              retry_after=_retry_after(exc)) from None
        except openai.APIResponseValidationError as exc:
            raise TargetError(f"malformed response: {exc.message}", retryable=True) from None
        except ValueError as exc:  # a body that is not JSON
            raise TargetError(f"malformed response: {exc}", retryable=True) from None
        return _response_from(payload, time.perf_counter() - started)

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.close()


# The local llama.cpp server ignores the key, but the openai client insists on one.
_PLACEHOLDER_KEY = "not-needed"


def openai_endpoint(base_url: str | None) -> str:
    """The base URL the openai client will use, as it normalizes it (OPENAI_BASE_URL, then the
    public API; one trailing slash), without importing openai."""
    url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    return url.rstrip("/") + "/"


@target("openai")
@target("azure")
@target("local")
def openai_compatible_target(config: HarnessConfig, *, connect: bool = True, local_base_url: str | None = None,
                             local_model: str | None = None, local_identity: str | None = None,
                             structured: str | None = None, **_: object) -> OpenAICompatibleTarget:
    """OpenAI, Azure OpenAI, or the embedded server ("local": `local_base_url`, `local_model`
    and `local_identity` come from the session, which owns the server's lifetime)."""
    kind = config.resolved_target()
    if kind == "openai" and not config.model:
        raise ConfigError("the openai target needs a model name: HARNESS_MODEL or --harness-model")
    if kind == "local" and local_base_url is None:
        raise ConfigError("the local target needs the embedded server's base_url")
    if kind == "azure":
        model = config.model or config.azure_deployment
        endpoint = f"{config.azure_endpoint} (deployment {config.azure_deployment}, api {config.api_version})"
    elif kind == "openai":
        model = config.model
        endpoint = openai_endpoint(config.base_url)
    else:
        model = config.model or local_model or "local"
        endpoint = local_identity or "embedded llama-server (127.0.0.1)"
    client = _client(config, kind, base_url=local_base_url if kind == "local" else config.base_url,
                     api_key=config.api_key) if connect else None
    return OpenAICompatibleTarget(
        client, kind=kind, model=model, temperature=config.temperature, max_tokens=config.max_tokens,
        seed=config.seed, system_prompt=config.system_prompt, endpoint=endpoint,
        structured=structured)


# What the judge is asked with: always the same, whatever the target's settings.
JUDGE_TEMPERATURE, JUDGE_MAX_TOKENS, JUDGE_SEED = 0.0, 300, 0


def judge_target(config: HarnessConfig, *, connect: bool = True, structured: str | None = None) -> OpenAICompatibleTarget:
    """The LLM judge: any OpenAI-compatible endpoint (judge_base_url, judge_api_key,
    judge_model), greedy, with no system prompt. Its calls get no traces of their own: its verdicts
    reach MLflow as LLM_JUDGE assessments on the judged case's trace. `structured` names the
    verdict schemas its requests carry (part of its identity, hence of its journal's keys)."""
    client = _client(config, "openai", base_url=config.judge_base_url, api_key=config.judge_api_key) if connect else None
    return OpenAICompatibleTarget(
        client, kind="openai", model=config.judge_model or "", temperature=JUDGE_TEMPERATURE,
        max_tokens=JUDGE_MAX_TOKENS, seed=JUDGE_SEED, system_prompt=None,
        endpoint=openai_endpoint(config.judge_base_url), structured=structured)


def _client(config: HarnessConfig, kind: str, *, base_url: str | None, api_key: str | None):
    import openai  # lazy: importing openai costs ~1 s, collection and replay should not pay it

    # The client's aiohttp transport (openai[aiohttp]): measured here it costs about half the
    # CPU per call of the default httpx transport, which bounds throughput on small machines.
    common = dict(timeout=config.request_timeout, max_retries=0,
                  http_client=openai.DefaultAioHttpClient(timeout=config.request_timeout))
    try:
        if kind == "azure":
            return openai.AsyncAzureOpenAI(
                azure_endpoint=config.azure_endpoint, azure_deployment=config.azure_deployment,
                api_version=config.api_version, api_key=config.azure_api_key, **common)
        if kind == "openai":
            return openai.AsyncOpenAI(base_url=base_url, api_key=api_key or _PLACEHOLDER_KEY, **common)
        return openai.AsyncOpenAI(base_url=base_url, api_key=_PLACEHOLDER_KEY, **common)
    except openai.OpenAIError as exc:  # e.g. Azure without key or token
        raise ConfigError(f"cannot build the {kind} client: {exc}") from None
