"""The open registry of target kinds: `@target("kind")` on a factory `(config, *, connect,
**context) -> Target` (or on a class with such a `from_config` classmethod), in the harness, in a
user's own `evals/` or `conftest.py` file, or in an installed package through the
`harness.targets` entry-point group. `--harness-target KIND` then asks that target.

    @harness.target("echo")
    class Echo:
        @classmethod
        def from_config(cls, config, *, connect=True, **context):
            return cls()
        def describe(self): return {"target": "echo", "model": "echo"}
        async def acomplete(self, request): ...
        async def aclose(self): ...

`connect=False` (a replay) asks for a target that describes itself exactly as the connected one
would, but never calls anything. `context` carries what only the session knows (the embedded
server's base_url for "local", the judge's response formats); a factory ignores what it does
not use.
"""

from __future__ import annotations

from typing import Any, Callable

from harness.config import ConfigError

ENTRY_POINTS = "harness.targets"

Factory = Callable[..., Any]
_FACTORIES: dict[str, Factory] = {}
_entry_points_loaded = False


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def target(kind: str) -> Callable[[Any], Any]:
    """Register a target kind: a factory function, or a class with a `from_config` classmethod.
    A kind is registered once: another object under a known kind is an error, not an override."""
    if not isinstance(kind, str) or not kind or kind == "auto":
        raise ValueError(f"a target kind is a non-empty name other than 'auto', got {kind!r}")

    def register(obj: Any) -> Any:
        factory = obj.from_config if isinstance(obj, type) else obj
        if not callable(factory):
            raise TypeError(f"@target({kind!r}) needs a function or a class with from_config")
        known = _FACTORIES.get(kind)
        if known is not None and _qualified(known) != _qualified(factory):
            raise ValueError(f"target kind {kind!r} is already registered by {_qualified(known)}")
        _FACTORIES[kind] = factory
        return obj

    return register


def _load_entry_points() -> None:
    """Import every installed `harness.targets` entry point once (their import registers)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINTS):
        try:
            loaded = point.load()
        except Exception as exc:
            raise ConfigError(f"target entry point {point.name!r} ({point.value}) failed to load: "
                              f"{type(exc).__name__}: {exc}") from None
        if point.name not in _FACTORIES and callable(loaded):
            target(point.name)(loaded)


def kinds() -> list[str]:
    _load_entry_points()
    return sorted(_FACTORIES)


def get(kind: str) -> Factory:
    if kind not in _FACTORIES:
        _load_entry_points()
    if kind not in _FACTORIES:
        raise ConfigError(f"target must be one of {['auto', *kinds()]}, got {kind!r}")
    return _FACTORIES[kind]
