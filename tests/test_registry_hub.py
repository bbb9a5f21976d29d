"""The registry against the real repositories' listings (tests/support/hub_listings.py) on the fake hub:
pulls take the files the Hub has, and `mmchat models --check` says when models.toml and the Hub differ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmchat.cli import app
from mmchat.env import Environment, use
from mmchat.models import pulls, registry
from mmchat.models.check import check_entry
from mmchat.models.registry import QuantNotFound
from mmchat.testing import FakeEngine
from tests.support.fakehub import FakeHub, Listed, closed_port, use_hub
from tests.support.helpers import warned
from tests.support.hub_listings import GEMMA4_E2B_FIRST_REVISION, LISTINGS, OTHER_LISTINGS, with_bytes

E2B = "ggml-org/gemma-4-E2B-it-GGUF"
Q4_0, PROJ = b"GGUF gemma-4-E2B-it-Q4_0" * 50, b"GGUF mmproj-gemma-4-E2B-it-Q8_0" * 20


def sizes(listing: dict) -> dict[str, int]:
    return {name: f.size if isinstance(f, Listed) else len(f) for name, f in listing.items()}


def write_user_file(text: str) -> None:
    registry.user_file().parent.mkdir(parents=True, exist_ok=True)
    registry.user_file().write_text(text, encoding="utf-8")


def fetched(hub: FakeHub) -> list[str]:
    return sorted(p.rsplit("/", 1)[-1] for m, p, _ in hub.requests if m == "GET" and "/resolve/" in p)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The fake hub serving every listing; Gemma 4 E2B's default pair has bytes, the rest is listed only."""
    repos = {**LISTINGS, **OTHER_LISTINGS}
    repos[E2B] = with_bytes(LISTINGS[E2B], {"gemma-4-E2B-it-Q4_0.gguf": Q4_0, "mmproj-gemma-4-E2B-it-Q8_0.gguf": PROJ})
    with FakeHub(repos) as fake:
        use_hub(monkeypatch, fake.url, tmp_path / "hf")
        yield fake


@pytest.fixture
def listed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The fake hub serving the listings as written: sizes and hashes, no bytes."""
    with FakeHub(dict(LISTINGS)) as fake:
        use_hub(monkeypatch, fake.url, tmp_path / "hf")
        yield fake


# -- every entry of models.toml against the listing written for its repository ------------------


def test_every_registry_entry_resolves_against_its_repositorys_listing():
    """models.toml's own quant (no fallback), a projector for its modalities, and size_gb within rounding."""
    with warned(pytest.fail):
        entries = list(registry.load_registry().entries.values())
    assert len(entries) == 14
    for entry in entries:
        assert entry.repo in LISTINGS, f"no listing written for {entry.repo}"
        result = check_entry(entry, sizes(LISTINGS[entry.repo]))
        assert result.ok, result.line()
        assert result.model is not None and (result.mmproj is not None) == bool(entry.modalities), result.line()


def test_the_default_is_small_and_its_files_are_the_ones_the_readme_names():
    with warned(pytest.fail):
        reg = registry.load_registry()
    default = reg.get(reg.default)
    result = check_entry(default, sizes(LISTINGS[default.repo]))
    assert (result.model, result.mmproj) == ("gemma-4-E2B-it-Q4_0.gguf", "mmproj-gemma-4-E2B-it-Q8_0.gguf")
    assert result.total_bytes == 2_841_481_184 + 557_367_776  # 3.4 GB: a laptop's download
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    run_it = readme[readme.index("## Run it") : readme.index("## Batches")]
    assert all(name in run_it for name in (result.model, result.mmproj, default.repo, "3.4 GB"))


# -- pulls ---------------------------------------------------------------------------------------


def test_pulling_the_default_takes_q4_0_and_its_projector_and_nothing_else(hub: FakeHub):
    warnings: list[str] = []
    with warned(warnings.append):
        got = pulls.download_model("gemma-4-E2B-it", progress=False)
    assert got.model.name == "gemma-4-E2B-it-Q4_0.gguf" and got.model.read_bytes() == Q4_0
    assert got.mmproj is not None and got.mmproj.read_bytes() == PROJ
    assert warnings == [] and fetched(hub) == ["gemma-4-E2B-it-Q4_0.gguf", "mmproj-gemma-4-E2B-it-Q8_0.gguf"]
    assert registry.find_local("gemma-4-E2B-it") == got


