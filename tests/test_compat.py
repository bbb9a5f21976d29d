"""A model and a projector that do not belong together are refused from their headers, before
llama.cpp reads either file: one line, exit 2, and libllama/libmtmd never called."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmchat.engine import llamacpp
from mmchat.errors import ModelLoadError
from mmchat.models import gguf_info, registry
from mmchat.models import pairs as compat
from tests.support import gguf_models as g
from tests.support.fakehub import put_in_cache, use_hub
from tests.support.gguf_models import GGUFBuilder
from tests.support.helpers import model_args, run_mmchat


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> dict[str, Path]:
    """Projectors that belong to other models, and files cut short."""
    d = tmp_path_factory.mktemp("odd")
    paths = {
        "wide": g.write_vision_mmproj(d / "mmproj-wide.gguf", n_embd=128),
        "qwen3vl-flat": g.write_qwen3vl_mmproj(d / "mmproj-qwen3vl-flat.gguf", deepstack=False),
    }
    b = GGUFBuilder("clip")  # an M-RoPE projector type that is not Qwen's; headers are all the check reads
    b.string("clip.projector_type", "paddleocr")
    b.boolean("clip.has_vision_encoder", True)
    b.tensor("mm.2.weight", g.normal(g.rng_for("paddle"), (g.N_EMBD, 128), 0.1))
    paths["paddleocr"] = b.write(d / "mmproj-paddleocr.gguf")
    for stem in ("llm", "mmproj-vision"):
        data = models[stem].read_bytes()
        paths[f"{stem}-cut"] = d / f"{stem}-cut.gguf"
        paths[f"{stem}-cut"].write_bytes(data[: len(data) * 3 // 4])
    return paths


@pytest.fixture
def llama_never_called(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for module, name in ((llamacpp.llama, "llama_model_load_from_file"), (llamacpp.mtmd, "mtmd_init_from_file")):
        monkeypatch.setattr(module, name, lambda *a, name=name: calls.append(name))
    return calls


def _refused(model: Path, mmproj: Path | None, calls: list[str]) -> str:
    with pytest.raises(ModelLoadError) as e:
        llamacpp.LlamaCppEngine(model, mmproj, n_ctx=512, threads=1)
    assert calls == []
    message = str(e.value)
    assert "\n" not in message
    return message


def test_a_projector_of_another_width_names_both_widths(models, odd, llama_never_called):
    message = _refused(models["llm"], odd["wide"], llama_never_called)
    assert "width 128 but llm.gguf takes width 64" in message
    assert "this mmproj belongs to a model of width 128" in message


def test_qwen3vl_deepstack_layers_count_in_both_widths(models, llama_never_called):
    assert "belongs to a model of width 128" in _refused(models["llm"], models["mmproj-qwen3vl"], llama_never_called)
    assert "belongs to a model of width 64" in _refused(
        models["llm-qwen3vl"], models["mmproj-qwen2vl"], llama_never_called
    )


def test_a_qwen_vl_projector_on_a_llama_model_is_refused(models, llama_never_called):
    """Same width, and llama.cpp answers without a word; the positions the projector was trained for are gone."""
    message = _refused(models["llm"], models["mmproj-qwen2vl"], llama_never_called)
    assert "qwen2vl_merger projector for Qwen2-VL" in message and "llm.gguf is a llama model" in message


def test_a_qwen3vl_projector_on_a_qwen2vl_model_is_refused(models, odd, llama_never_called):
    message = _refused(models["llm-qwen2vl"], odd["qwen3vl-flat"], llama_never_called)
    assert "qwen3vl_merger projector for Qwen3-VL" in message and "is a qwen2vl model" in message


def test_an_mrope_projector_on_a_plain_rope_model_is_refused(models, odd, llama_never_called):
    message = _refused(models["llm"], odd["paddleocr"], llama_never_called)
    assert "paddleocr projector, which needs a text model with M-RoPE positions" in message
    assert "(llama) uses plain RoPE" in message


@pytest.mark.parametrize("cut, other", [("llm-cut", None), ("mmproj-vision-cut", "llm")])
def test_a_file_shorter_than_its_tensor_table_says_so(models, odd, llama_never_called, cut, other):
    model, mmproj = (odd[cut], None) if other is None else (models[other], odd[cut])
    size = odd[cut].stat().st_size
    message = _refused(model, mmproj, llama_never_called)
    assert f"{odd[cut]} is truncated" in message and f"but the file has {size}" in message


def test_every_pair_that_belongs_together_passes(models):
    for llm, projectors in g.PAIRS.items():
        for proj in projectors:
            compat.check_files(models[llm], models[proj])
    compat.check_files(models["llm-qwen2vl"], models["mmproj-vision"])  # mtmd takes M-RoPE from the text model


def test_the_ggml_block_sizes_agree_with_the_gguf_package():
    from gguf.constants import GGML_QUANT_SIZES

    assert {int(t): size for t, size in GGML_QUANT_SIZES.items()}.items() <= gguf_info.GGML_BLOCKS.items()


def test_the_command_line_says_it_in_one_line_with_exit_2(models, odd):
    for mmproj, needle in (
        (odd["wide"], "belongs to a model of width 128"),
        (models["mmproj-qwen2vl"], "qwen2vl_merger"),
        (odd["mmproj-vision-cut"], "is truncated"),
    ):
        out = run_mmchat("ask", "hi", *model_args(models, mmproj))
        err = out.stderr.decode()
        assert out.returncode == 2 and out.stdout == b"", err
        assert err.startswith("mmchat: error: ") and err.count("\n") == 1 and needle in err, err


def test_doctor_names_a_downloaded_model_whose_projector_belongs_elsewhere(models, odd, tmp_path, monkeypatch):
    cache = use_hub(monkeypatch, "http://127.0.0.1:9", tmp_path / "hf")
    put_in_cache(
        cache,
        "test-org/good-GGUF",
        {"good-Q4_K_M.gguf": models["llm"].read_bytes(), "mmproj-good-f16.gguf": models["mmproj-vision"].read_bytes()},
    )
    put_in_cache(
        cache,
        "test-org/mixed-GGUF",
        {"mixed-Q4_K_M.gguf": models["llm"].read_bytes(), "mmproj-mixed-f16.gguf": odd["wide"].read_bytes()},
    )
    registry.user_file().parent.mkdir(parents=True, exist_ok=True)
    registry.user_file().write_text(
        '[models.good]\nrepo = "test-org/good-GGUF"\nquant = "Q4_K_M"\nmodalities = ["image"]\n'
        '[models.mixed]\nrepo = "test-org/mixed-GGUF"\nquant = "Q4_K_M"\nmodalities = ["image"]\n'
    )
    out = run_mmchat("doctor", timeout=60)
    lines = out.stdout.decode().splitlines()
    assert out.returncode == 0
    assert any(line.startswith("downloaded models: ") and "good" in line and "mixed" in line for line in lines)
    problems = [line for line in lines if line.startswith("  ")]
    assert len(problems) == 1 and problems[0].startswith("  mixed: ")
    assert "this mmproj belongs to a model of width 128" in problems[0]
