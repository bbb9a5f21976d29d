"""Values in at the edge (issue 25): the environment read once, by the CLI from its Environment and by
`Runner.open` from the process; a Target (`Local` | `Server`) carried to a narrow Runner; options
built once and carried; diagnostics logged, so a Python user's logging sees them."""

from __future__ import annotations

import ast
import dataclasses
import logging
from pathlib import Path

import pytest

import mmchat
from mmchat import Runner
from mmchat.models.target import Local, Server, find_target
from mmchat.options import GenerationOptions, LoadOptions, MediaOptions, RemoteOptions
from mmchat.testing import FakeEngine
from tests.support.helpers import GREEDY_ARGS, THREADS, invoke, invoke_real, model_args
from tests.support.stubserver import serve

HI = [{"role": "user", "content": "hi"}]


# -- the environment, read at the edge ----------------------------------------------------------


def test_a_cli_environment_without_a_key_sends_none_though_the_process_has_one(monkeypatch):
    """The bug of issue 25: the CLI's Environment had no key, yet os.environ's OPENAI_API_KEY was sent."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-process")
    monkeypatch.setenv("MMCHAT_API_KEY", "mm-process")
    with serve() as stub:
        keyless = invoke_real("ask", "hi", "--base-url", stub.url, environ={})
        keyed = invoke_real("ask", "hi", "--base-url", stub.url, environ={"OPENAI_API_KEY": "sk-env"})
    assert keyless.exit_code == keyed.exit_code == 0, keyless.output + keyed.output
    assert "Authorization" not in stub.headers[0]
    assert stub.headers[1]["Authorization"] == "Bearer sk-env"


def test_runner_open_reads_the_process_environment(monkeypatch):
    with serve() as stub:
        monkeypatch.setenv("MMCHAT_BASE_URL", stub.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-process")
        with Runner.open() as runner:
            runner.chat(HI)
        with Runner.open(api_key="given") as runner:  # the keyword wins over the environment
            runner.chat(HI)
    assert [h["Authorization"] for h in stub.headers] == ["Bearer sk-process", "Bearer given"]


def test_find_target_reads_only_the_mapping_it_is_given(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("MMCHAT_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-process")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    assert find_target(model) == Local(model, None)  # the process's MMCHAT_BASE_URL is not read here
    environ = {"MMCHAT_BASE_URL": "http://box:8080", "OPENAI_API_KEY": "sk-given"}
    assert find_target("big", environ=environ) == Server("http://box:8080", model="big", api_key="sk-given")
    remote = RemoteOptions(base_url="http://flag:1", api_key="flag", timeout=5, retries=0, server_kind="vllm")
    assert find_target(None, remote=remote, environ=environ) == Server(
        "http://flag:1", api_key="flag", kind="vllm", timeout=5, retries=0
    )
    with pytest.raises(mmchat.InputError, match="MMCHAT_BASE_URL 'ftp://x' is not valid"):
        find_target(None, environ={"MMCHAT_BASE_URL": "ftp://x"})


def test_targets_are_frozen_values():
    target = Server("http://box:8080", model="big")
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.url = "http://other"  # type: ignore[misc]
    assert dataclasses.replace(target, model="small") == Server("http://box:8080", model="small")


# -- the Runner: a narrow constructor, Runner.open, and the seed's forms -----------------------------


def test_runner_open_and_the_seeds_forms_reach_the_same_server():
    with serve() as stub:
        for runner in (
            Runner.open(base_url=stub.url, api_key="k", timeout=5),
            Runner(base_url=stub.url, api_key="k", timeout=5),  # the seed's form
            Runner(Server(stub.url, api_key="k", timeout=5)),  # the narrow form
        ):
            with runner:
                assert runner.chat(HI).choices[0].message.content == "hi"
    assert [h["Authorization"] for h in stub.headers] == ["Bearer k"] * 3


def test_the_narrow_runner_carries_the_values_it_is_given():
    load, media = LoadOptions(n_ctx=1024), MediaOptions(image_max_side=256)
    generation = GenerationOptions(max_tokens=3)
    runner = Runner(engine=FakeEngine(), load=load, media=media, generation=generation)
    assert runner.load is load and runner.media is media and runner.generation is generation
    seed = Runner(engine=FakeEngine(), n_ctx=1024, image_max_side=256)  # the seed's keywords, built once
    assert seed.load == load and seed.media == media


def test_the_seeds_keywords_are_checked_as_before():
    with pytest.raises(mmchat.InputError, match="unknown option 'n_cxt'"):
        Runner(engine=FakeEngine(), n_cxt=1024)
    with pytest.raises(mmchat.InputError, match="n_ctx=4 is not valid"):
        Runner.open(engine=FakeEngine(), n_ctx=4)
    with pytest.raises(mmchat.InputError, match="MediaPolicy is given as policy="):
        Runner(engine=FakeEngine(), media=mmchat.MediaPolicy())


def test_runner_open_loads_a_local_pair_as_the_seeds_forms_do(models):
    options = dict(n_ctx=1024, threads=THREADS)
    local = Local(models["llm"], models["mmproj-vision"])
    load = LoadOptions(n_ctx=1024, threads=THREADS, cache=False)
    greedy = dict(temperature=0, max_tokens=6)
    answers = []
    for runner in (
        Runner.open(str(models["llm"]), models["mmproj-vision"], cache=False, **options),
        Runner(model=str(models["llm"]), mmproj=str(models["mmproj-vision"]), cache=False, **options),
        Runner(models["llm"], models["mmproj-vision"], cache=False, **options),
        Runner(local, load=load),
    ):
        with runner:
            assert runner.capabilities().vision
            answers.append(runner.chat(HI, **greedy).choices[0].message.content)
    assert len(set(answers)) == 1


def test_the_seeds_which_form_and_runner_open_load_the_same_files(models):
    which = mmchat.Which.GGUF(quantized_model_id=str(models["llm"].parent), quantized_filename=models["llm"].name)
    greedy = dict(temperature=0, max_tokens=6)
    answers = []
    for runner in (
        Runner(which=which, n_ctx=512, threads=THREADS, cache=False),
        Runner.open(which=which, n_ctx=512, threads=THREADS, cache=False),
    ):
        with runner:
            answers.append(runner.chat(HI, **greedy).choices[0].message.content)
    assert answers[0] == answers[1]


# -- options built once at the edge ------------------------------------------------------------------


@pytest.fixture
def builds(monkeypatch):
    """How often each options class is constructed (dataclasses.replace constructs too)."""
    counts = {GenerationOptions: 0, RemoteOptions: 0, LoadOptions: 0}
    for cls in counts:
        original = cls.__post_init__

        def counted(self, _original=original, _cls=cls):
            counts[_cls] += 1 if type(self) is _cls else 0
            _original(self)

        monkeypatch.setattr(cls, "__post_init__", counted)
    return counts


def test_one_ask_builds_each_option_once(builds):
    result, _ = invoke("ask", "hi", *GREEDY_ARGS)
    assert result.exit_code == 0, result.output
    assert builds == {GenerationOptions: 1, RemoteOptions: 1, LoadOptions: 1}


def test_one_local_ask_on_a_model_builds_each_option_once(models, builds):
    result = invoke_real(
        "ask",
        "hi",
        *model_args(models, None),
        "--ctx-size",
        "512",
        "--no-cache",
    )
    assert result.exit_code == 0, result.output
    assert builds == {GenerationOptions: 1, RemoteOptions: 1, LoadOptions: 1}


# -- diagnostics through logging ---------------------------------------------------------------------


@pytest.fixture
def python_users_logging(monkeypatch):
    """The `mmchat` logger as a Python user's process has it: no CLI handler, records propagate."""
    logger = logging.getLogger("mmchat")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "level", logging.NOTSET)


