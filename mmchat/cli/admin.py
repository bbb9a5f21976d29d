"""`mmchat models`, `mmchat pull` and `mmchat doctor`: what is known, downloaded and installed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..env import Environment, current
from .app import app, guarded
from .diagnostics import silenced

if TYPE_CHECKING:
    from rich.table import Table

    from ..models.registry import ModelEntry, Registry

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No notices or progress on stderr (warnings still).")]


@app.command()
@guarded
def models(
    json_output: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Check every entry against the Hub's listing of its repository (online): its quant, projector and size_gb; exit 1 on any miss.",
        ),
    ] = False,
) -> None:
    """List the models mmchat knows by name, what they take, and which are downloaded.

    Examples:

      mmchat models

      mmchat models --json | jq '.[] | select(.downloaded)'

      mmchat models --check
    """
    from ..models import registry

    env = current()
    if check:
        _check_models(json_output)
        return
    known = registry.load_registry()  # once: a broken user file is one warning
    rows, default = registry.list_models(known=known), known.default
    if json_output:
        import json

        print(json.dumps([_model_json(e, done, default) for e, done in rows], indent=2), file=env.stdout)
        return
    console = env.stdout_console()
    console.print(_models_table(rows, default))
    console.print("* the default. Download one with `mmchat pull NAME`.", style="dim")


def _model_json(e: ModelEntry, done: bool, default: str | None) -> dict[str, object]:
    """One entry of `models --json`: the registry's fields, whether it is downloaded and the default."""
    return {
        "name": e.name,
        "repo": e.repo,
        "quant": e.quant,
        "modalities": list(e.modalities),
        "context": e.context,
        "size_gb": e.size_gb,
        "downloaded": done,
        "default": e.name == default,
        "notes": e.notes,
        **({"base_url": e.base_url, "server_model": e.server_model or None} if e.base_url else {}),
    }


def _models_table(rows: list[tuple[ModelEntry, bool]], default: str | None) -> Table:
    """`models` at a terminal: a row per entry, the default starred."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("name", "takes", "size", "context", "downloaded", "notes"):
        table.add_column(col, overflow="fold" if col == "notes" else "ellipsis")
    for e, done in rows:
        name = f"{e.name} *" if e.name == default else e.name
        size = f"{e.size_gb:g} GB" if e.size_gb else ("-" if e.base_url else "?")
        table.add_row(
            name,
            "+".join(e.modalities) or "text",
            size,
            f"{e.context // 1024}K" if e.context else "?",
            "on a server" if e.base_url else "yes" if done else "-",
            e.notes or e.base_url,
        )
    return table


def _check_models(json_output: bool) -> None:
    """`models --check`: a line per entry on stdout (or JSON), then exit 1 naming the entries that miss."""
    import json

    from ..errors import RegistryMismatch
    from ..models import registry
    from ..models.check import check_entries, hub_listing

    env = current()
    results = check_entries(registry.load_registry().entries.values(), hub_listing)
    if json_output:
        print(json.dumps([r.as_json() for r in results], indent=2), file=env.stdout)
    else:
        for r in results:
            print(r.line(), file=env.stdout, flush=True)
    missed = [r.name for r in results if not r.ok]
    if missed:
        raise RegistryMismatch(
            f"{len(missed)} of {len(results)} models.toml entries do not match the Hub: {', '.join(missed)}"
        )


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _interrupted_pull(env: Environment) -> None:
    env.notice("download interrupted; run the same command to resume")


@app.command()
@guarded(interrupted=_interrupted_pull)
def pull(
    name: Annotated[str, typer.Argument(help="Registry name or hf:owner/repo[:QUANT].")],
    quant: Annotated[
        Optional[str], typer.Option(help="Quantization to download, e.g. Q8_0. [default: the registry's]")
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Check the files already downloaded against the Hub's sha256 instead (a damaged one is removed); exit 1 when any is bad.",
        ),
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Download a model and its projector from Hugging Face (resumable; every file is checked against the Hub's sha256).

    Examples:

      mmchat pull gemma-4-E2B-it

      mmchat pull hf:ggml-org/SmolVLM2-500M-Video-Instruct-GGUF:Q8_0

      mmchat pull --verify gemma-4-E2B-it
    """
    from ..models import pulls

    env = current()
    if verify:
        from ..models.pulls import verify_pulled

        verify_pulled(name, quant=quant, progress=not quiet, report=lambda line: print(line, file=env.stdout))
        return
    from .diagnostics import install

    install(quiet=quiet)  # -q: the pull's warnings only, no notices
    resolved = pulls.download_model(name, quant=quant, progress=not quiet)
    if not quiet:
        env.notice(f"{resolved.name or name} is ready: {resolved.model}")


