"""Model downloads that survive an interrupted `mmchat pull`.

huggingface_hub 2.x downloads each file into a fresh per-process temporary file and deletes
it on failure (huggingface/huggingface_hub#4196), so a multi-gigabyte GGUF cut off at 90% by a
closed laptop starts again from zero. Here the bytes go to a stable `<etag>.mmchat-partial`
file next to the cache's blobs and the next pull asks for the rest with a Range request;
huggingface_hub still does the HTTP (its `http_get`: retries, headers, progress bar) and the
finished file is laid out exactly as `hf_hub_download` lays it out, which then finds it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PARTIAL_SUFFIX = ".mmchat-partial"


def fetch(repo: str, filename: str) -> Path:
    """The file from the cache, downloading (or finishing the download of) what is missing."""
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
        return Path(hf_hub_download(repo, filename))
    storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")
    blob = storage / "blobs" / meta.etag
    if not blob.exists():
        partial = blob.with_name(blob.name + PARTIAL_SUFFIX)
        partial.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "ab") as f:
            http_get(meta.location, f, resume_size=f.tell(), headers=headers, expected_size=meta.size,
                     displayed_filename=filename)
        got = partial.stat().st_size
        if meta.size is not None and got != meta.size:
            partial.unlink()  # the server changed the file under us: start clean next time
            raise OSError(f"{filename} arrived with {got} bytes, not {meta.size}: run the pull again")
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