def test_a_registry_quant_the_hub_lacks_falls_back_with_one_warning_and_is_found_offline(
    hub: FakeHub, monkeypatch, tmp_path
):
    write_user_file('[models."gemma-4-E2B-it"]\nquant = "Q4_K_M"\n')  # what models.toml said before
    warnings: list[str] = []
    with warned(warnings.append):
        got = pulls.find_files("gemma-4-E2B-it", pull=True, progress=False)
    assert got.model.name == "gemma-4-E2B-it-Q4_0.gguf" and got.entry is not None and got.entry.quant == "Q4_0"
    assert warnings == [
        f"{E2B} has no Q4_K_M model file: taking Q4_0, the first it has of "
        "Q4_K_M, Q4_0, Q4_K_S, Q5_K_M, Q5_0, Q6_K, Q8_0, F16, BF16"
    ]
    assert fetched(hub) == ["gemma-4-E2B-it-Q4_0.gguf", "mmproj-gemma-4-E2B-it-Q8_0.gguf"]  # no drafter, no BF16
    use_hub(monkeypatch, closed_port(), tmp_path / "hf")  # offline now: the cache alone answers
    assert registry.find_local("gemma-4-E2B-it") == got
    assert dict((e.name, d) for e, d in registry.list_models())["gemma-4-E2B-it"] is True


@pytest.mark.parametrize("spec, quant", [("gemma-4-E2B-it", "Q4_K_M"), (f"hf:{E2B}:q4_k_m", None)])
def test_a_quant_the_user_names_never_falls_back_and_the_hint_lists_the_nearest_first(hub, spec, quant):
    with pytest.raises(QuantNotFound) as e:
        with warned(pytest.fail):
            pulls.download_model(spec, quant=quant, progress=False)
    assert str(e.value) == (
        f"{E2B} has no Q4_K_M model file: it has Q4_0, Q8_0, BF16 (e.g. `mmchat pull gemma-4-E2B-it --quant Q4_0`)"
    )  # the hf: form is a registry repo
    assert e.value.quants == ["Q4_0", "Q8_0", "BF16"] and fetched(hub) == []


def test_the_first_lower_case_revision_falls_back_to_q8_0_with_gemma_4s_bf16_projector(monkeypatch, tmp_path):
    listing = with_bytes(
        GEMMA4_E2B_FIRST_REVISION,
        {"gemma-4-e2b-it-Q8_0.gguf": b"GGUF q8", "mmproj-gemma-4-e2b-it-bf16.gguf": b"GGUF bf16"},
    )
    with FakeHub({E2B: listing}) as fake:
        use_hub(monkeypatch, fake.url, tmp_path / "hf")
        warnings: list[str] = []
        with warned(warnings.append):
            got = pulls.download_model("gemma-4-E2B-it", progress=False)
    assert (got.model.name, got.mmproj.name) == ("gemma-4-e2b-it-Q8_0.gguf", "mmproj-gemma-4-e2b-it-bf16.gguf")
    assert len(warnings) == 1 and "has no Q4_0 model file: taking Q8_0" in warnings[0]


def test_a_split_model_is_pulled_whole(hub: FakeHub):
    repo = "Qwen/Qwen2.5-7B-Instruct-GGUF"
    parts = {
        name: b"GGUF part %d" % i
        for i, name in enumerate(sorted(n for n in OTHER_LISTINGS[repo] if n.endswith(".gguf")))
    }
    hub.repos[repo] = with_bytes(OTHER_LISTINGS[repo], parts)
    with warned(pytest.fail):
        got = pulls.download_model(f"hf:{repo}", progress=False)  # Q4_K_M, as llama.cpp's -hf default
    assert got.model.name == "qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf" and got.mmproj is None
    assert [p.name for p in registry.files_of(got)] == sorted(parts) and fetched(hub) == sorted(parts)


def mmchat(*args: str):
    env = Environment(engine=FakeEngine(), stdin_isatty=False, stdout_isatty=False, stderr_isatty=False, environ={})
    with use(env):
        return CliRunner().invoke(app, list(args))


