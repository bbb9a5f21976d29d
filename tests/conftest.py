"""Shared pytest fixtures."""

from pathlib import Path

import pytest

from tests.fixtures.gguf_models import write_all


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny GGUF models of tests/fixtures/gguf_models.py, written once per session."""
    return write_all(tmp_path_factory.mktemp("models"))
