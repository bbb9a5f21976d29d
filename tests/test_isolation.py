"""A developer's exported server, key or default model never reaches the suite (tests/conftest.py clears them).

The proof runs the suite's own subprocess test in a child pytest with MMCHAT_BASE_URL and friends
exported, pointed at a stub server: the stub must hear nothing, though the same variables given
to `mmchat` directly send it there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import GREEDY_ARGS, THREADS_ARGS, run_mmchat, user_vars
from tests.stubserver import serve

pytestmark = pytest.mark.model  # mmchat, and pytest itself, in child processes

ROOT = Path(__file__).resolve().parent.parent
INNER = "tests/test_isolation.py::test_a_subprocess_answers_from_the_model_it_is_given"


def test_a_subprocess_answers_from_the_model_it_is_given(models):
    assert user_vars(os.environ) == []
    out = run_mmchat("ask", "hi", "-m", str(models["llm"]), "--json", *GREEDY_ARGS, *THREADS_ARGS)
    assert out.returncode == 0, out.stderr.decode()
    answer = json.loads(out.stdout)
    assert answer["model"] == "llm.gguf" and answer["usage"]["completion_tokens"] == 10  # the tiny model's ten tokens


def test_an_exported_server_key_and_model_never_reach_the_suite(models, tmp_path):
    with serve() as stub:
        exported = {"MMCHAT_BASE_URL": stub.url, "OPENAI_BASE_URL": stub.url + "/v1", "MMCHAT_API_KEY": "dev-key",
                    "OPENAI_API_KEY": "dev-key", "MMCHAT_MODEL": "dev-model", "NO_COLOR": "1"}
        leaked = run_mmchat("ask", "hi", "-m", str(models["llm"]), env=exported)
        assert leaked.returncode == 0 and len(stub.chats) == 1, leaked.stderr.decode()  # where they would send it
        inner = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'inner'}",
                                INNER], env={**os.environ, **exported}, cwd=ROOT, capture_output=True, timeout=300)
    assert inner.returncode == 0, inner.stdout.decode()[-3000:]
    assert "1 passed" in inner.stdout.decode()
    assert len(stub.chats) == 1 and stub.headers[0]["Authorization"] == "Bearer dev-key"  # only the direct run came
