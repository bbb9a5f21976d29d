"""Shared pytest fixtures, the developer's environment kept out, and the `model` marker kept honest.

`pytest -m "not model"` is the fast inner loop: everything but the tests that load a GGUF, start
a process or fuzz at length. A test gets the marker from a fixture in MODEL_FIXTURES, or says it
itself (`@pytest.mark.model`, or a module's `pytestmark`); an unmarked test that starts a process
fails with a line saying so, so the fast half stays fast as tests are added.
"""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.fuzzing import FUZZ_EXAMPLES
from tests.support.gguf_models import write_all
from tests.support.helpers import user_vars

# Property-based tests: the same bounded examples on every CI run; MMCHAT_FUZZ_EXAMPLES=N for more (tests/support/fuzzing.py)
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("fuzz", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fuzz" if FUZZ_EXAMPLES else "ci")

#: fixtures that write or load the tiny GGUFs, or start a server process: a test using one is a `model` test
MODEL_FIXTURES = frozenset({"models"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny GGUF models of tests/support/gguf_models.py, written once per session."""
    return write_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session", autouse=True)
def isolated_session_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The same isolation as `isolated_user_dir`, for the whole session: module- and
    session-scoped fixtures are set up before any function-scoped one, so without this the
    mmchat processes and Runners they start would see the developer's environment."""
    home = tmp_path_factory.mktemp("mmchat-session-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMCHAT_HOME", str(home))
        for var in user_vars(os.environ):
            mp.delenv(var)
        yield home


@pytest.fixture(autouse=True)
def isolated_user_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test (nor the mmchat processes it starts) reads or writes the developer's own config,
    history or default model, talks to their server, or inherits their colour and debug settings."""
    home = tmp_path_factory.mktemp("mmchat-home")
    monkeypatch.setenv("MMCHAT_HOME", str(home))
    for var in user_vars(os.environ):
        monkeypatch.delenv(var)
    return home


# -- an unmarked test may not start a process or load a model -------------------------------------------------


@pytest.fixture(autouse=True)
def processes_only_in_model_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside `model` tests, starting a process (subprocess, multiprocessing, fork) or loading a
    GGUF model fails the test."""
    if request.node.get_closest_marker("model") is not None:
        return
    import multiprocessing.util

    def refuse(what: str):  # pytest.fail is no Exception: the code under test cannot swallow it
        pytest.fail(
            f"{request.node.nodeid} starts a process or loads a GGUF ({what}): mark it @pytest.mark.model "
            "(tests/conftest.py), so `pytest -m 'not model'` stays fast",
            pytrace=False,
        )

    def guarded_child(popen, args, *rest, **kw):  # every Popen, subprocess.run and check_output comes here
        refuse(" ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args))

    monkeypatch.setattr(subprocess.Popen, "_execute_child", guarded_child)
    monkeypatch.setattr(
        multiprocessing.util, "spawnv_passfds", lambda path, args, fds: refuse(" ".join(map(str, args)))
    )
    monkeypatch.setattr(os, "fork", lambda: refuse("os.fork"))
    monkeypatch.setattr(os, "system", lambda command: refuse(command))
    from mmchat.engine.llamacpp import LlamaCppEngine  # every local model is loaded through it

    monkeypatch.setattr(LlamaCppEngine, "__init__", lambda self, model_path, *a, **k: refuse(f"loads {model_path}"))
