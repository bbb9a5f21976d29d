"""Where the text model and the projector run: --mmproj-offload reaches libmtmd, and --json and
`mmchat doctor` say where each part went.

This build of llama.cpp is CPU-only (no GPU here), so both parts run on the CPU whatever is asked;
what the flag changes is the `use_gpu` that libmtmd gets, which the tests read at the call itself
(`mtmd_init_from_file`'s `mtmd_context_params`). The expected placements follow llama.cpp's rules:
llama-model.cpp load_tensors (`act_gpu_layers = devices.empty() ? 0 : min(n_gpu_layers, n_layer + 1)`)
and mtmd/clip.cpp clip_ctx (the first GPU backend when use_gpu and one exists, else the CPU).
"""

from __future__ import annotations

import json
import sys

import llama_cpp
import pytest
from llama_cpp import mtmd_cpp
from typer.testing import CliRunner

from mmchat import Runner, image_part, text_part
from mmchat.cli import app
from mmchat.cli.admin import _where_it_runs
from mmchat.cli.app import main
from mmchat.engine.placement import Placement, plan
from mmchat.env import Environment, use
from tests.support.helpers import GREEDY, THREADS, model_args
from tests.support.mediafiles import noise_png

pytestmark = pytest.mark.model  # every test here loads a tiny GGUF or starts a process (Xvfb, mmchat)

GPU = bool(llama_cpp.llama_supports_gpu_offload())
LAYERS = 3  # the tiny text model's 2 blocks plus its output layer


@pytest.fixture
def asked(monkeypatch) -> list[bool]:
    """The use_gpu of every mtmd_context_params libmtmd is given, read as the call passes it on."""
    seen: list[bool] = []
    real = mtmd_cpp.mtmd_init_from_file

    def recording(path, model, params):
        seen.append(bool(params.use_gpu))
        return real(path, model, params)

    monkeypatch.setattr(mtmd_cpp, "mtmd_init_from_file", recording)
    return seen


@pytest.fixture
def png(tmp_path):
    return noise_png(tmp_path / "p.png", seed=5)


def test_llama_cpps_placement_rules():
    assert plan(gpu=False, n_gpu_layers=None, mmproj_offload=True, n_layer=24) == Placement(0, 25, "CPU")
    assert plan(gpu=True, n_gpu_layers=None, mmproj_offload=True, n_layer=24, gpu_name="CUDA0") == Placement(
        25, 25, "CUDA0"
    )
    partial = plan(gpu=True, n_gpu_layers=10, mmproj_offload=False, n_layer=24)
    assert (partial.text_model, partial.projector_device) == ("GPU+CPU", "CPU")
    assert partial.describe_text_model() == "GPU+CPU (10 of 25 layers on the GPU)"
    assert plan(gpu=True, n_gpu_layers=999, mmproj_offload=True, n_layer=24).gpu_layers == 25
    assert plan(gpu=True, n_gpu_layers=0, mmproj_offload=True, n_layer=24).as_dict() == {
        "text_model": "CPU",
        "gpu_layers": 0,
        "layers": 25,
        "projector": "GPU",
        "projector_backend": "GPU",
    }
    assert plan(gpu=True, n_gpu_layers=0, mmproj_offload=True, projector=False).projector is None


@pytest.mark.parametrize("offload", [True, False])
def test_mmproj_offload_reaches_libmtmd_and_json_says_where_each_part_ran(models, asked, png, offload):
    options = {} if offload else {"mmproj_offload": False}  # the default is on, as llama.cpp's
    with Runner(models["llm"], models["mmproj-vision"], n_ctx=1024, threads=THREADS, cache=False, **options) as r:
        reply = r.chat([{"role": "user", "content": [image_part(str(png)), text_part("What?")]}], **GREEDY)
    assert asked == [offload]
    where = reply.to_dict()["timings"]["ran_on"]
    projector = "GPU" if GPU and offload else "CPU"
    assert (where["text_model"], where["gpu_layers"], where["layers"], where["projector"]) == (
        "GPU" if GPU else "CPU",
        LAYERS if GPU else 0,
        LAYERS,
        projector,
    )
    if projector == "CPU":
        assert where["projector_backend"] == "CPU"  # as libmtmd logged it: "CLIP using CPU backend"


