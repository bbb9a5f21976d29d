"""Defaults in one place, the user's directories (MMCHAT_HOME overrides platformdirs), and the one
reader of the process environment outside the CLI (`environ`: the Python API's edge)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("mmchat.config")

APP_NAME = "mmchat"

# Generation
DEFAULT_MAX_TOKENS = 512
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K = 40
DEFAULT_TOP_P = 0.95
DEFAULT_MIN_P = 0.05
DEFAULT_REPEAT_PENALTY = 1.0
DEFAULT_FREQUENCY_PENALTY = 0.0  # OpenAI's range is -2..2; 0 is off
DEFAULT_PRESENCE_PENALTY = 0.0
DEFAULT_REPEAT_LAST_N = 64
DEFAULT_SEED = -1  # random

# Model context
DEFAULT_N_CTX = 8192
DEFAULT_N_BATCH = 2048
DEFAULT_N_UBATCH = 512  # non-causal image chunks (gemma3: 256) need n_ubatch >= image tokens
DEFAULT_MMPROJ_OFFLOAD = True  # the projector on the GPU when llama.cpp has one (its --no-mmproj-offload: False)

# Model registry and downloads
DEFAULT_QUANT = "Q4_K_M"  # for hf:owner/repo without :QUANT, as llama.cpp's -hf does

# Media
DEFAULT_IMAGE_MAX_SIDE = 1536  # long side in pixels; a 4K photo is scaled down before encoding
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000  # refuse larger images (decompression bombs)
DEFAULT_MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024
DEFAULT_MEDIA_CACHE_BYTES = 1 << 30  # the most decoded pixels and samples one conversation keeps for its follow-up
DEFAULT_EMBEDDING_CACHE_BYTES = (
    512 << 20
)  # the most encoded media one prompt keeps in memory (the disk cache is behind)
DEFAULT_ENCODED_CACHE_BYTES = 4 << 30  # encoded media kept on disk for later runs (`mmchat cache`)
DEFAULT_KV_STATE_CACHE_BYTES = 2 << 30  # saved KV states of conversations on disk (`mmchat cache`, docs/kv-state.md)
DEFAULT_KV_STATE_MIN_TOKENS = 64  # a shorter prompt + answer is cheaper to evaluate again than to save
DEFAULT_VIDEO_FPS = 1.0  # frames sampled per second of video
DEFAULT_VIDEO_MAX_FRAMES = 32  # more are spread evenly over the video
DEFAULT_VIDEO_FRAME_MAX_SIDE = 448  # frames: dynamic-resolution models pay per pixel, 32 frames add up
#: a sampled frame whose every 16x16 tile differs from the last kept frame's by less than this mean
#: (0-255 per channel) is skipped as unchanged: compression noise is 1-3, one changed word is 40+
DEFAULT_FRAME_CHANGE = 6.0
FRAME_TILE = 16
DEFAULT_DRAFT = 0  # tokens drafted from the prompt per step of a greedy answer (0 = off; see README's performance)
DEFAULT_DRAFT_MIN = 2  # tokens an n-gram must match before its continuation is drafted
DEFAULT_VIDEO_AUDIO_PIECE = 30.0  # seconds of soundtrack per audio chunk (whisper's window)
DEFAULT_PDF_MAX_PAGES = 8  # pages of a PDF read without --pages; one notice says how many were left out
DEFAULT_PDF_MAX_DOCUMENT_PAGES = 1000  # a longer PDF is refused from its page count unless pages are chosen
DEFAULT_PDF_MAX_DPI = 200  # a small page is not rendered sharper than this to reach image_max_side
DEFAULT_TEXT_FILE_MAX_BYTES = 4 * 1024 * 1024  # a text file attached as a part; more would not fit a context
DEFAULT_HTTP_TIMEOUT = 30.0  # seconds one read may wait
DEFAULT_URL_DEADLINE = 300.0  # seconds a whole download may take (a trickling server ends here)
DEFAULT_URL_SPEED_LIMIT = 1024  # bytes a second: a download slower than this for ...
DEFAULT_URL_SPEED_TIME = 15.0  # ... this many seconds ends (curl's --speed-limit/--speed-time)
DEFAULT_MAX_REDIRECTS = 5
DEFAULT_SERVER_TIMEOUT = 600.0  # seconds a model server may take to answer one request
DEFAULT_SERVER_RETRIES = 3  # 429 and 5xx are retried this many times, with backoff
DEFAULT_REMOTE_SAMPLE_RATE = 16000  # audio sent to a server (whisper-style and Gemma encoders take 16 kHz)
DEFAULT_MIC_SAMPLE_RATE = 16000  # mic: records mono at the rate audio models take (the device's own if it cannot)
DEFAULT_MIC_MAX_SECONDS = 600.0  # a recording stops here (mic:SECONDS too): a forgotten one must not fill the memory
DEFAULT_MIC_SILENCE_DBFS = -60.0  # a recording whose loudest sample is quieter than this is warned about (muted mic)
DEFAULT_MIC_BLOCK_SECONDS = 0.02  # what the audio callback gets at a time: the level meter's step

# Previews of attached media in the terminal (mmchat/preview/)
DEFAULT_PREVIEW_ROWS = 12  # text rows a picture takes
DEFAULT_PREVIEW_THUMB_ROWS = 6  # `mmchat logs --preview`: a thumbnail's rows
DEFAULT_PREVIEW_CELL = (10, 20)  # a cell's pixels when the terminal does not say (the VT340's font)
DEFAULT_PREVIEW_QUERY_TIMEOUT = 0.5  # seconds a terminal has to answer the protocol query (once per process)
DEFAULT_PREVIEW_COST_WAIT = 1.0  # seconds the caption waits for the token count of the encode it starts
DEFAULT_PREVIEW_MAX_FRAMES = 16  # a video's contact sheet shows at most this many frames, spread evenly


def environ() -> Mapping[str, str]:
    """The process environment, read here only: `Runner.open` (MMCHAT_BASE_URL, the API keys,
    MMCHAT_MODEL), MMCHAT_HOME below, and DISPLAY/WAYLAND_DISPLAY for screen capture. The CLI reads
    its own `Environment.environ` instead, so a test's environment is the one a command sees."""
    return os.environ