def test_mmchat_pull_says_which_quant_it_took_in_one_line_and_a_named_one_fails_with_exit_2(hub: FakeHub):
    write_user_file('[models."gemma-4-E2B-it"]\nquant = "Q4_K_M"\n')
    named = mmchat("pull", "gemma-4-E2B-it", "--quant", "Q4_K_M", "-q")
    assert named.exit_code == 2 and named.stdout == ""
    assert named.stderr == (
        f"mmchat: error: {E2B} has no Q4_K_M model file: it has Q4_0, Q8_0, BF16 "
        "(e.g. `mmchat pull gemma-4-E2B-it --quant Q4_0`)\n"
    )
    pulled = mmchat("pull", "gemma-4-E2B-it")
    assert pulled.exit_code == 0 and pulled.stdout == ""
    warning, ready = pulled.stderr.splitlines()[-2:]
    assert (
        warning == f"mmchat: warning: {E2B} has no Q4_K_M model file: taking Q4_0, the first it has of "
        "Q4_K_M, Q4_0, Q4_K_S, Q5_K_M, Q5_0, Q6_K, Q8_0, F16, BF16"
    )
    assert ready.startswith("mmchat: gemma-4-E2B-it is ready: ") and ready.endswith("gemma-4-E2B-it-Q4_0.gguf")


# -- mmchat models --check -----------------------------------------------------------------------


def check(*args: str):
    return mmchat("models", "--check", *args)


def test_check_passes_when_every_entry_is_on_the_hub_as_written(listed: FakeHub):
    result = check()
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 14 and all(line.startswith("OK    ") for line in lines) and result.stderr == ""
    assert (
        "OK    gemma-4-E2B-it (ggml-org/gemma-4-E2B-it-GGUF): gemma-4-E2B-it-Q4_0.gguf + "
        "mmproj-gemma-4-E2B-it-Q8_0.gguf, 3.40 GB (size_gb 3.4)"
    ) in lines
    assert fetched(listed) == []  # listings only


def test_check_names_each_miss_and_exits_1(listed: FakeHub):
    write_user_file(
        '[models."gemma-4-E2B-it"]\nquant = "Q4_K_M"\n'
        '[models."qwen2.5-omni-3b"]\nsize_gb = 3.5\n'
        '[models.gone]\nrepo = "ggml-org/no-such-GGUF"\nquant = "Q4_K_M"\nmodalities = ["image"]\n'
        '[models.served]\nbase_url = "http://127.0.0.1:9/v1"\n'
    )
    result = check()
    assert result.exit_code == 1
    misses = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("MISS")}
    assert set(misses) == {"gemma-4-E2B-it", "qwen2.5-omni-3b", "gone"}
    assert misses["gemma-4-E2B-it"].endswith("no Q4_K_M model file (it has Q4_0, Q8_0, BF16; a pull would take Q4_0)")
    assert misses["qwen2.5-omni-3b"].endswith("the files are 4.70 GB, size_gb says 3.5")
    assert "no repository ggml-org/no-such-GGUF on Hugging Face" in misses["gone"]
    assert len(result.stdout.splitlines()) == 15  # the server-side entry is not the Hub's
    assert result.stderr == (
        "mmchat: error: 3 of 15 models.toml entries do not match the Hub: gemma-4-E2B-it, qwen2.5-omni-3b, gone\n"
    )


def test_check_as_json(listed: FakeHub):
    write_user_file('[models."voxtral-mini-3b"]\nquant = "F16"\n')
    result = check("--json")
    assert result.exit_code == 1
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["voxtral-mini-3b"]["ok"] is False and rows["voxtral-mini-3b"]["model"] is None
    assert rows["qwen3-vl-2b"] == {
        "name": "qwen3-vl-2b",
        "repo": "Qwen/Qwen3-VL-2B-Instruct-GGUF",
        "ok": True,
        "model": "Qwen3VL-2B-Instruct-Q4_K_M.gguf",
        "mmproj": "mmproj-Qwen3VL-2B-Instruct-F16.gguf",
        "bytes": 1_107_409_952 + 819_394_848,
        "size_gb": 1.9,
        "problems": [],
    }


def test_check_without_a_network_is_one_line_exit_1(monkeypatch, tmp_path):
    use_hub(monkeypatch, closed_port(), tmp_path / "hf")
    result = check()
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("mmchat: error: cannot reach Hugging Face") and result.stderr.count("\n") == 1
