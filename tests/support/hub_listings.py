"""The real Hub's listings of the repositories models.toml names, for the fake hub.

Written from evidence, not from mmchat's code: llama.cpp's tools/mtmd/tests.sh (which
`-hf REPO:QUANT` its multimodal tests download) and public projects that pin these files by byte
size and sha256 at a commit of the repository (found by searching public code for the exact file
names; each is quoted as @commit and a sha256 prefix). A size marked `# est.` had no byte count
in any source: it is an estimate, made as the comment says. The names keep the Hub's spelling,
mixed and lower case alike (ggml-org writes f16, Qwen writes F16, Gemma 4 E2B was lower-case at
first). `.gitattributes` and `README.md` are in every repository as the Hub lists them.
"""

from __future__ import annotations

from tests.support.fakehub import File, Listed

_GIT = {".gitattributes": b"*.gguf filter=lfs diff=lfs merge=lfs -text\n", "README.md": b"---\nlicense: other\n---\n"}


def _(size: int, sha256: str = "") -> Listed:
    return Listed(size, sha256)


LISTINGS: dict[str, dict[str, File]] = {
    # The listing: Q4_0, Q8_0 and BF16 models, one Q8_0 projector, two MTP drafters (for
    # llama.cpp's --spec-type draft-mtp), no Q4_K_M. Sizes: projects pinning @858dcdf9 (Q4_0,
    # sha256 8e30dff3...), @b4243c15 (Q8_0, mtp Q8_0) and @a1dac71d (mmproj); an Android
    # policy test (mtp Q4_0 59,235,872 B). BF16: 4,967,497,152 B at 8.5 bits a weight is 4.68 B
    # weights, 9.35 GB at 16 bits # est.
    "ggml-org/gemma-4-E2B-it-GGUF": {
        **_GIT,
        "gemma-4-E2B-it-Q4_0.gguf": _(
            2_841_481_184, "8e30dff3ac4c8434c49a7036fa15564bdbb6044e42bf04550bf1a096ad7e6a52"
        ),
        "gemma-4-E2B-it-Q8_0.gguf": _(
            4_967_497_152, "996d08777aadc6bfd3c7375ef70ba25a0f55240075860754fdb18d6d860aa63a"
        ),
        "gemma-4-E2B-it-BF16.gguf": _(9_350_000_000),  # est.
        "mmproj-gemma-4-E2B-it-Q8_0.gguf": _(
            557_367_776, "8a82e0fd831bb7cb5c8898b86393eb14042986b950a60e1034bf21d061aac8a8"
        ),
        "mtp-gemma-4-E2B-it-Q4_0.gguf": _(59_235_872),
        "mtp-gemma-4-E2B-it-Q8_0.gguf": _(
            97_817_696, "c4fba8d43b40c9fab8c3db15ca6ef00fd28192208753f1f038269c176437068a"
        ),
    },
    # @2714b551: Q4_K_M (sha256 90ce9812...) and the Q8_0 projector (51d4b7fd...); Q4_0 @b8093469
    # (a555b900...); mtp Q4_0 fetched by a setup script (size # est. from E2B's drafter, scaled);
    # Q8_0 "7.48 GiB" in a README.
    "ggml-org/gemma-4-E4B-it-GGUF": {
        **_GIT,
        "gemma-4-E4B-it-Q4_K_M.gguf": _(
            5_335_289_824, "90ce98129eb3e8cc57e62433d500c97c624b1e3af1fcc85dd3b55ad7e0313e9f"
        ),
        "gemma-4-E4B-it-Q4_0.gguf": _(
            4_590_807_392, "a555b900214b477d8880e7832e0b8925e139b0159640036b09fe472b6f2097f2"
        ),
        "gemma-4-E4B-it-Q8_0.gguf": _(8_031_000_000),  # est.: 7.48 GiB
        "mmproj-gemma-4-E4B-it-Q8_0.gguf": _(
            559_874_528, "51d4b7fd825e4569f746b200fccc5332bf914e8ef7cbe447272ce4fec6df3db6"
        ),
        "mtp-gemma-4-E4B-it-Q4_0.gguf": _(80_000_000),  # est.
    },
    # @d0976223 (882e8d2d..., 8c0fb064...); Q8_0 "4.13 GiB" in an app's downloader.
    "ggml-org/gemma-3-4b-it-GGUF": {
        **_GIT,
        "gemma-3-4b-it-Q4_K_M.gguf": _(
            2_489_757_856, "882e8d2db44dc554fb0ea5077cb7e4bc49e7342a1f0da57901c0802ea21a0863"
        ),
        "gemma-3-4b-it-Q8_0.gguf": _(4_434_000_000),  # est.: 4.13 GiB
        "mmproj-model-f16.gguf": _(851_251_104, "8c0fb064b019a6972856aaae2c7e4792858af3ca4561be2dbf649123ba6c40cb"),
    },
    # @5037fcf1: Q4_K_M (d02fe9b6...), Q8_0 (fa8aeb3b...), f16 projector (b9160fe9...), Q8_0
    # projector (980c9b2f..., size # est. at half the f16's plus norms).
    "ggml-org/Qwen2.5-VL-3B-Instruct-GGUF": {
        **_GIT,
        "Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf": _(
            1_929_901_056, "d02fe9b69ad8cadbbd228e387667af66612c44bed29ffc8eb1e7caf9ac486c12"
        ),
        "Qwen2.5-VL-3B-Instruct-Q8_0.gguf": _(
            3_285_474_304, "fa8aeb3b6bf6152774e87d13e09892aa065f4e0c4abe90806cd8ab18ff72d9fe"
        ),
        "mmproj-Qwen2.5-VL-3B-Instruct-f16.gguf": _(
            1_338_428_128, "b9160fe9d814d1fadf68395677468534778b39ac33c2e7561b7b218626e60d5e"
        ),
        "mmproj-Qwen2.5-VL-3B-Instruct-Q8_0.gguf": _(
            720_000_000, "980c9b2f78c04e6cff93d277ada09e768394f112d75db3b4e9dea8a69f9fb904"
        ),
    },
    # Q4_K_M 4,683,072,032 B (9258bf05...); the f16 projector "~1.4 GB" # est. 1.354 GB (the 3B's
    # plus the wider merger); the Q8_0 projector "0.79 GB" in a catalogue.
    "ggml-org/Qwen2.5-VL-7B-Instruct-GGUF": {
        **_GIT,
        "Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf": _(
            4_683_072_032, "9258bf05b12686d097ff3b6b18d968ab393649780aa2b3cd67fec43d50554392"
        ),
        "mmproj-Qwen2.5-VL-7B-Instruct-f16.gguf": _(1_354_000_000),  # est.
        "mmproj-Qwen2.5-VL-7B-Instruct-Q8_0.gguf": _(790_000_000),  # est.
    },
    # Qwen's own names: upper-case F16. @52d6c8ff (089d75c5..., c3d5afbe...); a Go test lists the
    # four files; Q8_0 and the Q8_0 projector ("0.41 GB") # est.
    "Qwen/Qwen3-VL-2B-Instruct-GGUF": {
        **_GIT,
        "Qwen3VL-2B-Instruct-Q4_K_M.gguf": _(
            1_107_409_952, "089d75c52f4b7ffc56ba998ffc50aae89fcafc755f9e7208aacca281dca6c2ae"
        ),
        "Qwen3VL-2B-Instruct-Q8_0.gguf": _(1_834_000_000),  # est.
        "mmproj-Qwen3VL-2B-Instruct-F16.gguf": _(
            819_394_848, "c3d5afbef5287953acd57b4043d2269456e5761a4eaccb3b71b062996970aea5"
        ),
        "mmproj-Qwen3VL-2B-Instruct-Q8_0.gguf": _(445_000_000),  # est.
    },
    # @1cd86afb (66358cb1..., 054721f4..., 256f3a43...); the Q8_0 projector # est. as in a test's listing.
    "Qwen/Qwen3-VL-4B-Instruct-GGUF": {
        **_GIT,
        "Qwen3VL-4B-Instruct-Q4_K_M.gguf": _(
            2_497_281_664, "66358cb18bb6b3b1b6675aa412c7a88ef01d228f481184d13668e5201c730a0a"
        ),
        "Qwen3VL-4B-Instruct-Q8_0.gguf": _(
            4_280_406_144, "054721f478bc5fa6beffb7f38eae575d45298f88cbb8d2f83ef675a727863eb1"
        ),
        "mmproj-Qwen3VL-4B-Instruct-F16.gguf": _(
            836_180_256, "256f3a43bd4205ffef48d6b92715e1e70b5b0e9aef06522584967513a9985331"
        ),
        "mmproj-Qwen3VL-4B-Instruct-Q8_0.gguf": _(453_000_000),  # est.
    },
    # Q8_0 and f16 only. @ccd7aae5 (Q8_0 6f67b803..., Q8_0 projector 921dc7e2...: "546 MB" the
    # pair, the model "0.44 GB"); the f16 projector 199,470,624 B; the f16 model (80f7e3f0...) # est.
    "ggml-org/SmolVLM2-500M-Video-Instruct-GGUF": {
        **_GIT,
        "SmolVLM2-500M-Video-Instruct-Q8_0.gguf": _(
            437_000_000, "6f67b8036b2469fcd71728702720c6b51aebd759b78137a8120733b4d66438bc"
        ),
        "SmolVLM2-500M-Video-Instruct-f16.gguf": _(
            820_000_000, "80f7e3f04bc2d3324ac1a9f52f5776fe13a69912adf74f8e7edacf773d140d77"
        ),
        "mmproj-SmolVLM2-500M-Video-Instruct-Q8_0.gguf": _(
            109_000_000, "921dc7e259f308e5b027111fa185efcbf33db13f6e35749ddf7f5cdb60ef520b"
        ),
        "mmproj-SmolVLM2-500M-Video-Instruct-f16.gguf": _(
            199_470_624, "b5dc8ebe7cbeab66a5369693960a52515d7824f13d4063ceca78431f2a6b59b0"
        ),
    },
    # Q8_0 675,206,560 B and its projector 332,567,840 B (a catalogue); one project names the f16
    # projector, no size found: # est. from the 2B's f16/Q8_0 projector pair (same InternViT-300M).
    "ggml-org/InternVL3-1B-Instruct-GGUF": {
        **_GIT,
        "InternVL3-1B-Instruct-Q8_0.gguf": _(675_206_560),
        "mmproj-InternVL3-1B-Instruct-Q8_0.gguf": _(332_567_840),
        "mmproj-InternVL3-1B-Instruct-f16.gguf": _(620_000_000),  # est.
    },
    # A catalogue with the four sizes; the f16 projector's sha256 (e4e6f066...) from another project.
    "ggml-org/InternVL3-2B-Instruct-GGUF": {
        **_GIT,
        "InternVL3-2B-Instruct-Q4_K_M.gguf": _(1_116_758_816),
        "InternVL3-2B-Instruct-Q8_0.gguf": _(1_893_671_520),
        "mmproj-InternVL3-2B-Instruct-Q8_0.gguf": _(337_012_000),
        "mmproj-InternVL3-2B-Instruct-f16.gguf": _(
            628_237_600, "e4e6f0663d591169e8ddd2f415262cef2a5a994705658841e56c09401a54deb3"
        ),
    },
    # The text model's template is the built-in name "vicuna" (its file name says so); both f16.
    "ggml-org/moondream2-20250414-GGUF": {
        **_GIT,
        "moondream2-text-model-f16_ct-vicuna.gguf": _(2_839_535_072),
        "moondream2-mmproj-f16-20250414.gguf": _(909_777_984),
    },
    # The model files carry the text model's name, not ultravox's. @5390c7c4 (6f85a640...,
    # b34dde18...); Q8_0 1,321,083,008 B (432f310a...).
    "ggml-org/ultravox-v0_5-llama-3_2-1b-GGUF": {
        **_GIT,
        "Llama-3.2-1B-Instruct-Q4_K_M.gguf": _(
            807_694_464, "6f85a640a97cf2bf5b8e764087b1e83da0fdb51d7c9fab7d0fece9385611df83"
        ),
        "Llama-3.2-1B-Instruct-Q8_0.gguf": _(
            1_321_083_008, "432f310a77f4650a88d0fd59ecdd7cebed8d684bafea53cbff0473542964f0c3"
        ),
        "mmproj-ultravox-v0_5-llama-3_2-1b-f16.gguf": _(
            1_371_123_616, "b34dde1835752949d6b960528269af93c92fec91c61ea0534fcc73f96c1ed8b2"
        ),
    },
    # A repo without an f16 projector: only the Q8_0 one was found ("exact sizes from the Hugging
    # Face API" in a project).
    "ggml-org/Voxtral-Mini-3B-2507-GGUF": {
        **_GIT,
        "Voxtral-Mini-3B-2507-Q4_K_M.gguf": _(2_473_001_920),
        "mmproj-Voxtral-Mini-3B-2507-Q8_0.gguf": _(715_714_080),
    },
    # @75f1b73b (4b0bd358..., 4e6c816c...); Q8_0 model "3.6 GB" and f16 projector "2.6 GB" in a
    # project's notes # est.; an f16 model is used by another project # est. at 16/8.5 of the Q8_0.
    "ggml-org/Qwen2.5-Omni-3B-GGUF": {
        **_GIT,
        "Qwen2.5-Omni-3B-Q4_K_M.gguf": _(
            2_104_931_648, "4b0bd358c1e9ec55dd3055ef6d71c958c821533d85916a10cfa89c4552a86e29"
        ),
        "Qwen2.5-Omni-3B-Q8_0.gguf": _(3_600_000_000),  # est.
        "Qwen2.5-Omni-3B-f16.gguf": _(6_780_000_000),  # est.
        "mmproj-Qwen2.5-Omni-3B-Q8_0.gguf": _(
            1_538_031_328, "4e6c816cd33f7298d07cb780c136a396631e50e62f6501660271f8c6e302e565"
        ),
        "mmproj-Qwen2.5-Omni-3B-f16.gguf": _(2_600_000_000),  # est.
    },
}

