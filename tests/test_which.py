"""which.py: mistral.rs's `Which` + `in_situ_quant` resolve to GGUF files, offline from the cache or pulled."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from mmchat import MultimodalArchitecture, VisionArchitecture, Which
from mmchat.errors import InputError, ModelNotFound, NetworkError
from mmchat.models import registry
from mmchat.models.which import Architecture, find_files
from tests.support.fakehub import FakeHub, closed_port, put_in_cache, use_hub
from tests.support.gguf_models import GGUFBuilder
from tests.support.helpers import warned


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An own, empty Hugging Face cache with HF_HUB_OFFLINE=1: only what a test lays out is there."""
    from huggingface_hub import constants

    cache = use_hub(monkeypatch, closed_port(), tmp_path / "hf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def gguf(arch: str, **strings: str) -> bytes:
    """A header-only GGUF: enough for the metadata checks, never loaded."""
    builder = GGUFBuilder(arch)
    for key, value in strings.items():
        builder.string(key.replace("__", "."), value)
    with tempfile.TemporaryDirectory() as folder:
        return builder.write(Path(folder) / "header.gguf").read_bytes()


QWEN3VL = gguf("qwen3vl")
QWEN3VL_PROJ = gguf("clip", clip__projector_type="qwen3vl_merger")
GEMMA4 = gguf("gemma4")
GEMMA4_PROJ = gguf("clip", clip__vision__projector_type="gemma4v", clip__audio__projector_type="gemma4a")


def lay_out_qwen3vl(cache: Path) -> Path:
    return put_in_cache(
        cache,
        "Qwen/Qwen3-VL-4B-Instruct-GGUF",
        {
            "Qwen3VL-4B-Instruct-Q4_K_M.gguf": QWEN3VL,
            "Qwen3VL-4B-Instruct-Q8_0.gguf": QWEN3VL + b"\0",
            "mmproj-Qwen3VL-4B-Instruct-F16.gguf": QWEN3VL_PROJ,
            "mmproj-Qwen3VL-4B-Instruct-Q8_0.gguf": QWEN3VL_PROJ + b"\0",
        },
    )


def one_line(e: BaseException) -> str:
    assert str(e) and "\n" not in str(e)
    return str(e)


def test_every_registry_entry_names_the_model_its_ggufs_come_from():
    with warned(pytest.fail):
        reg = registry.load_registry()
    for entry in reg.entries.values():
        assert entry.original.count("/") == 1 and not entry.original.lower().endswith("gguf"), entry
    assert reg.by_original("Qwen/Qwen3-VL-4B-Instruct").repo == "Qwen/Qwen3-VL-4B-Instruct-GGUF"
    assert reg.by_original("google/gemma-4-E4B-it").repo == "ggml-org/gemma-4-E4B-it-GGUF"
    assert reg.by_original("qwen/qwen3-vl-4b-instruct").name == "qwen3-vl-4b"  # ids are case-insensitive on the Hub


def test_the_guides_model_id_and_bit_width_pick_the_gguf_from_the_cache(offline: Path):
    snapshot = lay_out_qwen3vl(offline)
    which = Which.MultimodalPlain(model_id="Qwen/Qwen3-VL-4B-Instruct", arch=MultimodalArchitecture.Qwen3VL)
    warnings: list[str] = []
    with warned(warnings.append):
        four = find_files(which, "4")
    assert four.model == snapshot / "Qwen3VL-4B-Instruct-Q4_K_M.gguf"
    assert four.mmproj == snapshot / "mmproj-Qwen3VL-4B-Instruct-F16.gguf"
    with warned(warnings.append):
        assert find_files(which, "8").model == snapshot / "Qwen3VL-4B-Instruct-Q8_0.gguf"
        assert find_files(which, "Q8_0").model.name == "Qwen3VL-4B-Instruct-Q8_0.gguf"
        assert find_files(which, None).model.name.endswith("Q4_K_M.gguf")  # the registry's quant
        old_name = Which.VisionPlain(model_id="Qwen/Qwen3-VL-4B-Instruct", arch=VisionArchitecture.Qwen3VL)
        assert find_files(old_name, "4") == four
    assert warnings == []  # the arch agrees with the GGUF


def test_gemma_4_maps_to_ggml_orgs_repo(offline: Path):
    snapshot = put_in_cache(
        offline,
        "ggml-org/gemma-4-E4B-it-GGUF",
        {
            "gemma-4-E4B-it-Q4_K_M.gguf": GEMMA4,
            "gemma-4-E4B-it-Q8_0.gguf": GEMMA4 + b"\0",
            "mmproj-gemma-4-E4B-it-f16.gguf": GEMMA4_PROJ,
        },
    )
    which = Which.MultimodalPlain(model_id="google/gemma-4-E4B-it", arch=MultimodalArchitecture.Gemma4)
    with warned(pytest.fail):
        got = find_files(which, "8")
    assert (
        got.model == snapshot / "gemma-4-E4B-it-Q8_0.gguf" and got.mmproj == snapshot / "mmproj-gemma-4-E4B-it-f16.gguf"
    )


def test_an_arch_that_contradicts_the_gguf_warns_in_one_line_naming_both(offline: Path):
    lay_out_qwen3vl(offline)
    warnings: list[str] = []
    with warned(warnings.append):
        got = find_files(
            Which.MultimodalPlain(model_id="Qwen/Qwen3-VL-4B-Instruct", arch=MultimodalArchitecture.Gemma3), "4"
        )
    assert got.model.name == "Qwen3VL-4B-Instruct-Q4_K_M.gguf"  # the GGUF still decides
    (warning,) = warnings
    assert one_line(Exception(warning)).startswith("arch=MultimodalArchitecture.Gemma3 but the GGUF is Qwen3VL")
    assert "qwen3vl_merger" in warning and "text model qwen3vl" in warning
    warnings.clear()
    with warned(warnings.append):
        find_files(Which.Plain(model_id="Qwen/Qwen3-VL-4B-Instruct", arch=Architecture.Qwen3), "4")
    assert warnings == [
        "arch=Architecture.Qwen3 but Qwen3VL-4B-Instruct-Q4_K_M.gguf is a qwen3vl model: running what the GGUF says"
    ]


def test_a_missing_quant_in_the_cache_lists_the_ones_there(offline: Path):
    put_in_cache(
        offline,
        "Qwen/Qwen3-VL-4B-Instruct-GGUF",
        {"Qwen3VL-4B-Instruct-Q4_K_M.gguf": QWEN3VL, "mmproj-Qwen3VL-4B-Instruct-F16.gguf": QWEN3VL_PROJ},
    )
    with pytest.raises(ModelNotFound) as e:
        find_files(Which.MultimodalPlain(model_id="Qwen/Qwen3-VL-4B-Instruct"), "8")
    assert one_line(e.value).startswith(
        "Qwen/Qwen3-VL-4B-Instruct-GGUF has no Q8_0 GGUF in the Hugging Face cache (HF_HUB_OFFLINE is set) "
        "(in_situ_quant='8'): it has Q4_K_M (nearest in size first);"
    )


def test_a_model_neither_cached_nor_reachable_offline_is_a_network_error():
    with pytest.raises(NetworkError, match="HF_HUB_OFFLINE"):
        find_files(Which.MultimodalPlain(model_id="Qwen/Qwen3-VL-4B-Instruct"), "4")


def test_unknown_ids_and_quants_say_what_to_give(offline: Path):
    with pytest.raises(ModelNotFound) as e:
        find_files(Which.MultimodalPlain(model_id="someone/unheard-of-model"), "4")
    assert "no GGUF repository is known for someone/unheard-of-model" in one_line(e.value)
    assert 'original = "someone/unheard-of-model"' in str(e.value)
    with pytest.raises(
        InputError, match=r"in_situ_quant='HQQ4' is not a GGUF quantization.*\"4\" \(a 4-bit file: Q4_K_M, else Q4_0"
    ):
        find_files(Which.MultimodalPlain(model_id="Qwen/Qwen3-VL-4B-Instruct"), "HQQ4")
    with pytest.raises(InputError, match="which= is a Which.Plain"):
        find_files("Qwen/Qwen3-VL-4B-Instruct")
    lay_out_qwen3vl(offline)
    with pytest.raises(InputError, match="arch= is a MultimodalArchitecture member"):
        find_files(Which.MultimodalPlain(model_id="Qwen/Qwen3-VL-4B-Instruct", arch="qwen3vl"), "4")


def test_which_gguf_takes_the_named_file_and_the_repos_projector(offline: Path):
    snapshot = lay_out_qwen3vl(offline)
    which = Which.GGUF(
        quantized_model_id="Qwen/Qwen3-VL-4B-Instruct-GGUF", quantized_filename="Qwen3VL-4B-Instruct-Q8_0.gguf"
    )
    got = find_files(which)
    assert got.model == snapshot / "Qwen3VL-4B-Instruct-Q8_0.gguf"
    assert got.mmproj == snapshot / "mmproj-Qwen3VL-4B-Instruct-F16.gguf"
    with pytest.raises(ModelNotFound) as e:
        find_files(Which.GGUF(quantized_model_id="Qwen/Qwen3-VL-4B-Instruct-GGUF", quantized_filename="nope.gguf"))
    assert one_line(e.value).startswith("Qwen/Qwen3-VL-4B-Instruct-GGUF has no file nope.gguf: it has ")
    assert "Qwen3VL-4B-Instruct-Q4_K_M.gguf" in str(e.value)
    local = find_files(
        Which.GGUF(quantized_model_id=str(snapshot), quantized_filename="Qwen3VL-4B-Instruct-Q4_K_M.gguf")
    )
    assert local.model == snapshot / "Qwen3VL-4B-Instruct-Q4_K_M.gguf" and local.mmproj is not None
    with pytest.raises(InputError, match="in_situ_quant= picks a file of a model_id"):
        find_files(which, "4")


# -- not pulled yet: downloaded, with progress -------------------------------------------------

TINY_REPO = "test-org/tiny-vl-GGUF"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from huggingface_hub import constants

    files = {
        "tiny-vl-Q4_K_M.gguf": QWEN3VL,
        "tiny-vl-Q8_0.gguf": QWEN3VL + b"\0",
        "mmproj-tiny-vl-f16.gguf": QWEN3VL_PROJ,
    }
    with FakeHub({TINY_REPO: files}) as fake:
        use_hub(monkeypatch, fake.url, tmp_path / "hub-home")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        path = registry.user_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f'[models.tiny-vl]\nrepo = "{TINY_REPO}"\noriginal = "test-org/tiny-vl"\nquant = "Q4_K_M"\n'
            'modalities = ["image"]\n',
            encoding="utf-8",
        )
        yield fake


