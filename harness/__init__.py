"""An evaluation and guardrail harness for deployed LLMs, run by pytest, tracked in MLflow.

The same suites run without pytest, from a notebook or a script:

    import harness
    run = harness.run_suite(harness.Suite("quality", "datasets/quality/cases.jsonl"),
                            harness.load_config("."))
    run.verdict.passed

and a check or a target is added with a decorator (`harness.check`, `harness.target`).
"""

from harness.version import __version__

__all__ = ["__version__", "Suite", "SuiteRun", "run_suite", "load_config", "check", "target"]

# The public API is imported on first use: `import harness` (what the pytest plugin's entry
# point does in every pytest process) stays free of the pipeline's imports.
_PUBLIC = {"Suite": "harness.suite", "SuiteRun": "harness.suite", "run_suite": "harness.suite",
           "load_config": "harness.config", "check": "harness.scorers.registry",
           "target": "harness.targets.registry"}


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
