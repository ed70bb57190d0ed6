"""harness.targets.registry: target kinds registered by decorator or through the
`harness.targets` entry-point group, once each, and a clear error for an unknown kind."""

from __future__ import annotations

import pytest

import harness
from harness.config import ConfigError, HarnessConfig
from harness.targets import registry
from mini_project import CANNED_TARGET, GOOD_ANSWERS


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """The kinds a test registers go with it."""
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))


def test_the_built_in_kinds_are_registered():
    assert {"openai", "azure", "local", "mlflow-model", "mlflow-serving"} <= set(registry.kinds())


def test_an_unknown_target_kind_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"target must be one of .*'openai'.*got 'nope'"):
        registry.get("nope")


def test_a_kind_is_registered_once(tmp_path, monkeypatch):
    (tmp_path / "my_targets_once.py").write_text(CANNED_TARGET.format(answers=GOOD_ANSWERS))
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_targets_once

    harness.target("canned")(my_targets_once.Canned)  # the same class again: fine (a re-import)
    with pytest.raises(ValueError, match="already registered"):
        harness.target("canned")(lambda config, **_: None)
    with pytest.raises(ValueError, match="other than 'auto'"):
        harness.target("auto")


def test_a_target_kind_from_an_installed_packages_entry_point(tmp_path, monkeypatch):
    """A package adds a kind through the `harness.targets` entry-point group: found by name,
    without the user importing anything."""
    site = tmp_path / "site"
    (site / "canned_pkg-1.0.dist-info").mkdir(parents=True)
    (site / "canned_pkg-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: canned-pkg\nVersion: 1.0\n")
    (site / "canned_pkg-1.0.dist-info" / "entry_points.txt").write_text(
        "[harness.targets]\ncanned-ep = canned_pkg:Canned\n")
    (site / "canned_pkg.py").write_text(CANNED_TARGET.format(answers=GOOD_ANSWERS).replace(
        '@harness.target("canned")\n', ""))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    factory = registry.get("canned-ep")
    target = factory(HarnessConfig(target="canned-ep"), connect=False)
    assert target.describe() == {"target": "canned", "model": "canned-model"}
    assert "canned-ep" in registry.kinds()