def test_a_model_not_pulled_yet_is_downloaded_with_progress_on_stderr(hub: FakeHub, monkeypatch, capfd):
    monkeypatch.setenv("TQDM_POSITION", "-1")  # tqdm draws bars on a non-TTY stderr only when asked
    which = Which.MultimodalPlain(model_id="test-org/tiny-vl", arch=MultimodalArchitecture.Qwen3VL)
    with warned(pytest.fail):
        got = find_files(which, "8")
    assert got.model.name == "tiny-vl-Q8_0.gguf" and got.mmproj.name == "mmproj-tiny-vl-f16.gguf"
    out, err = capfd.readouterr()
    assert out == "" and "tiny-vl-Q8_0.gguf" in err and "100%" in err
    asked = len(hub.requests)
    with warned(pytest.fail):
        assert find_files(which, "8") == got  # now from the cache
    assert len(hub.requests) == asked


def test_a_quant_the_repo_lacks_lists_the_ones_it_has(hub: FakeHub):
    with pytest.raises(ModelNotFound) as e:
        find_files(Which.MultimodalPlain(model_id="test-org/tiny-vl"), "2", progress=False)
    assert one_line(e.value).startswith(
        "test-org/tiny-vl-GGUF has no 2-bit GGUF (in_situ_quant='2'): it has Q4_K_M, Q8_0 (nearest in size first);"
    )