def user_dir() -> Path:
    """Config, history and caches live here; MMCHAT_HOME overrides the platform's place."""
    env = environ().get("MMCHAT_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    """Encoded media live here: MMCHAT_HOME/cache, else the platform's cache dir (XDG_CACHE_HOME)."""
    env = environ().get("MMCHAT_HOME")
    if env:
        return Path(env).expanduser() / "cache" / "media"
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)) / "media"


def kv_state_dir() -> Path:
    """Saved KV states live beside the media cache: MMCHAT_HOME/cache/kv, else the platform's cache dir."""
    return cache_dir().parent / "kv"


def config_file() -> Path:
    return user_dir() / "config.toml"


def read_config(home: Path | None = None) -> dict[str, object]:
    """The user's config.toml as a table ({} when there is none, or when it is broken: never fatal;
    `load_user_defaults`, read as every command starts, is the one that says so)."""
    return _parsed(home)[0]


def _parsed(home: Path | None = None) -> tuple[dict[str, object], str | None]:
    """The one parser of config.toml: its table, and what is wrong with it in one line."""
    import tomllib

    path = (home or user_dir()) / "config.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return {}, f"ignoring {path}: {str(e).splitlines()[0]}"


def load_user_defaults() -> dict[str, object]:
    """`[defaults]` of the user's config.toml: option defaults for ask and chat; a broken file is a
    logged warning.

    Precedence: a flag on the command line > this file > the DEFAULT_* constants above.
    """
    table, problem = _parsed()
    if problem:
        log.warning(problem)
    defaults = table.get("defaults", {})
    if not isinstance(defaults, dict):
        log.warning(f"ignoring {config_file()}: [defaults] must be a table")
        return {}
    return {k.replace("-", "_"): v for k, v in defaults.items()}
