"""The `mmchat` command: parse, call the core, print. Heavy imports wait until needed."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

from . import config
from .errors import ExitCode, MmchatError

app = typer.Typer(
    name="mmchat",
    help="Chat with local multimodal GGUF models: images, audio and text, on llama.cpp.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

MEDIA_FLAGS = {"image": ("--image", "-i"), "audio": ("--audio", "-a")}


class MediaOrderCommand(TyperCommand):
    """Keeps the raw arguments, so media given as --image/--audio keep their order across kinds."""

    def parse_args(self, ctx, args):
        ctx.meta["mmchat.argv"] = list(args)
        return super().parse_args(ctx, args)


def media_order(argv: list[str], flags: dict[str, tuple[str, ...]] = MEDIA_FLAGS) -> list[str]:
    """The kinds of the media flags in the order they stand on the command line."""
    by_flag = {f: kind for kind, names in flags.items() for f in names}
    order = []
    it = iter(argv)
    for arg in it:
        if arg == "--":
            break
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg
        if name in by_flag:
            order.append(by_flag[name])
            if "=" not in arg:
                next(it, None)
    return order


def ordered_media(argv: list[str], given: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(kind, url) pairs in command-line order; falls back to kind order if argv is unclear."""
    pending = {k: list(v) for k, v in given.items()}
    out = []
    for kind in media_order(argv):
        if pending.get(kind):
            out.append((kind, pending[kind].pop(0)))
    for kind, rest in pending.items():
        out.extend((kind, url) for url in rest)
    return out