def test_the_issues_gemma_4_e2b_by_model_id_and_4_bits_takes_its_q4_0(monkeypatch, tmp_path):
    """ggml-org/gemma-4-E2B-it-GGUF has Q4_0, Q8_0, BF16 and MTP drafters, no Q4_K_M (tests/support/hub_listings.py):
    "4" means a 4-bit file, so it is Q4_0; a GGUF name the repo lacks is an error naming what it has."""
    from huggingface_hub import constants

    from tests.support.hub_listings import LISTINGS, with_bytes

    repo = "ggml-org/gemma-4-E2B-it-GGUF"
    listing = with_bytes(
        LISTINGS[repo], {"gemma-4-E2B-it-Q4_0.gguf": GEMMA4, "mmproj-gemma-4-E2B-it-Q8_0.gguf": GEMMA4_PROJ}
    )
    with FakeHub({repo: listing}) as fake:
        use_hub(monkeypatch, fake.url, tmp_path / "hub-home")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        which = Which.MultimodalPlain("google/gemma-4-E2B-it", arch=MultimodalArchitecture.Gemma4)
        with warned(pytest.fail):
            got = find_files(which, in_situ_quant="4", progress=False)
        assert (got.model.name, got.mmproj.name) == ("gemma-4-E2B-it-Q4_0.gguf", "mmproj-gemma-4-E2B-it-Q8_0.gguf")
        with warned(pytest.fail):
            assert find_files(which, progress=False) == got  # the registry's quant: the same file
        with pytest.raises(ModelNotFound) as e:
            find_files(which, in_situ_quant="Q4_K_M", progress=False)
        assert one_line(e.value).startswith(
            f"{repo} has no Q4_K_M GGUF (in_situ_quant='Q4_K_M'): it has Q4_0, Q8_0, BF16 (nearest in size first);"
        )
        with pytest.raises(ModelNotFound, match="has no Q4K \\(Q4_K_M/Q4_K_S\\) GGUF"):
            find_files(which, in_situ_quant="Q4K", progress=False)
        got_files = sorted(p.rsplit("/", 1)[-1] for m, p, _ in fake.requests if m == "GET" and "/resolve/" in p)
        assert got_files == ["gemma-4-E2B-it-Q4_0.gguf", "mmproj-gemma-4-E2B-it-Q8_0.gguf"]
