"""The `mmchat` command: parse, call the core, render. Heavy imports wait until needed."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

from . import config
from .errors import ExitCode, InputError, MmchatError

app = typer.Typer(
    name="mmchat",
    help="Chat with local multimodal GGUF models: images, audio, video and text, on llama.cpp.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

MEDIA_FLAGS = {"image": ("--image", "-i"), "audio": ("--audio", "-a"), "video": ("--video",)}

# -- options shared by ask and chat ----------------------------------------------------------
Image = Annotated[list[str], typer.Option("--image", "-i", help="Image path or URL (file://, https://, data:, '-'). Repeatable.")]
Audio = Annotated[list[str], typer.Option("--audio", "-a", help="Audio path or URL. Repeatable; the order across --image/--audio/--video is kept.")]
Video = Annotated[list[str], typer.Option("--video", help="Video path or URL: sampled frames with timestamps, and its sound when the model hears. Repeatable.")]
Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Registry name (see `mmchat models`), path to a GGUF, or hf:owner/repo[:QUANT]. [default: the registry's default]")]
Mmproj = Annotated[Optional[str], typer.Option(help="Multimodal projector GGUF. [default: the model's, or the mmproj*.gguf next to it]")]
System = Annotated[Optional[str], typer.Option(help="System prompt.")]
MaxTokens = Annotated[int, typer.Option("--max-tokens", "-n", help="Most tokens to generate.")]
Temperature = Annotated[float, typer.Option("--temperature", "-t", help="0 is greedy (deterministic).")]
TopK = Annotated[int, typer.Option(help="Top-k sampling (0 = off).")]
TopP = Annotated[float, typer.Option(help="Top-p sampling (1 = off).")]
MinP = Annotated[float, typer.Option(help="Min-p sampling (0 = off).")]
RepeatPenalty = Annotated[float, typer.Option(help="Repeat penalty (1 = off).")]
Seed = Annotated[int, typer.Option(help="Sampling seed; -1 picks one at random.")]
Stop = Annotated[list[str], typer.Option(help="Stop generating at this text. Repeatable.")]
CtxSize = Annotated[int, typer.Option("--ctx-size", "-c", help="Context window in tokens.")]
GpuLayers = Annotated[Optional[int], typer.Option(help="Layers to offload to the GPU. [default: all when llama.cpp has a GPU backend, else 0]")]
Threads = Annotated[Optional[int], typer.Option(help="CPU threads. [default: physical cores]")]
ChatTemplate = Annotated[Optional[str], typer.Option(help="Jinja template file or llama.cpp built-in name (e.g. chatml), for GGUFs without one.")]
ImageMaxSide = Annotated[int, typer.Option(help="Scale images down so the long side is at most this many pixels (0 = never).")]
ImageMaxTokens = Annotated[Optional[int], typer.Option(help="Cap on tokens per image for dynamic-resolution models (Qwen-VL).")]
Fps = Annotated[float, typer.Option(help="Video frames sampled per second.")]
MaxFrames = Annotated[int, typer.Option(help="Most frames per video; more are spread evenly over it.")]
Start = Annotated[Optional[str], typer.Option(help="Video segment start (seconds or mm:ss).")]
End = Annotated[Optional[str], typer.Option(help="Video segment end (seconds or mm:ss).")]
FrameMaxSide = Annotated[int, typer.Option(help="Scale video frames down so the long side is at most this many pixels (0 = never).")]
VideoAudio = Annotated[bool, typer.Option("--video-audio/--no-video-audio", help="Give the model a video's soundtrack when it hears.")]
Pull = Annotated[bool, typer.Option("--pull", help="Download the model first if it is not there yet.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No notices or progress on stderr.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show llama.cpp's own log and stats on stderr.")]
NoColor = Annotated[bool, typer.Option("--no-color", help="No colour or Markdown styling (also NO_COLOR=1).")]


class MediaOrderCommand(TyperCommand):
    """Keeps the raw arguments, so media flags keep their order across kinds."""

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


def fail(error: MmchatError) -> typer.Exit:
    """One line on stderr, then the exit code; tracebacks only with MMCHAT_DEBUG=1."""
    if os.environ.get("MMCHAT_DEBUG") == "1":
        raise error
    lines = str(error).strip().splitlines()
    typer.echo(f"mmchat: error: {lines[0] if lines else type(error).__name__}", err=True)
    return typer.Exit(int(error.exit_code))


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"mmchat {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """Chat with local multimodal GGUF models: images, audio, video and text, on llama.cpp."""


def _read_stdin_text() -> str:
    try:
        if sys.stdin is None or sys.stdin.isatty():
            return ""
        return sys.stdin.read()
    except (OSError, ValueError):
        return ""


def _notice(quiet: bool):
    return (lambda m: None) if quiet else (lambda m: typer.echo(f"mmchat: {m}", err=True))


def load_runner(model, mmproj, *, pull: bool, quiet: bool, verbose: bool, **kwargs):
    """Resolve the model (registry name, path, hf:) and load it, with a spinner on a terminal."""
    from pathlib import Path

    from .render import stderr_console, stderr_progress
    from .runner import Runner

    notice = _notice(quiet)
    if model is None or not Path(model).expanduser().is_file():
        from . import registry

        resolved = registry.resolve(model, pull=pull, progress=not quiet, warn=notice)
        model, mmproj = resolved.model, mmproj or resolved.mmproj
    console = stderr_console()
    show = console.is_terminal and not quiet and not verbose
    with console.status(f"loading {Path(model).name}…") if show else contextlib.nullcontext():
        return Runner(model, mmproj, verbose=verbose, notice=notice, progress=stderr_progress(console, quiet), **kwargs)


def _schema_grammar(schema: str | None, grammar: str | None) -> str | None:
    from pathlib import Path

    if schema and grammar:
        raise InputError("--schema and --grammar both constrain the answer: give one of them")
    if grammar:
        path = Path(grammar).expanduser()
        if not path.is_file():
            raise InputError(f"grammar file not found: {grammar}: give a GBNF file")
        return path.read_text(encoding="utf-8")
    if not schema:
        return None
    import json

    from .engine.grammar import schema_to_grammar

    if schema.lstrip().startswith("{"):
        text = schema  # JSON itself (and often longer than a file name may be)
    else:
        path = Path(schema).expanduser()
        if not path.is_file():
            raise InputError(f"--schema is neither a JSON file nor JSON text: {schema[:60]}")
        text = path.read_text(encoding="utf-8")
    try:
        json.loads(text)
    except ValueError as e:
        raise InputError(f"--schema is not valid JSON ({e}): check {schema[:60]}") from None
    return schema_to_grammar(text)


@app.command(cls=MediaOrderCommand)
def ask(
    ctx: typer.Context,
    prompt: Annotated[Optional[str], typer.Argument(help="The question; [[1]], [[2]]… place media in it. '-' reads it from stdin; piped text is added after it.", show_default=False)] = None,
    image: Image = [], audio: Audio = [], video: Video = [],
    model: Model = None, mmproj: Mmproj = None, system: System = None,
    max_tokens: MaxTokens = config.DEFAULT_MAX_TOKENS, temperature: Temperature = config.DEFAULT_TEMPERATURE,
    top_k: TopK = config.DEFAULT_TOP_K, top_p: TopP = config.DEFAULT_TOP_P, min_p: MinP = config.DEFAULT_MIN_P,
    repeat_penalty: RepeatPenalty = config.DEFAULT_REPEAT_PENALTY, seed: Seed = config.DEFAULT_SEED, stop: Stop = [],
    ctx_size: CtxSize = config.DEFAULT_N_CTX, gpu_layers: GpuLayers = None, threads: Threads = None,
    chat_template: ChatTemplate = None, image_max_side: ImageMaxSide = config.DEFAULT_IMAGE_MAX_SIDE,
    image_max_tokens: ImageMaxTokens = None,
    fps: Fps = config.DEFAULT_VIDEO_FPS, max_frames: MaxFrames = config.DEFAULT_VIDEO_MAX_FRAMES,
    start: Start = None, end: End = None, video_audio: VideoAudio = True,
    frame_max_side: FrameMaxSide = config.DEFAULT_VIDEO_FRAME_MAX_SIDE,
    schema: Annotated[Optional[str], typer.Option(help="Constrain the answer to this JSON schema (a file or JSON text).")] = None,
    grammar: Annotated[Optional[str], typer.Option(help="Constrain the answer with a GBNF grammar file.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one chat.completion JSON object (with usage and timings).")] = False,
    no_stream: Annotated[bool, typer.Option("--no-stream", help="Print the answer once it is complete.")] = False,
    stats: Annotated[bool, typer.Option("--stats", help="Print speed and token counts on stderr.")] = False,
    pull: Pull = False, quiet: Quiet = False, verbose: Verbose = False, no_color: NoColor = False,
) -> None:
    """Ask one question about images, audio, video and text; the answer goes to stdout.

    Examples:

      mmchat ask "What is in this picture?" --image photo.jpg

      mmchat ask "Transcribe this." --audio talk.mp3 --temperature 0

      mmchat ask "What changed between [[1]] and [[2]]?" -i before.png -i after.png

      cat notes.txt | mmchat ask "Summarize this." --json
    """
    from .render import Output, stderr_console

    output = Output(json_mode=json_output, no_color=no_color)
    stream = runner = None
    try:
        from . import messages as msgs

        media = ordered_media(ctx.meta.get("mmchat.argv", []), {"image": image, "audio": audio, "video": video})
        reads_stdin = any(url == "-" for _, url in media)
        if prompt == "-":
            if reads_stdin:
                raise InputError("stdin can hold the prompt or a media file, not both")
            prompt = _read_stdin_text()
        elif not reads_stdin:
            piped = _read_stdin_text()
            if piped.strip():
                prompt = f"{prompt}\n\n{piped}" if prompt else piped
        segment = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
        parts = [msgs.media_part(kind, url, **(segment if kind == "video" else {})) for kind, url in media]
        conversation = ([msgs.system_message(system)] if system else []) + [msgs.user_message(prompt, parts)]
        sampling = dict(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                        repeat_penalty=repeat_penalty, seed=seed, stop=stop, grammar=_schema_grammar(schema, grammar))
        runner = load_runner(model, mmproj, pull=pull, quiet=quiet, verbose=verbose, n_ctx=ctx_size,
                             n_gpu_layers=gpu_layers, threads=threads, chat_template=chat_template,
                             image_max_side=image_max_side or None, image_max_tokens=image_max_tokens,
                             video_fps=fps, video_max_frames=max_frames, video_audio=video_audio,
                             video_max_side=frame_max_side or None)
        stream = runner.stream(conversation, **sampling)
        if no_stream:
            list(stream)
            output.stream([stream.text])
        else:
            output.stream(stream)
        completion = stream.completion
        if json_output:
            output.json(completion.to_dict())
        if stats or verbose:
            print_stats(stderr_console(no_color), completion)
    except MmchatError as e:
        raise fail(e) from None
    except BrokenPipeError:  # `mmchat ask ... | head`: the reader has all it wants; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except KeyboardInterrupt:
        if stream is not None and stream.text and (json_output or no_stream):
            output.stream([stream.text])  # the partial answer is kept
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    finally:
        if runner is not None:
            runner.close_progress()  # a bar cut short by Ctrl-C or an error is cleared


def print_stats(console, completion) -> None:
    u, t = completion.usage, completion.timings
    console.print(
        f"[dim]{u.prompt_tokens} prompt tokens ({u.cached_tokens} cached, {u.image_tokens} image, {u.audio_tokens} audio), "
        f"{u.completion_tokens} generated at {t.tokens_per_second(u.completion_tokens):.1f} tokens/s; "
        f"first token after {t.first_token:.2f} s (media encode {t.media_encode:.2f} s, load {t.load:.2f} s)[/dim]"
    )


@app.command(cls=MediaOrderCommand)
def chat(
    ctx: typer.Context,
    image: Image = [], audio: Audio = [], video: Video = [],
    model: Model = None, mmproj: Mmproj = None, system: System = None,
    max_tokens: MaxTokens = config.DEFAULT_MAX_TOKENS, temperature: Temperature = config.DEFAULT_TEMPERATURE,
    top_k: TopK = config.DEFAULT_TOP_K, top_p: TopP = config.DEFAULT_TOP_P, min_p: MinP = config.DEFAULT_MIN_P,
    repeat_penalty: RepeatPenalty = config.DEFAULT_REPEAT_PENALTY, seed: Seed = config.DEFAULT_SEED, stop: Stop = [],
    ctx_size: CtxSize = config.DEFAULT_N_CTX, gpu_layers: GpuLayers = None, threads: Threads = None,
    chat_template: ChatTemplate = None, image_max_side: ImageMaxSide = config.DEFAULT_IMAGE_MAX_SIDE,
    image_max_tokens: ImageMaxTokens = None,
    fps: Fps = config.DEFAULT_VIDEO_FPS, max_frames: MaxFrames = config.DEFAULT_VIDEO_MAX_FRAMES,
    video_audio: VideoAudio = True, frame_max_side: FrameMaxSide = config.DEFAULT_VIDEO_FRAME_MAX_SIDE,
    pull: Pull = False, quiet: Quiet = False, verbose: Verbose = False, no_color: NoColor = False,
) -> None:
    """Talk with a model in the terminal: attach media as you go, follow-ups never re-encode them.

    Media given here are attached to the first message. Inside, /help lists the commands
    (/attach, /detach, /retry, /undo, /save, /load, /model, /set, ...).

    Examples:

      mmchat chat --image photo.jpg

      mmchat chat -m qwen2.5-vl-3b --system "Answer briefly."
    """

    from .render import stdout_console
    from .repl import run_chat

    media = ordered_media(ctx.meta.get("mmchat.argv", []), {"image": image, "audio": audio, "video": video})
    first_model = model

    def factory(name: str | None):
        return load_runner(name or None, mmproj if name == first_model else None, pull=pull, quiet=quiet, verbose=verbose,
                           n_ctx=ctx_size, n_gpu_layers=gpu_layers, threads=threads, chat_template=chat_template,
                           image_max_side=image_max_side or None, image_max_tokens=image_max_tokens,
                           video_fps=fps, video_max_frames=max_frames, video_audio=video_audio,
                           video_max_side=frame_max_side or None)

    sampling = dict(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                    repeat_penalty=repeat_penalty, seed=seed, stop=stop)
    code = run_chat(factory, model_name=model or "", sampling=sampling, system=system, attachments=media,
                    history_path=config.user_dir() / "history", console=stdout_console(no_color))
    raise typer.Exit(code)


@app.command()
def models(
    json_output: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the models mmchat knows by name, what they take, and which are downloaded.

    Examples:

      mmchat models

      mmchat models --json | jq '.[] | select(.downloaded)'
    """
    from .commands_models import list_models

    try:
        list_models(json_output)
    except MmchatError as e:
        raise fail(e) from None


