"""hiopt_ros.config: the one config locator (source tree, else ament index, else <prefix>/share)."""
from __future__ import annotations

import sys

import pytest

from hiopt_ros import config


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Pretend the packages were installed without their source tree next to them."""
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.setattr(config, "IMPORT_ROOT", site)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "empty_prefix"))
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    config.share_dir.cache_clear()
    yield tmp_path
    config.share_dir.cache_clear()


def _install_share(prefix, with_marker: bool):
    share = prefix / "share" / config.PACKAGE
    (share / "config").mkdir(parents=True)
    (share / "config" / "nav.yaml").write_text("/**: {ros__parameters: {}}\n")
    if with_marker:
        marker = prefix / "share" / "ament_index" / "resource_index" / "packages"
        marker.mkdir(parents=True)
        (marker / config.PACKAGE).write_text("")
    return share


def test_source_tree_is_found_first(repo_root):
    config.share_dir.cache_clear()
    assert config.share_dir() == repo_root
    assert config.default_params_file() == repo_root / "config" / "nav.yaml"


def test_installed_package_is_found_through_the_ament_index(installed, monkeypatch):
    pytest.importorskip("ament_index_python")
    share = _install_share(installed / "ws_install", with_marker=True)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(installed / "ws_install"))
    assert config.default_params_file() == share / "config" / "nav.yaml"


def test_pip_install_prefix_is_the_fallback(installed, monkeypatch):
    share = _install_share(installed / "venv", with_marker=False)
    monkeypatch.setattr(sys, "prefix", str(installed / "venv"))
    assert config.config_path("theta", "robot.yaml") == share / "config" / "theta" / "robot.yaml"


def test_nothing_found_is_one_clear_error(installed):
    with pytest.raises(FileNotFoundError, match="cannot find the hiopt_ros config folder"):
        config.share_dir()
