"""hubfiles.py: which file of a real repository's listing is the chat model, and which its projector."""

from __future__ import annotations

from mmchat.models import hubfiles
from mmchat.models.hubfiles import Want, wanted
from tests.support.hub_listings import GEMMA4_E2B_FIRST_REVISION, LISTINGS, OTHER_LISTINGS

E2B = list(LISTINGS["ggml-org/gemma-4-E2B-it-GGUF"])
E2B_REPO = "ggml-org/gemma-4-E2B-it-GGUF"


def test_gemma_4_e2b_has_no_q4_k_m_and_the_registrys_choice_falls_back_to_q4_0():
    assert hubfiles.pick_model(E2B, wanted("Q4_K_M")) == hubfiles.ModelPick(None, None)  # a named quant: no fallback
    got = hubfiles.pick_model(E2B, wanted("Q4_K_M", named=False))
    assert got == hubfiles.ModelPick("gemma-4-E2B-it-Q4_0.gguf", "Q4_0", fell_back=True)
    assert hubfiles.available_quants(E2B, near="Q4_K_M") == ["Q4_0", "Q8_0", "BF16"]  # nearest in size first
    assert hubfiles.available_quants(E2B, near="BF16") == ["BF16", "Q8_0", "Q4_0"]


def test_mtp_drafters_are_never_the_chat_model_even_when_only_they_carry_the_quant():
    assert hubfiles.pick_model(E2B, wanted("Q8_0")).path == "gemma-4-E2B-it-Q8_0.gguf"
    assert set(hubfiles.model_files(E2B)) == {"Q4_0", "Q8_0", "BF16"}
    assert all(not f.startswith("mtp-") for files in hubfiles.model_files(E2B).values() for f in files)
    only_drafters = ["mtp-gemma-4-E2B-it-Q4_0.gguf", "MTP/mtp-gemma-4-E2B-it-Q8_0.gguf", "gemma-4-E2B-it-BF16.gguf"]
    assert hubfiles.pick_model(only_drafters, wanted("Q4_0")).path is None
    assert hubfiles.pick_model(only_drafters, wanted("Q4_0", named=False)).path == "gemma-4-E2B-it-BF16.gguf"
    # other sidecars llama.cpp skips, and drafters and importance matrices named the usual ways
    for name in (
        "eagle3-x-Q4_K_M.gguf",
        "dflash-x-Q4_K_M.gguf",
        "x-Q4_K_M-draft.gguf",
        "x-draft-0.5B-Q4_K_M.gguf",
        "x.imatrix.gguf",
        "imatrix-x-Q4_K_M.gguf",
        "mmproj-x-Q4_K_M.gguf",
        "MMPROJ-x-Q4_K_M.gguf",
    ):
        assert not hubfiles.is_chat_model(name), name
        assert hubfiles.pick_model([name, "x-Q8_0.gguf"], wanted("Q4_K_M")).path is None, name


def test_gemma_4_takes_a_bf16_projector_others_f16_and_a_q8_0_one_when_that_is_all():
    first = list(GEMMA4_E2B_FIRST_REVISION)  # lower-case names, Q8_0 only, bf16 and f16 projectors
    model = hubfiles.pick_model(first, wanted("Q4_0", named=False))
    assert model == hubfiles.ModelPick("gemma-4-e2b-it-Q8_0.gguf", "Q8_0", fell_back=True)
    assert hubfiles.pick_projector(first, model.path, E2B_REPO) == "mmproj-gemma-4-e2b-it-bf16.gguf"  # PR #21421
    assert hubfiles.pick_projector(E2B, "gemma-4-E2B-it-Q4_0.gguf", E2B_REPO) == "mmproj-gemma-4-E2B-it-Q8_0.gguf"
    qwen = ["Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf", "mmproj-x-bf16.gguf", "mmproj-x-Q8_0.gguf", "mmproj-x-f16.gguf"]
    assert hubfiles.pick_projector(qwen, qwen[0], "ggml-org/Qwen2.5-VL-3B-Instruct-GGUF") == "mmproj-x-f16.gguf"
    assert hubfiles.pick_projector(qwen[:3], qwen[0]) == "mmproj-x-bf16.gguf"
    voxtral = list(LISTINGS["ggml-org/Voxtral-Mini-3B-2507-GGUF"])  # no f16 projector there
    assert (
        hubfiles.pick_projector(voxtral, "Voxtral-Mini-3B-2507-Q4_K_M.gguf") == "mmproj-Voxtral-Mini-3B-2507-Q8_0.gguf"
    )
    upper = list(LISTINGS["Qwen/Qwen3-VL-2B-Instruct-GGUF"])  # Qwen writes F16
    assert hubfiles.pick_projector(upper, "Qwen3VL-2B-Instruct-Q4_K_M.gguf") == "mmproj-Qwen3VL-2B-Instruct-F16.gguf"


