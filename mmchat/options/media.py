"""How media are prepared for the model (image caps, video sampling, PDF pages, download
bounds), a video part's own options, and how attachments are shown in the terminal."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .. import config
from ..values import PAGES, Rule, check, parse_segment, parse_size
from ..values import as_number as _as_number
from ..values import is_bool as _is_bool
from ..values import number as _number
from ..values import whole as _whole
from .fields import VIDEO_FPS, VIDEO_MAX_FRAMES, _Options, option


@dataclasses.dataclass(frozen=True)
class MediaOptions(_Options):
    """How media are decoded before the model sees them; a request may change them."""

    image_max_side: int = option(
        config.DEFAULT_IMAGE_MAX_SIDE,
        Rule("a whole number >= 0 (0 = never)", _whole(0)),
        "Scale images down so the long side is at most this many pixels (0 = never).",
        flags=("--image-max-side",),
        type=int,
    )
    video_fps: float = option(
        config.DEFAULT_VIDEO_FPS, VIDEO_FPS, "Video frames sampled per second.", flags=("--fps",), type=float
    )
    video_max_frames: int = option(
        config.DEFAULT_VIDEO_MAX_FRAMES,
        VIDEO_MAX_FRAMES,
        "Most frames per video; more are spread evenly over it.",
        flags=("--max-frames",),
        type=int,
    )
    video_audio: bool = option(
        True,
        Rule("true or false", _is_bool),
        "Give the model a video's soundtrack when it hears.",
        flags=("--video-audio/--no-video-audio",),
        type=bool,
    )
    video_keep_all_frames: bool = option(
        False,
        Rule("true or false", _is_bool),
        "Send every sampled video frame, even one unchanged since the last (by default such a frame is "
        "a line of text, '[00:12-00:41] unchanged', and costs no encode).",
        flags=("--keep-all-frames/--skip-unchanged-frames",),
        type=bool,
    )
    video_max_side: int = option(
        config.DEFAULT_VIDEO_FRAME_MAX_SIDE,
        Rule("a whole number >= 0 (0 = never)", _whole(0)),
        "Scale video frames down so the long side is at most this many pixels (0 = never).",
        flags=("--frame-max-side",),
        type=int,
    )
    pdf_pages: str | None = option(
        None,
        Rule(
            "pages such as 3, 2-5 or 1,4-6",
            lambda v: v is None or (isinstance(v, str) and PAGES.fullmatch(v.replace(" ", "")) is not None),
        ),
        f"PDF pages to read, e.g. 2-5 (default: the first {config.DEFAULT_PDF_MAX_PAGES}); "
        "a part's URL may say #page=2-5.",
        flags=("--pages",),
        type=str,
        show_default=False,
    )
    url_deadline: float = option(
        config.DEFAULT_URL_DEADLINE,
        Rule("a number of seconds > 0", _number(above=0)),
        "Most seconds one http(s) media URL may take to download, all of it.",
        flags=("--url-deadline",),
        type=float,
    )
    url_speed_limit: int = option(
        config.DEFAULT_URL_SPEED_LIMIT,
        Rule('bytes a second, or with K or M ("1K"); 0 is off', lambda v: parse_size(v) is not None),
        "A media download slower than this (bytes a second; 1K, 10K...) for --speed-time "
        "seconds ends, as curl's; 0 = never. [default: 1K]",
        flags=("--speed-limit",),
        type=str,
        show_default=False,
    )
    url_speed_time: float = option(
        config.DEFAULT_URL_SPEED_TIME,
        Rule("a number of seconds > 0", _number(above=0)),
        "Seconds a media download may stay under --speed-limit.",
        flags=("--speed-time",),
        type=float,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "url_speed_limit", parse_size(self.url_speed_limit))

    def video_defaults(self) -> dict[str, Any]:
        """What a video part without options of its own is sampled with."""
        return {
            "fps": self.video_fps,
            "max_frames": self.video_max_frames,
            "audio": self.video_audio,
            "max_side": self.video_max_side,
            "keep_all_frames": self.video_keep_all_frames,
        }


@dataclasses.dataclass(frozen=True)
class DisplayOptions(_Options):
    """How attached media are shown in the terminal (never sent anywhere, never in a pipe)."""

    preview: bool | None = option(
        None,
        Rule("true or false", lambda v: v is None or isinstance(v, bool)),
        "Draw attached media as the model gets them. [default: on in chat on a terminal; "
        "ask: off, on stderr when given]",
        flags=("--preview/--no-preview",),
        type=bool,
        show_default=False,
    )
    preview_rows: int = option(
        config.DEFAULT_PREVIEW_ROWS,
        Rule("a whole number >= 1", _whole(1)),
        "Text rows a preview's picture takes.",
        flags=("--preview-rows",),
        type=int,
    )


@dataclasses.dataclass(frozen=True)
class VideoOptions:
    """How to sample one video: a part's own keys over the request's MediaOptions, checked by the same rules."""

    fps: float = config.DEFAULT_VIDEO_FPS
    max_frames: int = config.DEFAULT_VIDEO_MAX_FRAMES
    start: float | None = None
    end: float | None = None
    audio: bool = True  # decode the soundtrack (the resolver sets False when the model cannot hear)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VideoOptions:
        """Options of a video part (fps, max_frames, start, end, audio); other keys are the caller's."""
        base = cls()
        fps = _as_number(d.get("fps", base.fps), "fps")
        check("fps", fps, VIDEO_FPS, "video fps ")
        count = d.get("max_frames", base.max_frames)
        check("max_frames", count, VIDEO_MAX_FRAMES, "video max_frames ")
        start, end = parse_segment(d.get("start", base.start), d.get("end", base.end), "video")
        audio = d.get("audio", base.audio)
        check("audio", audio, Rule("true or false", _is_bool), "video audio ")
        return cls(fps=fps, max_frames=count, start=start, end=end, audio=audio)
