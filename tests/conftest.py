"""Shared pytest fixtures."""

from pathlib import Path

import pytest

from tests.fixtures.gguf_models import write_all


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny GGUF models of tests/fixtures/gguf_models.py, written once per session."""
    return write_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(autouse=True)
def isolated_user_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test (nor the mmchat processes it starts) reads or writes the developer's own config,
    history or default model, or inherits their colour and debug settings."""
    home = tmp_path_factory.mktemp("mmchat-home")
    monkeypatch.setenv("MMCHAT_HOME", str(home))
    for var in ("MMCHAT_MODEL", "MMCHAT_DEBUG", "NO_COLOR"):
        monkeypatch.delenv(var, raising=False)
    return home
