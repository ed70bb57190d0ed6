"""The open registry of check types: `@check(name)` on a pure function, in the harness, in a
user's own `evals/` or `conftest.py` file, or in an installed package through the
`harness.checks` entry-point group. A dataset may then declare `{"type": name, ...}`.

    from harness.scorers import registry
    from harness.core import Score

    def _needs_word(params):
        if not isinstance(params.get("word"), str):
            raise ValueError("needs 'word': a string")

    @registry.check("shouts", validate=_needs_word, family="quality")
    def shouts(answer, params, expected):
        ok = params["word"].upper() in answer
        return Score("shouts", float(ok), ok, "" if ok else f"{params['word'].upper()!r} not shouted")

A check is `(answer, params, expected, **extra) -> Score | list[Score]`: `params` is the
dataset's check object (its "type" included), `expected` the case's reference answer or None.
- `validate(params)` raises ValueError("what is wrong") for bad parameters; the dataset reports it
  as "file:line: case 'x': checks[i] (type) what is wrong", with every other problem of the file.
- `score`: the name of the pass/fail score the check reports (a string, or a function of the
  params); a case with no answer fails it under that name. Default: the check's own name.
- `needs`: extra inputs, given as keyword arguments: "request" (the case's prompt, the last user
  message) and "messages" (the case's whole conversation, system prompt included).
- `family`: the kind of property checked ("quality", "safety", "bias" ...). The LLM judge reads a
  case with its quality rubric when every check of the case is of the "quality" family.

A name is registered once: another function under a known name is an error, never an override
(the same function registered again, as a module re-imported, is fine). Entry points of the
`harness.checks` group name a module (or an object in one) whose import registers checks; they
are imported the first time a name is not found or `names()` is asked.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Mapping

from harness.core import Score

__all__ = ["ENTRY_POINTS", "NEEDS", "Check", "CheckEntryPointError", "DuplicateCheckError", "InvalidParameters",
           "UnknownCheckError", "check", "find", "get", "is_int", "load_entry_points", "names"]

ENTRY_POINTS = "harness.checks"
NEEDS = ("request", "messages")

CheckFunction = Callable[..., "Score | list[Score]"]
Validator = Callable[[Mapping[str, Any]], None]


class UnknownCheckError(LookupError):
    """No check is registered under the name (the message lists the known ones)."""


class DuplicateCheckError(ValueError):
    """Another function already holds the name."""


class CheckEntryPointError(RuntimeError):
    """An installed `harness.checks` entry point failed to load (the message names it)."""


class InvalidParameters(ValueError):
    """What a validator may raise instead of a plain ValueError. `labelled=False` leaves the
    "(type)" label out of the dataset's problem ("checks[i] message"): kept for messages older
    than the registry, which curators and tests know by heart."""

    def __init__(self, message: str, *, labelled: bool = True):
        super().__init__(message)
        self.labelled = labelled


@dataclass(frozen=True)
class Check:
    """One registered check type."""

    name: str
    function: CheckFunction
    validate: Validator | None = None
    score: str | Callable[[Mapping[str, Any]], str] | None = None
    needs: frozenset[str] = frozenset()
    family: str | None = None
    origin: str = ""  # the module-qualified name of the function registered (kept if it is swapped)

    def score_name(self, params: Mapping[str, Any]) -> str:
        """The name of the pass/fail score this check reports for these parameters."""
        if self.score is None:
            return self.name
        return self.score if isinstance(self.score, str) else self.score(params)

    def inputs(self, request: str, messages: Iterable[Mapping[str, str]]) -> dict[str, Any]:
        """The keyword arguments of `needs`, out of a case's prompt and conversation."""
        extra: dict[str, Any] = {}
        if "request" in self.needs:
            extra["request"] = request
        if "messages" in self.needs:
            extra["messages"] = messages
        return extra


_CHECKS: dict[str, Check] = {}
_lock = threading.RLock()  # an entry point's import registers while the scan holds it
_scanned_for: tuple[str, ...] | None = None  # the sys.path the entry points were last read from
_loaded_points: set[tuple[str, str, str]] = set()