def test_a_text_model_alone_has_no_projector_to_place(models):
    with Runner(models["llm"], None, n_ctx=512, threads=THREADS) as r:
        where = r.chat([{"role": "user", "content": "Hi"}], **GREEDY).to_dict()["timings"]["ran_on"]
    assert where["projector"] is None and where["layers"] == LAYERS


def _ask_json(monkeypatch, capsys, *args: str) -> dict:
    """`mmchat ask --json ARGS` in this process (so `asked` sees libmtmd's call), through main()
    as the console script runs it: config.toml's [defaults] apply."""
    monkeypatch.setattr(sys, "argv", ["mmchat", "ask", "--json", *args])
    with use(Environment(stdin_isatty=True, stdout_isatty=False, stderr_isatty=False, environ={})):
        with pytest.raises(SystemExit) as done:
            main()
    out = capsys.readouterr()
    assert done.value.code in (0, None), out.err
    return json.loads(out.out)


@pytest.mark.parametrize("how", ["flag", "config.toml"])
def test_no_mmproj_offload_from_the_command_line_and_config_toml(
    models, asked, png, monkeypatch, capsys, isolated_user_dir, how
):
    args = [
        "What?",
        *model_args(models, greedy=False),
        "-i",
        str(png),
        "-t",
        "0",
        "-n",
        "4",
        "--no-cache",
    ]
    if how == "flag":
        args.append("--no-mmproj-offload")
    else:
        (isolated_user_dir / "config.toml").write_text("[defaults]\nmmproj-offload = false\n")
    reply = _ask_json(monkeypatch, capsys, *args)
    assert asked == [False]
    assert reply["timings"]["ran_on"]["projector"] == "CPU"
    if how == "config.toml":  # the flag still wins over the file
        _ask_json(monkeypatch, capsys, *args, "--mmproj-offload")
        assert asked == [False, True]


def _doctor() -> list[str]:
    with use(Environment(stdin_isatty=True, stdout_isatty=False, stderr_isatty=False, environ={})):
        result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


@pytest.mark.skipif(GPU, reason="the lines for a GPU build are checked by test_doctor_on_a_gpu_build")
def test_doctor_says_both_parts_run_on_the_cpu_of_a_cpu_only_build(isolated_user_dir):
    lines = _doctor()
    assert "text model runs on: CPU (this build has no GPU backend)" in lines
    assert "projector runs on: CPU (this build has no GPU backend)" in lines


def test_doctor_names_a_bad_config_value(isolated_user_dir):
    (isolated_user_dir / "config.toml").write_text('[defaults]\nmmproj-offload = "no"\n')
    line = next(x for x in _doctor() if x.startswith("where models run"))
    assert "config.toml" in line and "mmproj-offload = 'no' is not valid: give true or false" in line


def test_doctor_on_a_gpu_build(isolated_user_dir):
    """The same rules, given a build with a CUDA device (this one has none)."""
    assert _where_it_runs(True, "CUDA0") == [
        "text model runs on: GPU (all layers) (--gpu-layers N to keep some on the CPU)",
        "projector runs on: GPU (CUDA0) (--no-mmproj-offload keeps it on the CPU)",
    ]
    (isolated_user_dir / "config.toml").write_text("[defaults]\nmmproj-offload = false\ngpu-layers = 20\n")
    assert _where_it_runs(True, "CUDA0") == [
        "text model runs on: GPU (20 layers) (gpu-layers in config.toml)",
        "projector runs on: CPU (mmproj-offload in config.toml)",
    ]