def fail(error: MmchatError | str, code: int = ExitCode.USAGE) -> typer.Exit:
    """One line on stderr, then the exit code; tracebacks only with MMCHAT_DEBUG=1."""
    if isinstance(error, MmchatError):
        code = int(error.exit_code)
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    typer.echo(f"mmchat: error: {message}", err=True)
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"mmchat {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """Chat with local multimodal GGUF models: images, audio and text, on llama.cpp."""


def _read_stdin_text() -> str:
    try:
        if sys.stdin is None or sys.stdin.isatty():
            return ""
        return sys.stdin.read()
    except (OSError, ValueError):
        return ""


@app.command(cls=MediaOrderCommand)
def ask(
    ctx: typer.Context,
    prompt: Annotated[Optional[str], typer.Argument(help="The question. '-' reads it from stdin; piped stdin text is added after it.")] = None,
    image: Annotated[list[str], typer.Option("--image", "-i", help="Image path or URL (file://, https://, data:, '-'). Repeatable.")] = [],
    audio: Annotated[list[str], typer.Option("--audio", "-a", help="Audio path or URL. Repeatable; order with --image is kept.")] = [],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Registry name, path to a GGUF, or hf:owner/repo[:QUANT]. [default: the registry's default]")] = None,
    mmproj: Annotated[Optional[str], typer.Option(help="Multimodal projector GGUF. [default: the mmproj*.gguf next to the model]")] = None,
    system: Annotated[Optional[str], typer.Option(help="System prompt.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", "-n", help="Most tokens to generate.")] = config.DEFAULT_MAX_TOKENS,
    temperature: Annotated[float, typer.Option("--temperature", "-t", help="0 is greedy (deterministic).")] = config.DEFAULT_TEMPERATURE,
    top_k: Annotated[int, typer.Option(help="Top-k sampling (0 = off).")] = config.DEFAULT_TOP_K,
    top_p: Annotated[float, typer.Option(help="Top-p sampling (1 = off).")] = config.DEFAULT_TOP_P,
    min_p: Annotated[float, typer.Option(help="Min-p sampling (0 = off).")] = config.DEFAULT_MIN_P,
    repeat_penalty: Annotated[float, typer.Option(help="Repeat penalty (1 = off).")] = config.DEFAULT_REPEAT_PENALTY,
    seed: Annotated[int, typer.Option(help="Sampling seed; -1 picks one at random.")] = config.DEFAULT_SEED,
    stop: Annotated[list[str], typer.Option(help="Stop generating at this text. Repeatable.")] = [],
    ctx_size: Annotated[int, typer.Option("--ctx-size", "-c", help="Context window in tokens.")] = config.DEFAULT_N_CTX,
    gpu_layers: Annotated[Optional[int], typer.Option(help="Layers to offload to the GPU. [default: all when llama.cpp has a GPU backend, else 0]")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads. [default: physical cores]")] = None,
    chat_template: Annotated[Optional[str], typer.Option(help="Jinja template file or llama.cpp built-in name, for GGUFs without one.")] = None,
    image_max_side: Annotated[int, typer.Option(help="Scale images down so the long side is at most this many pixels (0 = never).")] = config.DEFAULT_IMAGE_MAX_SIDE,
    image_max_tokens: Annotated[Optional[int], typer.Option(help="Cap on tokens per image for dynamic-resolution models.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one chat.completion JSON object instead of the text.")] = False,
    pull: Annotated[bool, typer.Option("--pull", help="Download the model first if it is not there yet.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No notices or progress on stderr.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show llama.cpp's own log on stderr.")] = False,
) -> None:
    """Ask one question about images, audio and text; the answer streams to stdout.

    Examples:

      mmchat ask "What is in this picture?" --image photo.jpg

      mmchat ask "Transcribe this." --audio talk.mp3 --temperature 0

      cat notes.txt | mmchat ask "Summarize this."
    """
    notice = (lambda m: None) if quiet else (lambda m: typer.echo(f"mmchat: {m}", err=True))
    try:
        from . import messages as msgs

        media = ordered_media(ctx.meta.get("mmchat.argv", []), {"image": image, "audio": audio})
        reads_stdin = any(url == "-" for _, url in media)
        if prompt == "-":
            if reads_stdin:
                raise MmchatError("stdin can hold the prompt or a media file, not both")
            prompt = _read_stdin_text()
        elif not reads_stdin:
            piped = _read_stdin_text()
            if piped.strip():
                prompt = f"{prompt}\n\n{piped}" if prompt else piped
        parts = [msgs.media_part(kind, url) for kind, url in media]
        conversation = ([msgs.system_message(system)] if system else []) + [msgs.user_message(prompt, parts)]

        runner = _load_runner(model, mmproj, pull=pull, quiet=quiet, verbose=verbose, notice=notice,
                              n_ctx=ctx_size, n_gpu_layers=gpu_layers, threads=threads, chat_template=chat_template,
                              image_max_side=image_max_side or None, image_max_tokens=image_max_tokens)
        options = dict(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                       repeat_penalty=repeat_penalty, seed=seed, stop=stop)
        stream = runner.stream(conversation, **options)
        out = sys.stdout
        try:
            for delta in stream:
                if not json_output:
                    out.write(delta)
                    out.flush()
        except KeyboardInterrupt:
            if not json_output and stream.text:
                out.write("\n")
                out.flush()
            raise
        completion = stream.completion
        if json_output:
            out.write(json.dumps(completion.to_dict(), ensure_ascii=False) + "\n")
        elif not completion.content.endswith("\n"):
            out.write("\n")
        out.flush()
    except MmchatError as e:
        raise fail(e) from None
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.INTERRUPTED) from None


def _load_runner(model, mmproj, *, pull: bool, quiet: bool, verbose: bool, notice, **kwargs):
    from pathlib import Path

    from .runner import Runner

    if model is None or not Path(model).expanduser().is_file():
        from . import registry

        resolved = registry.resolve(model, pull=pull, progress=not quiet)
        model, mmproj = resolved.model, mmproj or resolved.mmproj
    return Runner(model, mmproj, verbose=verbose, notice=notice, **kwargs)


def main() -> None:
    if os.environ.get("MMCHAT_DEBUG") == "1":
        app.pretty_exceptions_enable = True
    app()
