"""Shared pytest fixtures."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.fixtures.gguf_models import write_all
from tests.fuzzing import FUZZ_EXAMPLES

# Property-based tests: the same bounded examples on every CI run; MMCHAT_FUZZ_EXAMPLES=N for more (tests/fuzzing.py)
settings.register_profile("ci", derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fuzz", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fuzz" if FUZZ_EXAMPLES else "ci")

_USER_VARS = ("MMCHAT_MODEL", "MMCHAT_DEBUG", "NO_COLOR")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny GGUF models of tests/fixtures/gguf_models.py, written once per session."""
    return write_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session", autouse=True)
def isolated_session_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The same isolation as `isolated_user_dir`, for the whole session: module- and
    session-scoped fixtures are set up before any function-scoped one, so without this the
    mmchat processes and Runners they start would see the developer's environment."""
    home = tmp_path_factory.mktemp("mmchat-session-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMCHAT_HOME", str(home))
        for var in _USER_VARS:
            mp.delenv(var, raising=False)
        yield home


@pytest.fixture(autouse=True)
def isolated_user_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test (nor the mmchat processes it starts) reads or writes the developer's own config,
    history or default model, or inherits their colour and debug settings."""
    home = tmp_path_factory.mktemp("mmchat-home")
    monkeypatch.setenv("MMCHAT_HOME", str(home))
    for var in _USER_VARS:
        monkeypatch.delenv(var, raising=False)
    return home