# Not in models.toml; the shapes the rules must also handle.
OTHER_LISTINGS: dict[str, dict[str, File]] = {
    # Lower-case names and a model split in two (projects list both parts: "3.72 GB" and "0.64 GB",
    # GiB # est.); a text model, no projector.
    "Qwen/Qwen2.5-7B-Instruct-GGUF": {
        **_GIT,
        "qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf": _(3_994_000_000),  # est.
        "qwen2.5-7b-instruct-q4_k_m-00002-of-00002.gguf": _(687_000_000),  # est.
    },
}

# ggml-org/gemma-4-E2B-it-GGUF as it was first published: lower-case names, a Q8_0 model with
# BF16 and F16 projectors, no Q4_0 (projects wrote gemma-4-e2b-it-Q8_0.gguf 4,967,490,208 B,
# mmproj-gemma-4-e2b-it-bf16.gguf "987 MB", mmproj-gemma-4-e2b-it-f16.gguf # est. the same).
GEMMA4_E2B_FIRST_REVISION: dict[str, File] = {
    **_GIT,
    "gemma-4-e2b-it-Q8_0.gguf": _(4_967_490_208),
    "mmproj-gemma-4-e2b-it-bf16.gguf": _(987_000_000),  # est.
    "mmproj-gemma-4-e2b-it-f16.gguf": _(987_000_000),  # est.
}


def with_bytes(listing: dict[str, File], contents: dict[str, bytes]) -> dict[str, File]:
    """The listing with real bytes for the files a test downloads; the rest stay listed only."""
    missing = set(contents) - set(listing)
    assert not missing, f"not in the listing: {missing}"
    return {**listing, **contents}
