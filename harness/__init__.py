"""An evaluation and guardrail harness for deployed LLMs, run by pytest, tracked in MLflow."""

__version__ = "0.1.0"
