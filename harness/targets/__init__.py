"""How a model is asked. `build_target` turns the config into a Target of the configured kind,
through the open registry (`harness.targets.registry`): the built-in kinds are registered where
they are defined, a user's with `@harness.target("kind")`."""

from __future__ import annotations

from harness.config import ConfigError, HarnessConfig
from harness.core import Request, Response
from harness.targets import mlflow_model, openai_compatible  # noqa: F401 - their kinds register on import
from harness.targets.base import Target, TargetError
from harness.targets.openai_compatible import judge_target, openai_endpoint
from harness.targets.registry import get, kinds, target

__all__ = ["Request", "Response", "Target", "TargetError", "build_target", "judge_target", "kinds",
           "openai_endpoint", "target"]

# kinds that can send a per-request response_format (the judge's verdict schemas)
_STRUCTURED = ("azure", "openai", "local")


def build_target(config: HarnessConfig, *, connect: bool = True, structured: str | None = None,
                 **context: object) -> Target:
    """The configured target. `context` is what only the session knows (for kind "local": the
    embedded server's `local_base_url`, `local_model`, `local_identity`). `structured` names
    the per-request response_formats the target will be sent: it becomes part of the target's
    identity. OpenAI-compatible kinds only.

    `connect=False` (replay) gives a target that describes itself exactly as the connected one
    would, so journal keys match, but has no client and never imports openai (~1 s saved)."""
    kind = config.resolved_target()
    factory = get(kind)
    if structured:
        if kind not in _STRUCTURED:
            raise ConfigError(f"the {kind} target cannot send a response_format")
        context["structured"] = structured
    return factory(config, connect=connect, **context)
