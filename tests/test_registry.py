"""registry.py: names, paths and hf: forms resolve offline; the user file merges; pulls work against a fake hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmchat.errors import ModelNotFound, NetworkError
from mmchat.models import hubfiles, pulls, registry
from mmchat.models.registry import ModelEntry, ModelFiles, NotDownloaded
from tests.support.fakehub import FakeHub, closed_port, put_in_cache, use_hub
from tests.support.helpers import warned


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Own user dir, own (empty) HF cache, and a hub that refuses connections: nothing real is touched."""
    monkeypatch.setenv("MMCHAT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(registry.ENV_MODEL, raising=False)
    return use_hub(monkeypatch, closed_port(), tmp_path / "hf")


def write_user_file(text: str) -> Path:
    path = registry.user_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def one_line(e: BaseException) -> str:
    message = str(e)
    assert message and "\n" not in message
    return message


# -- the bundled registry ---------------------------------------------------------------------


def test_bundled_registry_parses_and_every_entry_is_complete():
    with warned(pytest.fail):
        reg = registry.load_registry()
    for name in (
        "gemma-3-4b-it",
        "gemma-4-E2B-it",
        "gemma-4-E4B-it",
        "qwen2.5-vl-3b",
        "qwen2.5-vl-7b",
        "qwen3-vl-2b",
        "smolvlm2-500m-video",
        "internvl3-1b",
        "moondream2",
        "ultravox-v0_5-llama-3_2-1b",
        "voxtral-mini-3b",
        "qwen2.5-omni-3b",
    ):
        assert reg.get(name) is not None, name
    for entry in reg.entries.values():
        owner, _, repo = entry.repo.partition("/")
        assert owner in ("ggml-org", "Qwen") and repo.endswith("-GGUF"), entry
        assert entry.quant and entry.notes and "\n" not in entry.notes, entry
        assert entry.modalities and set(entry.modalities) <= set(registry.MODALITIES), entry
        assert entry.context >= 2048 and entry.size_gb and 0.1 < entry.size_gb < 20, entry
    audio = {e.name for e in reg.entries.values() if "audio" in e.modalities}
    assert {"ultravox-v0_5-llama-3_2-1b", "voxtral-mini-3b", "qwen2.5-omni-3b", "gemma-4-E2B-it"} <= audio


def test_default_exists_and_takes_images_and_audio():
    with warned(pytest.fail):
        reg = registry.load_registry()
    default = reg.get(reg.default)
    assert default is not None and default.name == "gemma-4-E2B-it"
    assert {"image", "audio"} <= set(default.modalities)


# -- paths, names and hf: forms ---------------------------------------------------------------


def test_an_existing_path_is_that_file(tmp_path: Path):
    model = tmp_path / "my model.gguf"
    model.write_bytes(b"GGUF")
    assert registry.find_local(model) == ModelFiles(model, None)
    assert registry.find_local(str(model)).model == model


@pytest.mark.parametrize("given", ["missing.gguf", "models/missing", "./nothing-here.GGUF"])
def test_a_missing_path_says_file_not_found(given: str):
    with pytest.raises(ModelNotFound) as e:
        registry.find_local(given)
    assert one_line(e.value) == f"model file not found: {given}"


def test_a_directory_asks_for_the_file_inside(tmp_path: Path):
    with pytest.raises(ModelNotFound, match="directory.*give the .gguf file inside"):
        registry.find_local(tmp_path)


def test_a_name_resolves_from_the_hf_cache_case_insensitively(isolated: Path):
    snapshot = put_in_cache(
        isolated,
        "Qwen/Qwen3-VL-2B-Instruct-GGUF",
        {
            "Qwen3VL-2B-Instruct-Q4_K_M.gguf": b"model q4",
            "Qwen3VL-2B-Instruct-Q8_0.gguf": b"model q8",
            "mmproj-Qwen3VL-2B-Instruct-Q8_0.gguf": b"proj q8",
            "mmproj-Qwen3VL-2B-Instruct-F16.gguf": b"proj f16",
        },
    )
    got = registry.find_local("QWEN3-VL-2B")
    assert got.model == snapshot / "Qwen3VL-2B-Instruct-Q4_K_M.gguf"
    assert got.mmproj == snapshot / "mmproj-Qwen3VL-2B-Instruct-F16.gguf"
    assert got.name == "qwen3-vl-2b" and got.entry is not None and "image" in got.entry.modalities
    assert registry.find_local("qwen3-vl-2b", quant="q8_0").model.read_bytes() == b"model q8"
    assert dict((e.name, d) for e, d in registry.list_models())["qwen3-vl-2b"] is True


def test_hf_forms_resolve_with_and_without_a_quant(isolated: Path):
    snapshot = put_in_cache(isolated, "some-org/thing-GGUF", {"thing-Q8_0.gguf": b"m", "mmproj-thing-f16.gguf": b"p"})
    got = registry.find_local("hf:some-org/thing-GGUF:Q8_0")
    assert got == ModelFiles(snapshot / "thing-Q8_0.gguf", snapshot / "mmproj-thing-f16.gguf", got.name, got.entry)
    assert got.entry is not None and got.entry.repo == "some-org/thing-GGUF" and got.entry.quant == "Q8_0"
    # without :QUANT it means Q4_K_M, else the next there (llama.cpp's -hf tries Q4_K_M, then Q8_0)
    assert registry.find_local("hf:some-org/thing-GGUF") == got
    with pytest.raises(NotDownloaded) as e:  # a quant the user names is that quant
        registry.find_local("hf:some-org/thing-GGUF:q4_k_m")
    assert "run `mmchat pull hf:some-org/thing-GGUF:Q4_K_M`" in one_line(e.value)
    with pytest.raises(NotDownloaded) as e:
        registry.find_local("hf:other-org/thing-GGUF")
    assert "run `mmchat pull hf:other-org/thing-GGUF`" in one_line(e.value)
    with pytest.raises(ModelNotFound, match="write hf:owner/name"):
        registry.find_local("hf:no-slash")


def test_hf_form_of_a_registry_repo_keeps_its_metadata(isolated: Path):
    put_in_cache(
        isolated, "ggml-org/gemma-3-4b-it-GGUF", {"gemma-3-4b-it-Q4_K_M.gguf": b"m", "mmproj-model-f16.gguf": b"p"}
    )
    got = registry.find_local("hf:ggml-org/gemma-3-4b-it-GGUF")
    assert got.entry is not None and got.entry.name == "gemma-3-4b-it" and got.entry.modalities == ("image",)


def test_mmchat_model_env_is_used_when_no_model_is_given(tmp_path: Path):
    """MMCHAT_MODEL is read at the edge (find_target, from the mapping the CLI or Runner.open passes)."""
    from mmchat.models.target import Local, find_target

    model = tmp_path / "env.gguf"
    model.write_bytes(b"GGUF")
    assert find_target(None, environ={registry.ENV_MODEL: str(model)}) == Local(model, None)
    assert find_target("", environ={registry.ENV_MODEL: str(model)}).model == model
    with pytest.raises(NotDownloaded, match="'gemma-4-E2B-it' is not downloaded"):
        find_target(None, environ={})
    with pytest.raises(NotDownloaded, match="'gemma-4-E2B-it' is not downloaded"):
        registry.find_local(None)


def test_not_downloaded_names_the_exact_pull_command():
    with pytest.raises(NotDownloaded) as e:
        registry.find_local("gemma-3-4b-it")
    assert isinstance(e.value, ModelNotFound)
    assert one_line(e.value) == (
        "model 'gemma-3-4b-it' is not downloaded: run `mmchat pull gemma-3-4b-it` (about 3.3 GB) or add --pull"
    )


def test_a_model_without_its_projector_counts_as_not_downloaded(isolated: Path):
    put_in_cache(isolated, "ggml-org/gemma-3-4b-it-GGUF", {"gemma-3-4b-it-Q4_K_M.gguf": b"m"})
    with pytest.raises(NotDownloaded):
        registry.find_local("gemma-3-4b-it")


def test_an_unknown_name_lists_close_matches():
    with pytest.raises(ModelNotFound) as e:
        registry.find_local("gemma-3-4b")
    message = one_line(e.value)
    assert message.startswith("unknown model 'gemma-3-4b': did you mean gemma-3-4b-it")
    assert "`mmchat models`" in message
    with pytest.raises(ModelNotFound, match="unknown model 'zzzz': `mmchat models`"):
        registry.find_local("zzzz")


# -- the user's file ----------------------------------------------------------------------------


def test_the_user_file_overrides_an_entry_adds_one_and_sets_the_default():
    write_user_file(
        'default = "my-model"\n'
        '[models."gemma-3-4b-it"]\nquant = "Q8_0"\n'
        '[models."my-model"]\nrepo = "me/my-model-GGUF"\nquant = "Q5_K_M"\nmodalities = ["audio"]\n'
    )
    with warned(pytest.fail):
        reg = registry.load_registry()
    gemma = reg.get("gemma-3-4b-it")
    assert gemma is not None and gemma.quant == "Q8_0"
    assert gemma.repo == "ggml-org/gemma-3-4b-it-GGUF" and gemma.modalities == ("image",)  # the rest is kept
    mine = reg.get("MY-MODEL")
    assert mine == ModelEntry("my-model", "me/my-model-GGUF", "Q5_K_M", ("audio",), mine.context, None, "")
    assert reg.default == "my-model" and len(reg.entries) == len(registry.load_registry().entries)
    with pytest.raises(NotDownloaded, match="`mmchat pull my-model` or add --pull"):
        registry.find_local(None)


def test_a_broken_user_file_warns_once_and_the_bundled_registry_still_works():
    path = write_user_file('[models."x"\nrepo = ')
    warnings: list[str] = []
    with warned(warnings.append):
        reg = registry.load_registry()
    assert len(warnings) == 1 and warnings[0].startswith(f"ignoring {path}: ") and "\n" not in warnings[0]
    assert reg.default == "gemma-4-E2B-it" and reg.get("gemma-3-4b-it") is not None


def test_a_bad_user_entry_is_skipped_with_a_warning():
    write_user_file(
        'default = "nope"\n'
        '[models."bad"]\nrepo = "a/b"\nquant = "Q4_K_M"\nmodalities = ["smell"]\n'
        '[models."good"]\nrepo = "a/good-GGUF"\nquant = "Q4_K_M"\n'
    )
    warnings: list[str] = []
    with warned(warnings.append):
        reg = registry.load_registry()
    assert reg.get("good") is not None and reg.get("bad") is None and reg.default == "gemma-4-E2B-it"
    assert [w.split(":")[0] for w in warnings] == [
        "ignoring model 'bad' in " + str(registry.user_file()),
        "ignoring default 'nope' in " + str(registry.user_file()),
    ]


# -- pulling from a fake hub --------------------------------------------------------------------

TINY = {
    "README.md": b"# tiny\n",
    "tiny-Q4_K_M.gguf": b"GGUF" + bytes(range(256)) * 40,
    "tiny-Q8_0.gguf": b"GGUF q8" * 10,
    "mmproj-tiny-Q8_0.gguf": b"GGUF proj q8",
    "mmproj-tiny-f16.gguf": b"GGUF proj f16" * 100,
}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with FakeHub({"test-org/tiny-GGUF": dict(TINY)}) as fake:
        use_hub(monkeypatch, fake.url, tmp_path / "hf")
        write_user_file(
            '[models."tiny"]\nrepo = "test-org/tiny-GGUF"\nquant = "Q4_K_M"\nmodalities = ["image"]\nsize_gb = 0.01\n'
        )
        yield fake


def test_pull_downloads_the_model_and_its_projector_with_progress_on_stderr(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("TQDM_POSITION", "-1")  # tqdm draws bars on a non-TTY stderr only when asked
    with pytest.raises(NotDownloaded):
        registry.find_local("tiny")
    got = pulls.download_model("tiny")
    assert got.model.name == "tiny-Q4_K_M.gguf" and got.model.read_bytes() == TINY["tiny-Q4_K_M.gguf"]
    assert got.mmproj is not None and got.mmproj.read_bytes() == TINY["mmproj-tiny-f16.gguf"]
    assert got.name == "tiny" and got.entry is not None
    out, err = capfd.readouterr()
    assert out == "" and "tiny-Q4_K_M.gguf" in err and "100%" in err
    assert registry.find_local("tiny") == got  # found offline afterwards
    assert dict((e.name, d) for e, d in registry.list_models())["tiny"] is True
    fetched = {p.rsplit("/", 1)[-1] for m, p, _ in hub.requests if m == "GET" and "/resolve/" in p}
    assert fetched == {"tiny-Q4_K_M.gguf", "mmproj-tiny-f16.gguf"}  # nothing else


def test_pull_with_progress_off_is_quiet(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capfd):
    from huggingface_hub.utils import are_progress_bars_disabled

    monkeypatch.setenv("TQDM_POSITION", "-1")
    got = pulls.download_model("hf:test-org/tiny-GGUF:Q8_0", progress=False)
    assert got.model.read_bytes() == TINY["tiny-Q8_0.gguf"] and got.name == "tiny"
    assert capfd.readouterr().err == ""
    assert not are_progress_bars_disabled()  # switched back on afterwards


def test_an_interrupted_download_resumes_with_a_range_request(hub: FakeHub, monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub import constants

    # huggingface_hub writes what it received in 10 MB chunks; small chunks let a 10 kB file show the
    # same thing a real multi-GB download does: the bytes before the cut are kept, the rest is asked for.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    hub.drop_once.add("tiny-Q4_K_M.gguf")
    got = pulls.download_model("tiny", progress=False)
    assert got.model.read_bytes() == TINY["tiny-Q4_K_M.gguf"]
    (resumed,) = hub.range_requests("tiny-Q4_K_M.gguf")
    start = int(resumed.removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= len(TINY["tiny-Q4_K_M.gguf"]) // 2


def test_resolve_pulls_only_when_asked(hub: FakeHub):
    with pytest.raises(NotDownloaded):
        pulls.find_files("tiny")
    got = pulls.find_files("tiny", pull=True, progress=False)
    assert got.model.read_bytes() == TINY["tiny-Q4_K_M.gguf"]


def test_a_repo_without_the_quant_names_the_quants_it_has(hub: FakeHub):
    with pytest.raises(ModelNotFound) as e:
        pulls.download_model("tiny", quant="Q5_K_S", progress=False)
    assert one_line(e.value) == (
        "test-org/tiny-GGUF has no Q5_K_S model file: it has Q4_K_M, Q8_0 (e.g. `mmchat pull tiny --quant Q4_K_M`)"
    )


def test_an_unknown_repo_is_model_not_found(hub: FakeHub):
    with pytest.raises(ModelNotFound, match="no repository test-org/nothing-GGUF on Hugging Face"):
        pulls.download_model("hf:test-org/nothing-GGUF", progress=False)


def test_no_network_is_one_line_network_error(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    use_hub(monkeypatch, closed_port(), tmp_path / "hf")
    with pytest.raises(NetworkError) as e:
        pulls.download_model("tiny", progress=False)
    assert one_line(e.value).startswith("cannot reach Hugging Face to download tiny (no network?): ")


def test_offline_mode_is_network_error(hub: FakeHub, monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(NetworkError, match="HF_HUB_OFFLINE"):
        pulls.download_model("tiny", progress=False)
    assert hub.requests == []


def test_a_path_cannot_be_pulled():
    with pytest.raises(ModelNotFound, match="cannot pull a file path"):
        pulls.download_model("./model.gguf")


def test_runner_takes_a_registry_name_and_pulls_it_when_asked(hub: FakeHub, models, monkeypatch):
    """The Python API resolves names like the CLI: not downloaded -> the pull hint; pull=True fetches."""
    from mmchat import Runner

    hub.repos["test-org/real-GGUF"] = {
        "real-Q4_K_M.gguf": models["llm"].read_bytes(),
        "mmproj-real-f16.gguf": models["mmproj-vision"].read_bytes(),
    }
    write_user_file('[models.real]\nrepo = "test-org/real-GGUF"\nquant = "Q4_K_M"\nmodalities = ["image"]\n')
    with pytest.raises(NotDownloaded, match="mmchat pull real"):
        Runner("real")
    with Runner("real", pull=True, threads=2, n_ctx=512) as r:
        assert r.capabilities().vision and r.engine.mmproj_path.name == "mmproj-real-f16.gguf"


@pytest.mark.model
def test_a_pull_killed_mid_file_resumes_where_it_stopped(hub: FakeHub):
    """huggingface_hub 2.x starts a cut-off file from zero; mmchat keeps the bytes and asks for the rest."""
    import subprocess
    import sys
    import time

    from huggingface_hub import constants

    model = b"GGUF" + bytes(range(256)) * (24 * 4096)  # 24 MiB: the client writes it in 10 MB chunks
    hub.repos["test-org/big-GGUF"] = {"big-Q4_K_M.gguf": model, "mmproj-big-f16.gguf": b"GGUF proj"}
    write_user_file('[models.big]\nrepo = "test-org/big-GGUF"\nquant = "Q4_K_M"\nmodalities = ["image"]\n')
    hub.stall.add("big-Q4_K_M.gguf")
    first = subprocess.Popen(
        [sys.executable, "-m", "mmchat", "pull", "big", "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    cache = Path(constants.HF_HUB_CACHE)
    deadline = time.monotonic() + 60
    partial = None
    while time.monotonic() < deadline and partial is None:
        found = [p for p in cache.rglob("*.mmchat-partial") if p.stat().st_size > 0]
        partial = found[0] if found else None
        time.sleep(0.05)
    first.kill()  # mid-file, like a closed laptop
    first.wait(timeout=30)
    assert partial is not None
    kept = partial.stat().st_size
    hub.stall.clear()
    hub.released.set()
    got = pulls.download_model("big", progress=False)
    assert got.model.read_bytes() == model
    assert hub.range_requests("big-Q4_K_M.gguf") == [f"bytes={kept}-"]  # only the rest was asked for
    assert not list(cache.rglob("*.mmchat-partial"))
    assert registry.find_local("big") == got


def test_the_projector_beside_a_model_is_one_rule_for_every_way_of_naming_it(tmp_path):
    """Quantizations of one projector: the best (f16 > bf16 > q8_0); different projectors: none, said once."""
    model = tmp_path / "gemma-4-E2B-it-Q4_0.gguf"
    for name in (model.name, "mmproj-gemma-4-E2B-it-Q8_0.gguf", "mmproj-gemma-4-E2B-it-f16.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    assert hubfiles.projector_beside(model) == tmp_path / "mmproj-gemma-4-E2B-it-f16.gguf"
    (tmp_path / "mmproj-audio.gguf").write_bytes(b"GGUF")
    with warned() as said:
        assert hubfiles.projector_beside(model) is None
    assert len(said) == 1 and "give one with --mmproj" in said[0] and "mmproj-audio.gguf" in said[0]
