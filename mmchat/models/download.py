"""Model downloads that survive an interrupted `mmchat pull`.

huggingface_hub 2.x downloads each file into a fresh per-process temporary file and deletes
it on failure (huggingface/huggingface_hub#4196), so a multi-gigabyte GGUF cut off at 90% by a
closed laptop starts again from zero. Here the bytes go to a stable `<etag>.mmchat-partial`
file next to the cache's blobs and the next pull asks for the rest with a Range request;
huggingface_hub still does the HTTP (its `http_get`: retries, headers, progress bar) and the
finished file is laid out exactly as `hf_hub_download` lays it out, which then finds it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import MmchatError, ModelNotFound, NetworkError, disk_full
from .checksums import Expected, check_download

PARTIAL_SUFFIX = ".mmchat-partial"


def hub_files(repo: str, revision: str | None = None) -> tuple[dict[str, int | None], dict[str, Expected]]:
    """A repository's files with their sizes in bytes (None where the Hub gives none), and the Hub's
    hash of each, from one listing."""
    from huggingface_hub import HfApi

    from .. import config
    from .checksums import expected_hashes

    info = HfApi().model_info(repo, revision=revision, files_metadata=True, timeout=config.DEFAULT_HTTP_TIMEOUT)
    return {s.rfilename: s.size for s in info.siblings or []}, expected_hashes(info)


def fetch(repo: str, filename: str, expected: Expected | None = None) -> Path:
    """The file from the cache, downloading (or finishing the download of) what is missing; what
    arrives is checked against `expected` (the Hub's hash) before it becomes the cached file."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import LocalEntryNotFoundError
    from huggingface_hub.file_download import http_get, repo_folder_name
    from huggingface_hub.utils import build_hf_headers

    try:
        return Path(hf_hub_download(repo, filename, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    headers = build_hf_headers()
    meta = get_hf_file_metadata(hf_hub_url(repo, filename), headers=headers)
    if not meta.etag or not meta.commit_hash:  # not a hub that says what it serves: let the library do it all
        path = Path(hf_hub_download(repo, filename))
        check_download(path, expected, repo, filename)
        return path
    storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")
    blob = storage / "blobs" / meta.etag
    if not blob.exists():
        partial = blob.with_name(blob.name + PARTIAL_SUFFIX)
        partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(partial, "ab") as f:
                http_get(
                    meta.location,
                    f,
                    resume_size=f.tell(),
                    headers=headers,
                    expected_size=meta.size,
                    displayed_filename=filename,
                )
        except OSError as e:  # what arrived stays: the next pull resumes, and checks the whole file
            if full := disk_full(
                e, partial, f"free some space and run the pull again: {filename} resumes where it stopped"
            ):
                raise full from None
            raise
        got = partial.stat().st_size
        if meta.size is not None and got != meta.size:
            partial.unlink()  # the server changed the file under us: start clean next time
            raise OSError(f"{filename} arrived with {got} bytes, not {meta.size}: run the pull again")
        check_download(partial, expected, repo, filename)  # the whole file, resumed parts included
        os.replace(partial, blob)
    pointer = storage / "snapshots" / meta.commit_hash / filename
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if not pointer.exists():
        try:
            pointer.symlink_to(os.path.relpath(blob, pointer.parent))
        except OSError:  # no symlinks (Windows without developer mode): huggingface_hub copies too
            shutil.copyfile(blob, pointer)
    refs = storage / "refs"
    refs.mkdir(exist_ok=True)
    (refs / "main").write_text(meta.commit_hash)
    return Path(hf_hub_download(repo, filename, local_files_only=True))


def _network_reason(exc: BaseException) -> str | None:
    """A short reason when `exc` (or what caused it) means the Hub could not be reached."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    seen: BaseException | None = exc
    for _ in range(20):  # the cause chain, guarded against cycles
        if seen is None:
            break
        if isinstance(seen, OfflineModeIsEnabled):
            return "offline mode is on (HF_HUB_OFFLINE is set)"
        if isinstance(seen, HfHubHTTPError):
            status = seen.response.status_code if seen.response is not None else 0
            return f"HTTP {status}" if status >= 500 or status == 429 else None
        names = {c.__name__ for c in type(seen).__mro__}
        if names & {"TransportError", "ConnectionError", "Timeout"} or isinstance(seen, TimeoutError):
            return (str(seen).strip().splitlines() or [type(seen).__name__])[0][:160]
        if isinstance(seen, LocalEntryNotFoundError) and seen.__cause__ is None:
            return "the Hub did not answer"
        seen = seen.__cause__ or seen.__context__
    return None


def hub_error(exc: Exception, repo: str, target: str) -> Exception:
    """The MmchatError a failed listing or download means for the user, or `exc` itself."""
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if full := disk_full(exc, constants.HF_HUB_CACHE, f"free some or set HF_HUB_CACHE, then pull {target} again"):
        return full
    if isinstance(exc, GatedRepoError):
        return ModelNotFound(f"{repo} is gated: accept its licence at huggingface.co/{repo}, then run `hf auth login`")
    if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError)):
        return ModelNotFound(f"no repository {repo} on Hugging Face (for '{target}'): check the name")
    if (reason := _network_reason(exc)) is not None:
        return NetworkError(f"cannot reach Hugging Face to download {target} (no network?): {reason}")
    return exc


@contextlib.contextmanager
def hub_session(repo: str, target: str, *, progress: bool) -> Iterator[None]:
    """Progress bars off unless wanted, and a failure talking to the Hub as the MmchatError it means."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    silence = not progress and not are_progress_bars_disabled()
    if silence:
        disable_progress_bars()
    try:
        yield
    except MmchatError:
        raise
    except Exception as e:
        mapped = hub_error(e, repo, target)
        if mapped is e:
            raise
        raise mapped from e
    finally:
        if silence:
            enable_progress_bars()