@app.command()
def pull(
    name: Annotated[str, typer.Argument(help="Registry name or hf:owner/repo[:QUANT].")],
    quant: Annotated[Optional[str], typer.Option(help="Quantization to download, e.g. Q8_0. [default: the registry's]")] = None,
    quiet: Quiet = False,
) -> None:
    """Download a model and its projector from Hugging Face (resumable).

    Examples:

      mmchat pull gemma-4-E2B-it

      mmchat pull hf:ggml-org/SmolVLM2-500M-Video-Instruct-GGUF:Q8_0
    """
    from . import registry

    try:
        resolved = registry.pull(name, quant=quant, progress=not quiet, warn=_notice(quiet))
    except MmchatError as e:
        raise fail(e) from None
    except KeyboardInterrupt:
        typer.echo("mmchat: download interrupted; run the same command to resume", err=True)
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    if not quiet:
        typer.echo(f"mmchat: {resolved.name or name} is ready: {resolved.model}", err=True)


@app.command()
def doctor() -> None:
    """Versions, llama.cpp's backends and GPU offload, paths, and downloaded models."""
    from .commands_models import doctor as run_doctor

    try:
        run_doctor()
    except MmchatError as e:
        raise fail(e) from None


def main() -> None:
    defaults = config.load_user_defaults(warn=_notice(False))
    app(default_map={"ask": defaults, "chat": defaults} if defaults else None)