def _qualified(function: Any) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"


def is_int(value: Any) -> bool:
    """An integer as JSON has them: not a bool (which Python counts as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check(name: str, *, validate: Validator | None = None,
          score: str | Callable[[Mapping[str, Any]], str] | None = None,
          needs: Collection[str] | str = (), family: str | None = None) -> Callable[[CheckFunction], CheckFunction]:
    """Register the decorated function as the check type `name`; the function is returned as
    it is (call it directly, pickle it)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a check's name is a non-empty string, got {name!r}")
    needed = frozenset((needs,) if isinstance(needs, str) else needs)
    if needed - set(NEEDS):
        raise ValueError(f"check {name!r}: unknown needs {sorted(needed - set(NEEDS))}; known: {list(NEEDS)}")
    if validate is not None and not callable(validate):
        raise TypeError(f"check {name!r}: validate must be a function of the parameters")
    if score is not None and not (isinstance(score, str) and score) and not callable(score):
        raise TypeError(f"check {name!r}: score must be a name or a function of the parameters")
    if family is not None and (not isinstance(family, str) or not family):
        raise ValueError(f"check {name!r}: family must be a non-empty string, got {family!r}")

    def register(function: CheckFunction) -> CheckFunction:
        if not callable(function):
            raise TypeError(f"@check({name!r}) decorates a function, got {function!r}")
        with _lock:
            known, origin = _CHECKS.get(name), _qualified(function)
            if known is not None and known.origin != origin:
                raise DuplicateCheckError(f"check {name!r} is already registered by {known.origin}; "
                                          f"{origin} cannot take the name (choose another)")
            _CHECKS[name] = Check(name, function, validate, score, needed, family, origin)
        return function

    return register


def load_entry_points(*, again: bool = False) -> None:
    """Import the installed `harness.checks` entry points not imported yet. Done by itself once
    per sys.path, the first time a name is not found; `again=True` reads the installed packages
    afresh (a plugin installed into a running process). A broken entry point raises
    CheckEntryPointError naming it, after the others were loaded, and is tried again next time."""
    global _scanned_for
    with _lock:
        path = tuple(sys.path)
        if _scanned_for == path and not again:
            return
        from importlib.metadata import entry_points

        broken: list[str] = []
        for point in entry_points(group=ENTRY_POINTS):
            dist = getattr(getattr(point, "dist", None), "name", None) or "?"
            key = (dist, point.name, point.value)
            if key in _loaded_points:
                continue
            try:
                point.load()
            except Exception as exc:  # noqa: BLE001 - any failure of a plugin's import is reported as its own
                broken.append(f"{point.name!r} = {point.value!r} (distribution {dist}): {type(exc).__name__}: {exc}")
                continue
            _loaded_points.add(key)
        if broken:
            raise CheckEntryPointError(f"{ENTRY_POINTS} entry point(s) failed to load: " + "; ".join(broken))
        _scanned_for = path


def find(name: str) -> Check | None:
    """The check registered under `name` (after the entry points, for a name not known yet), or
    None."""
    spec = _CHECKS.get(name)
    if spec is None and isinstance(name, str):
        load_entry_points()
        spec = _CHECKS.get(name)
    return spec


def get(name: str) -> Check:
    """The check registered under `name`; UnknownCheckError names the known ones."""
    spec = find(name)
    if spec is None:
        raise UnknownCheckError(f"no check type {name!r} is registered; known: {names()}")
    return spec


def names() -> list[str]:
    """Every registered check type, sorted (the entry points loaded first)."""
    load_entry_points()
    return sorted(_CHECKS)


def _replace_function(name: str, function: CheckFunction) -> None:
    """Swap the function of a registered check, its metadata kept: what `harness.scorers.CHECKS`
    does on item assignment, for tests that wrap a check (never a way to take a name)."""
    with _lock:
        spec = get(name)
        _CHECKS[name] = dataclasses.replace(spec, function=function)
