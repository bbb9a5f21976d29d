"""The command line for people and scripts: registry + pull, JSON schema, terminals, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.fakehub import FakeHub
from tests.support.gguf_models import write_text_model
from tests.support.helpers import (
    GREEDY,
    GREEDY_ARGS,
    MMCHAT,
    THREADS_ARGS,
    as_flags,
    mmchat_env,
    model_args,
    run_mmchat,
)
from tests.support.mediafiles import noise_png
from tests.support.terminal import Pty

pytestmark = pytest.mark.model  # every test runs `mmchat` in a subprocess


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def test_pull_then_ask_by_name_through_a_local_hub(models, home, tmp_path):
    """A user's models.toml entry, pulled from a (fake) hub, then used by name."""
    (home / "models.toml").write_text(
        '[models.tiny]\nrepo = "test-org/tiny-GGUF"\nquant = "Q4_K_M"\nmodalities = ["image"]\nsize_gb = 0.001\n'
    )
    files = {
        "tiny-Q4_K_M.gguf": models["llm"].read_bytes(),
        "mmproj-tiny-f16.gguf": models["mmproj-vision"].read_bytes(),
    }
    png = noise_png(tmp_path / "p.png")
    with FakeHub({"test-org/tiny-GGUF": files}) as hub:
        env = {"MMCHAT_HOME": str(home), "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "TQDM_POSITION": "-1"}
        missing = run_mmchat("ask", "hi", "-m", "tiny", env=env)
        assert missing.returncode == 2
        assert (
            missing.stderr.decode().strip()
            == "mmchat: error: model 'tiny' is not downloaded: run `mmchat pull tiny` (about 0.001 GB) or add --pull"
        )
        pulled = run_mmchat("pull", "tiny", env=env)
        assert pulled.returncode == 0, pulled.stderr
        assert pulled.stdout == b"" and b"tiny-Q4_K_M.gguf" in pulled.stderr and b"is ready" in pulled.stderr
        listed = {m["name"]: m for m in json.loads(run_mmchat("models", "--json", env=env).stdout)}
        assert listed["tiny"]["downloaded"] is True and listed["gemma-4-E2B-it"]["downloaded"] is False
    # the hub is gone: the cached model answers offline, with the projector found by the registry
    answer = run_mmchat(
        "ask", "What is it?", "-m", "tiny", "-i", str(png), *GREEDY_ARGS, *THREADS_ARGS, "-n", "6", env=env
    )
    assert answer.returncode == 0, answer.stderr
    assert len(answer.stdout.decode().strip()) > 0


def test_unknown_model_name_lists_close_matches(home):
    out = run_mmchat("ask", "hi", "-m", "gemma-4-e2b", env={"MMCHAT_HOME": str(home)})
    assert out.returncode == 2
    err = out.stderr.decode()
    assert err.count("\n") == 1 and "gemma-4-E2B-it" in err and "mmchat models" in err


def test_no_network_is_one_line(home, tmp_path):
    env = {"MMCHAT_HOME": str(home), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    out = run_mmchat("pull", "gemma-4-E2B-it", env=env)
    assert out.returncode == 1
    assert out.stderr.decode().count("\n") == 1 and "no network" in out.stderr.decode()


def test_schema_forces_json_that_validates(models):
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "colour": {"enum": ["red", "green", "blue"]}},
        "required": ["ok", "colour"],
        "additionalProperties": False,
    }
    out = run_mmchat(
        "ask",
        "Is it ok?",
        *model_args(models, None),
        "--schema",
        json.dumps(schema),
        "-n",
        "64",
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert (
        set(answer) == {"ok", "colour"}
        and isinstance(answer["ok"], bool)
        and answer["colour"] in ("red", "green", "blue")
    )


def test_config_file_sets_defaults(models, home):
    # greedy, but no --max-tokens: the built-in default (512), then the config file's (3), must decide
    args = ["ask", "hi", *model_args(models, None, greedy=False), "--json", *as_flags({**GREEDY, "max_tokens": None})]
    plain = run_mmchat(*args, env={"MMCHAT_HOME": str(home)})
    (home / "config.toml").write_text("[defaults]\nmax-tokens = 3\n")
    configured = run_mmchat(*args, env={"MMCHAT_HOME": str(home)})
    assert json.loads(plain.stdout)["usage"]["completion_tokens"] == 512
    assert json.loads(configured.stdout)["usage"]["completion_tokens"] == 3
    assert (
        "[default: 3]" in run_mmchat("ask", "--help", env={"MMCHAT_HOME": str(home), "COLUMNS": "200"}).stdout.decode()
    )


def _pty_run(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, bytes]:
    term = Pty(args, command=None, env={**env, "COLUMNS": "100"})  # the terminal is its stdin, stdout and stderr
    code = term.finish(timeout)
    return code, bytes(term.seen)


def test_a_terminal_gets_rendered_markdown_and_no_color_gets_plain_text(models):
    # -q: no spinner, only the answer
    args = ["ask", "hi", *model_args(models, None), "-q", "-n", "24"]
    code, styled = _pty_run(args, {})
    assert code == 0 and b"\x1b[" in styled
    code, plain = _pty_run(args, {"NO_COLOR": "1"})
    assert code == 0 and b"\x1b[" not in plain and len(plain.strip()) > 0


def test_ctrl_c_exits_130_and_keeps_the_partial_answer(tmp_path):
    """SIGINT mid-answer: what was printed stays, a newline ends it, the exit code is 130."""
    model = write_text_model(tmp_path / "long.gguf", context_length=1 << 17)
    proc = subprocess.Popen(
        [
            *MMCHAT,
            "ask",
            "Tell me everything.",
            "-m",
            str(model),
            "-c",
            str(1 << 17),
            *GREEDY_ARGS,
            *THREADS_ARGS,
            "-n",
            "1000000",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=mmchat_env(),
    )
    first = proc.stdout.read1(64)  # the answer has started streaming
    assert first
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    printed = first + rest
    assert printed.endswith(b"\n") and printed.rstrip(b"\n")  # the partial answer, then a newline
    assert b"Traceback" not in err


def test_chat_reads_a_script_from_stdin_and_prints_only_answers(models, tmp_path):
    png = noise_png(tmp_path / "p.png")
    script = b"Describe it.\n/attach /no/such/file.png\nAnd the colours?\n"
    out = run_mmchat(
        "chat",
        *model_args(models),
        "-i",
        str(png),
        "-n",
        "8",
        env={"MMCHAT_HOME": str(tmp_path)},
        stdin=script,
    )
    assert out.returncode == 0, out.stderr
    answers = out.stdout.decode().splitlines()
    assert len(answers) == 2 and all(answers)  # two questions, two answers, nothing else
    err = out.stderr.decode()
    assert "file not found: /no/such/file.png" in err and "cut at max_tokens" in err


def test_a_reader_that_stops_early_ends_generation_quietly(tmp_path):
    """`mmchat ask ... | head -c 20`: no traceback, exit 0, generation stops."""
    model = write_text_model(
        tmp_path / "long.gguf", context_length=1 << 17
    )  # ~250 kB of answer: more than a pipe holds
    proc = subprocess.Popen(
        [*MMCHAT, "ask", "hi", "-m", str(model), "-c", str(1 << 17), *GREEDY_ARGS, *THREADS_ARGS, "-n", "120000"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=mmchat_env(),
    )
    assert proc.stdout.read(20)
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""


def test_a_gbnf_grammar_constrains_the_answer(models, tmp_path):
    grammar = tmp_path / "answer.gbnf"
    grammar.write_text('root ::= ("yes" | "no") " because " [a-z]+ "."\n')
    out = run_mmchat("ask", "Is it?", *model_args(models, None), "--grammar", str(grammar), "-n", "40")
    assert out.returncode == 0, out.stderr
    import re

    assert re.fullmatch(r"(yes|no) because [a-z]+\.\n", out.stdout.decode())
    bad = run_mmchat("ask", "Is it?", "-m", str(models["llm"]), "--grammar", str(tmp_path / "missing.gbnf"))
    assert bad.returncode == 2 and b"grammar file not found" in bad.stderr
    (tmp_path / "broken.gbnf").write_text('root ::= ( "yes"\n')
    broken = run_mmchat("ask", "Is it?", "-m", str(models["llm"]), "--grammar", str(tmp_path / "broken.gbnf"))
    err = broken.stderr.decode()
    assert (
        broken.returncode == 2
        and err.count("\n") == 1
        and "the grammar does not parse" in err
        and "expecting ')'" in err
    )


def test_a_long_inline_schema_is_json_not_a_file_name(models):
    props = {f"field_{i}": {"type": "boolean"} for i in range(30)}
    schema = json.dumps({"type": "object", "properties": props, "required": list(props)})  # > 255 characters
    out = run_mmchat("ask", "x", *model_args(models, None), "--schema", schema, "-n", "3000")
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(out.stdout)) == sorted(props)
