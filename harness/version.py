"""The harness's version, logged with every run."""

__version__ = "0.1.0"
