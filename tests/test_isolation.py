"""A developer's exported server, key or default model never reaches the suite (tests/conftest.py clears them).

The proof runs one of the suite's subprocess tests in a child pytest with MMCHAT_BASE_URL and friends
exported, pointed at a stub server: the test must pass (its answer is the local model's) and the stub
hear nothing, though the same variables given to `mmchat` directly send it there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import model_args, run_mmchat
from tests.support.stubserver import serve

pytestmark = pytest.mark.model  # mmchat, and pytest itself, in child processes

ROOT = Path(__file__).resolve().parent.parent
INNER = "tests/test_cli_ask.py::test_stdout_carries_only_the_answer"  # a subprocess answer, checked against a Runner's


def test_an_exported_server_key_and_model_never_reach_the_suite(models, tmp_path):
    with serve() as stub:
        exported = {
            "MMCHAT_BASE_URL": stub.url,
            "OPENAI_BASE_URL": stub.url + "/v1",
            "MMCHAT_API_KEY": "dev-key",
            "OPENAI_API_KEY": "dev-key",
            "MMCHAT_MODEL": "dev-model",
            "NO_COLOR": "1",
        }
        leaked = run_mmchat("ask", "hi", *model_args(models, None, greedy=False, threads=False), env=exported)
        assert leaked.returncode == 0 and len(stub.chats) == 1, leaked.stderr.decode()  # where they would send it
        inner = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'inner'}", INNER],
            env={**os.environ, **exported},
            cwd=ROOT,
            capture_output=True,
            timeout=300,
        )
    assert inner.returncode == 0, inner.stdout.decode()[-3000:]
    assert "1 passed" in inner.stdout.decode()
    assert len(stub.chats) == 1 and stub.headers[0]["Authorization"] == "Bearer dev-key"  # only the direct run came