def test_a_python_user_sees_the_librarys_warning_in_their_logging(caplog, python_users_logging):
    with serve() as stub, caplog.at_level(logging.WARNING):
        Runner.open(base_url=stub.url, mmproj="mmproj.gguf").close()
    (record,) = [r for r in caplog.records if r.name.startswith("mmchat")]
    assert record.levelno == logging.WARNING and record.name == "mmchat.models"
    assert record.getMessage() == (
        f"--mmproj mmproj.gguf is not used: base_url= ({stub.url}) is a server, which encodes media with its own projector"
    )


def test_the_cli_prints_the_same_warning_through_its_handler():
    with serve() as stub:
        said = invoke_real("ask", "hi", "--base-url", stub.url, "--mmproj", "p.gguf")
        quiet = invoke_real("ask", "hi", "--base-url", stub.url, "--mmproj", "p.gguf", "-q")
    assert said.exit_code == quiet.exit_code == 0, said.output
    line = f"mmchat: warning: --mmproj p.gguf is not used: --base-url ({stub.url}) is a server"
    assert said.stderr.startswith(line) and quiet.stderr.startswith(line)  # -q keeps warnings, drops notices


def test_an_admin_command_logs_through_the_handler():
    from mmchat.models import registry

    registry.user_file().parent.mkdir(parents=True, exist_ok=True)
    registry.user_file().write_text('[models."x"\nrepo = ')
    result, _ = invoke("models", "--json")
    assert result.exit_code == 0
    assert result.stderr.startswith(f"mmchat: warning: ignoring {registry.user_file()}: ")
    assert result.stderr.count("\n") == 1  # once, though `models` reads the registry for the list and the default


@pytest.mark.model  # a process of its own: no CLI, only the user's logging.basicConfig
def test_logging_basicconfig_shows_the_warning_in_a_plain_python_process(tmp_path):
    import subprocess
    import sys

    script = (
        "import logging, sys\n"
        "logging.basicConfig(format='%(levelname)s %(name)s: %(message)s')\n"
        "from mmchat import Runner\n"
        "Runner.open(base_url=sys.argv[1], mmproj='p.gguf').close()\n"
    )
    with serve() as stub:
        done = subprocess.run([sys.executable, "-c", script, stub.url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        f"WARNING mmchat.models: --mmproj p.gguf is not used: base_url= ({stub.url}) is a server, "
        "which encodes media with its own projector\n"
    )


# -- no environment read outside the edge ------------------------------------------------------------

PACKAGE = Path(mmchat.__file__).parent
#: the edge: the CLI's terminal (env.py) and commands (cli/), and config.environ, the Python API's one reader
EDGE = {"env.py", "config.py"}
EDGE_PACKAGES = {"cli"}


def _reads_of_the_environment(path: Path) -> list[int]:
    """Lines that read os.environ or os.getenv (as `os.x`, or imported by name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb", "getenvb"):
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(a.name in ("environ", "getenv", "environb", "getenvb") for a in node.names):
                lines.append(node.lineno)
    return lines


def test_no_module_outside_the_edge_reads_the_environment():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name in EDGE or name.split("/")[0] in EDGE_PACKAGES:
            continue
        if lines := _reads_of_the_environment(path):
            found[name] = lines
    assert found == {}
    assert _reads_of_the_environment(PACKAGE / "config.py")  # the walk does see a read


def test_the_runner_does_not_import_the_clis_environment():
    tree = ast.parse((PACKAGE / "runner.py").read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "env" not in imported and "mmchat.env" not in imported