def test_a_projector_in_the_models_folder_wins_over_one_elsewhere():
    files = ["a/m-Q4_K_M.gguf", "a/mmproj-Q8_0.gguf", "b/m-Q4_K_M.gguf", "b/mmproj-F16.gguf"]
    assert hubfiles.pick_projector(files, "a/m-Q4_K_M.gguf") == "a/mmproj-Q8_0.gguf"
    assert hubfiles.pick_projector(files, "b/m-Q4_K_M.gguf") == "b/mmproj-F16.gguf"
    assert hubfiles.pick_projector(["m-Q4_K_M.gguf"], "m-Q4_K_M.gguf") is None


def test_quants_are_whole_tokens_in_any_case():
    assert hubfiles.quants_in("moondream2-text-model-f16_ct-vicuna.gguf") == ["F16"]
    assert hubfiles.quants_in("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf") == ["Q4_K_M"]
    assert hubfiles.quants_in("Qwen3VL-2B-Instruct-Q4_K_M.gguf") == ["Q4_K_M"]
    assert hubfiles.quants_in("gemma-4-E2B_q4_0-it.gguf") == ["Q4_0"]  # Google's QAT repo's spelling
    files = ["x-Q4_K_M.gguf", "x-IQ4_XS.gguf"]
    assert hubfiles.pick_model(files, wanted("Q4_K")).path is None  # not a prefix of Q4_K_M
    assert hubfiles.pick_model(files, wanted("Q4_XS")).path is None  # nor of IQ4_XS
    assert hubfiles.pick_model(files, wanted("iq4_xs")).path == "x-IQ4_XS.gguf"
    lower = list(GEMMA4_E2B_FIRST_REVISION)
    assert hubfiles.pick_model(lower, wanted("q8_0")).path == "gemma-4-e2b-it-Q8_0.gguf"


def test_a_split_model_is_taken_by_its_first_part_with_all_its_parts():
    listing = list(OTHER_LISTINGS["Qwen/Qwen2.5-7B-Instruct-GGUF"])
    got = hubfiles.pick_model(reversed(listing), wanted("Q4_K_M"))
    assert got.path == "qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf"
    assert hubfiles.shards(got.path, listing) == [got.path, "qwen2.5-7b-instruct-q4_k_m-00002-of-00002.gguf"]
    sizes = {n: getattr(f, "size", 0) for n, f in OTHER_LISTINGS["Qwen/Qwen2.5-7B-Instruct-GGUF"].items()}
    assert hubfiles.total_size(hubfiles.shards(got.path, listing), sizes) == 3_994_000_000 + 687_000_000


def test_the_fallback_order_and_a_set_of_acceptable_quants():
    assert hubfiles.QUANT_ORDER[:3] == ("Q4_K_M", "Q4_0", "Q4_K_S") and hubfiles.QUANT_ORDER[-2:] == ("F16", "BF16")
    assert (
        hubfiles.pick_model(["m-Q6_K.gguf", "m-Q8_0.gguf", "m-F16.gguf"], wanted("Q4_K_M", named=False)).quant == "Q6_K"
    )
    # none in the order: the nearest in size to the wanted one
    assert hubfiles.pick_model(["m-IQ2_M.gguf", "m-Q3_K_L.gguf"], wanted("Q4_K_M", named=False)).quant == "Q3_K_L"
    four_bit = Want(("Q4_K_M", "Q4_0", "Q4_K_S"), label="4-bit")
    assert hubfiles.pick_model(E2B, four_bit) == hubfiles.ModelPick("gemma-4-E2B-it-Q4_0.gguf", "Q4_0")
    assert hubfiles.pick_model(["m-Q8_0.gguf"], four_bit).path is None