@app.command()
@guarded
def doctor() -> None:
    """Versions, llama.cpp's backends and GPU offload, paths, and downloaded models (facts a bug report needs)."""
    import platform

    from .. import __version__, config
    from ..engine._lib import backend_report
    from ..models import registry

    lines = [
        f"mmchat {__version__}, Python {platform.python_version()} on {platform.platform()}",
        "packages: "
        + ", ".join(
            f"{p} {_version(p)}"
            for p in (
                "llama-cpp-python",
                "av",
                "pillow",
                "pillow-heif",
                "soundfile",
                "soxr",
                "numpy",
                "huggingface_hub",
            )
        ),
    ]
    report = backend_report()
    lines += [
        f"llama.cpp backends: {', '.join(report['devices']) or 'CPU'}",
        f"GPU offload: {'yes' if report['gpu_offload'] else 'no (CPU only; reinstall with CMAKE_ARGS=-DGGML_CUDA=on or -DGGML_METAL=on)'}",
        f"CPU features: {report['system_info']}",
        *_where_it_runs(report["gpu_offload"], report["projector_gpu"]),
        f"threads by default: {report['threads']} (physical cores)",
        f"config: {config.config_file()}",
        f"user models file: {registry.user_file()}",
        f"data dir (history): {config.user_dir()}",
        f"media cache: {config.cache_dir()} (`mmchat cache`)",
    ]
    try:
        from huggingface_hub import constants

        lines.append(f"model cache: {constants.HF_HUB_CACHE}")
    except ImportError:  # pragma: no cover
        pass
    with silenced():  # doctor reports facts; models.toml's own problems are `mmchat models`'s to say
        known = registry.load_registry()
    downloaded = [e.name for e, done in registry.list_models(known=known) if done]
    lines.append(f"downloaded models: {', '.join(downloaded) if downloaded else 'none (mmchat pull NAME)'}")
    lines += [f"  {name}: {problem}" for name in downloaded if (problem := _files_problem(name, known))]
    print("\n".join(lines), file=current().stdout)


def _where_it_runs(gpu: bool, projector_gpu: str | None) -> list[str]:
    """Where `ask`, `chat` and `batch` put the text model and the projector on this build, with
    config.toml's gpu-layers and mmproj-offload (the flags override them per command)."""
    from .. import config
    from ..engine.placement import plan
    from ..errors import InputError
    from ..options import LoadOptions

    with silenced():  # the broken file was said as the command started
        defaults = config.load_user_defaults()
    given = {"n_gpu_layers": defaults.get("gpu_layers"), "mmproj_offload": defaults.get("mmproj_offload")}
    try:
        load = LoadOptions.build(given, label=lambda f: f"{f.metadata['flags'][0].split('/')[0].lstrip('-')} = ")
    except InputError as e:
        return [f"where models run: unknown, {config.config_file()} says {e}"]
    where = plan(
        gpu=gpu, n_gpu_layers=load.n_gpu_layers, mmproj_offload=load.mmproj_offload, gpu_name=projector_gpu or "GPU"
    )
    text, projector = where.describe_text_model(), where.describe_projector()
    if not gpu:
        text = projector = "CPU (this build has no GPU backend)"
    else:
        text += (
            " (gpu-layers in config.toml)"
            if given["n_gpu_layers"] is not None
            else " (--gpu-layers N to keep some on the CPU)"
        )
        projector += (
            " (mmproj-offload in config.toml)"
            if given["mmproj_offload"] is not None
            else " (--no-mmproj-offload keeps it on the CPU)"
        )
    return [f"text model runs on: {text}", f"projector runs on: {projector}"]


def _files_problem(name: str, known: Registry) -> str | None:
    """What the checks llama.cpp is spared (models/pairs.py) say about a downloaded model's files."""
    from ..errors import MmchatError
    from ..models import registry
    from ..models.pairs import check_files

    try:
        resolved = registry.find_local(name, known=known)
        check_files(resolved.model, resolved.mmproj)
    except MmchatError as e:
        return str(e)
    return None


cache_app = typer.Typer(
    help="The caches on disk: encoded images, audio and frames, and conversations' saved KV states.",
    no_args_is_help=False,
)
app.add_typer(cache_app, name="cache")


@cache_app.callback(invoke_without_command=True)
@guarded
def cache(ctx: typer.Context) -> None:
    """Where the media cache and the saved KV states are, how many entries each holds and how much disk they take.

    Examples:

      mmchat cache

      mmchat cache clear
    """
    if ctx.invoked_subcommand is not None:
        return
    from .. import config
    from ..engine.embeddings import cache_info

    env = current()
    directory = config.cache_dir()
    entries, size = cache_info(directory) if (directory / "cache.db").is_file() else (0, 0)
    print(f"location: {directory}\nentries: {entries}\nsize: {_size(size)}", file=env.stdout)
    states, state_bytes = _kv_states().info()
    print(f"kv states: {config.kv_state_dir()}\nkv entries: {states}\nkv size: {_size(state_bytes)}", file=env.stdout)


@cache_app.command("clear")
@guarded
def cache_clear() -> None:
    """Remove every entry from the media cache and every saved KV state (media are encoded, and continued
    conversations evaluated, again when next used)."""
    from .. import config
    from ..engine.embeddings import clear_cache

    directory = config.cache_dir()
    removed = clear_cache(directory) if (directory / "cache.db").is_file() else 0
    current().notice(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {directory}")
    states = _kv_states().clear()
    current().notice(f"removed {states} saved KV state{'s' * (states != 1)} from {config.kv_state_dir()}")


def _kv_states():
    from .. import config
    from ..engine.kvstate import DiskStates

    return DiskStates(config.kv_state_dir(), config.DEFAULT_KV_STATE_CACHE_BYTES)


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
