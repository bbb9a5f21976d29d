"""`mmchat ask`: one question, one answer on stdout."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..env import Environment, current
from ..errors import InputError
from .app import app, guarded
from .loading import open_runner
from .logflags import LogRequest, log_options, start_log
from .params import Flags, MediaOrderCommand, constrained, model_flags

if TYPE_CHECKING:  # the core loads when a command runs, not for --help
    from ..results import ChatCompletion, CompletionStream
    from ..runner import Runner

Prompt = Annotated[
    Optional[str],
    typer.Argument(
        help="The question; [[1]], [[2]]… place media in it. '-' reads it from stdin; piped text is added after it.",
        show_default=False,
    ),
]
Start = Annotated[Optional[str], typer.Option(help="Where audio and video start (seconds or mm:ss).")]
End = Annotated[Optional[str], typer.Option(help="Where audio and video end (seconds or mm:ss).")]
Schema = Annotated[Optional[str], typer.Option(help="Constrain the answer to this JSON schema (a file or JSON text).")]
Grammar = Annotated[Optional[str], typer.Option(help="Constrain the answer with a GBNF grammar file.")]
Json = Annotated[bool, typer.Option("--json", help="Print one chat.completion JSON object (with usage and timings).")]
NoStream = Annotated[bool, typer.Option("--no-stream", help="Print the answer once it is complete.")]
Stats = Annotated[bool, typer.Option("--stats", help="Print speed and token counts on stderr.")]


@app.command(cls=MediaOrderCommand)
@guarded
@model_flags
@log_options
def ask(
    ctx: typer.Context,
    prompt: Prompt = None,
    start: Start = None,
    end: End = None,
    schema: Schema = None,
    grammar: Grammar = None,
    json_output: Json = False,
    no_stream: NoStream = False,
    stats: Stats = False,
    *,
    flags: Flags,
    log: LogRequest,
) -> None:
    """Ask one question about images, audio, video and text; the answer goes to stdout.

    Examples:

      mmchat ask "What is in this picture?" --image photo.jpg

      mmchat ask "Transcribe this." --audio talk.mp3 --temperature 0

      mmchat ask "What changed between [[1]] and [[2]]?" -i before.png -i after.png

      cat notes.txt | mmchat ask "Summarize this." --json

      mmchat ask --continue "And the colours?"
    """
    from ..inputs.part import DEVICES
    from ..messages import parse_conversation
    from ..render import Output

    env = current()
    options = constrained(flags.generation, schema, grammar)
    log_turns = start_log(log, env, flags.quiet)
    conversation = parse_conversation(log_turns.messages(_messages(flags, env, prompt, start, end)))  # once
    output = Output(
        json_mode=json_output,
        markdown=env.markdown(flags.no_color),
        file=env.stdout,
        markdown_console=env.stdout_console(flags.no_color),
    )
    model, mmproj = log_turns.model(flags)
    runner = open_runner(flags, env, model, mmproj, on_completion=log_turns.hook(model, mmproj))
    if any(part.location.scheme in DEVICES for part in conversation.media()):
        from ..inputs.capture import Terminal, captured  # clipboard:, screen: and mic: captured now, kept as files

        terminal = Terminal(env.stdin, env.stderr if env.isatty("stderr") else None, env.isatty("stdin"))
        conversation = captured(conversation, check=runner.check_kind, terminal=terminal)
    shown = None if json_output else part_previews(env, flags, runner, len(conversation) - 1)
    try:
        completion = _answer(
            runner, runner.stream(conversation, options, on_media=shown), output, json_output, no_stream
        )
    finally:
        runner.close_progress()  # a bar cut short by Ctrl-C or an error is cleared
    if log_turns.logger is not None:  # logged: `--continue` may follow, and restores this instead of evaluating it
        runner.save_state()  # after the answer is out, so it never delays it
    if stats or flags.verbose:
        print_stats(env, flags, completion)


def _messages(flags: Flags, env: Environment, prompt: str | None, start: str | None, end: str | None) -> list:
    """The conversation: the system prompt, then the media in flag order and the prompt (and piped text),
    each media flag parsed once here."""
    from .. import messages as msgs
    from ..inputs import part as part_location
    from ..inputs.claims import told

    reads_stdin = any(url == "-" for _, url in flags.media)
    if prompt == "-":
        if reads_stdin:
            raise InputError("stdin can hold the prompt or a media file, not both")
        prompt = env.read_piped_text()
    elif not reads_stdin:
        piped = env.read_piped_text()
        if piped.strip():
            prompt = f"{prompt}\n\n{piped}" if prompt else piped
    segment = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    parts = []
    for kind, url in flags.media:
        where = part_location.locate(url)
        kind = told(where) if kind == "file" else kind  # -i: a local file's medium from its bytes, now
        parts.append(msgs.MediaPart(kind, where, segment if kind != "image" else {}))
    return ([msgs.system_message(flags.system)] if flags.system else []) + [msgs.user_turn(prompt, parts)]


def part_previews(env: Environment, flags: Flags, runner: Runner, last: int) -> Callable[[Any, list], None] | None:
    """`--preview`: each media part of the new message (`last`; not those `--continue` sends again)
    drawn on stderr (a terminal) as the model gets it, before the answer."""
    from ..preview import Previewer, label_of, part_extent

    previewer = Previewer.for_stream(
        env,
        "stderr",
        setting=flags.display.preview,
        default=False,
        no_color=flags.no_color,
        rows=flags.display.preview_rows,
    )
    if previewer is None:
        return None

    def show(ref: Any, segments: list) -> None:
        if not ref.where.startswith(f"messages[{last}]"):
            return
        costs = runner.media_costs([s for s in segments if not isinstance(s, str)])
        start, total = part_extent(ref)
        previewer.show(label_of(ref.location), ref.kind, segments, costs, start=start, total=total)

    return show


def _answer(runner: Runner, stream: CompletionStream, output, json_output: bool, no_stream: bool) -> ChatCompletion:
    """Stream (or hold) the answer; interrupted, what came is still printed (one JSON object with --json)."""
    try:
        if no_stream:
            list(stream)
            output.stream([stream.text])
        else:
            output.stream(stream)
    except KeyboardInterrupt:
        if json_output:
            output.json(stream.partial().to_dict())
        elif no_stream and stream.text:
            output.stream([stream.text])
        raise
    if json_output:
        output.json(stream.completion.to_dict())
    return stream.completion


def print_stats(env: Environment, flags: Flags, completion: ChatCompletion) -> None:
    from ..render import usage_lines

    for line in usage_lines(completion):
        env.stderr_console(flags.no_color).print(line, style="dim", markup=False)
