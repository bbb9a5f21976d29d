"""Attachments encoded while the user types, so the question waits only for what is left.

An attachment is read and decoded at once, in the REPL's own thread (a bad file is reported
when it is attached); its encode then runs in a worker thread. The engine lets one thread at
a time into the model, so a question asked before the encode is done simply waits for it, and
then finds the media in the caches (memory and disk). /detach, /clear, /model, Ctrl-C at the
prompt and leaving stop the encodes that are no longer wanted.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..inputs.resolver import Attachment

if TYPE_CHECKING:
    from ..engine.base import MediaCost
    from ..runner import Runner


@dataclasses.dataclass(eq=False)
class Job:
    attachment: Attachment
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    progress: float = 0.0
    state: str = "encoding"  # encoding | done | stopped | failed
    thread: threading.Thread | None = None
    costs: list[MediaCost] | None = None  # what the engine counted before encoding (the preview's caption)
    planned: threading.Event = dataclasses.field(default_factory=threading.Event)  # costs are in (or never will be)

    def plan(self, costs: list[MediaCost]) -> None:
        self.costs = costs
        self.planned.set()

    def wait_costs(self, seconds: float) -> list[MediaCost] | None:
        """The costs, once the worker has tokenized the media (it may wait for an encode ahead of it)."""
        self.planned.wait(seconds)
        return self.costs


class BackgroundEncodes:
    def __init__(self, runner: Runner):
        self.runner = runner
        self._jobs: list[Job] = []

    def start(self, attachment: Attachment) -> Job:
        media = self.runner.media_of(attachment)  # decoded already (here, not in the worker)
        job = Job(attachment)
        job.thread = threading.Thread(
            target=self._run, args=(job, media), daemon=True, name=f"mmchat encode {Path(attachment.label).name}"
        )
        self._jobs = [j for j in self._jobs if j.state == "encoding"] + [job]
        job.thread.start()
        return job

    def _run(self, job: Job, media: list) -> None:
        def report(fraction: float) -> None:
            job.progress = fraction

        try:
            done = self.runner.encode_ahead(media, report, job.stop.is_set, on_plan=job.plan)
        except Exception:  # the turn encodes it itself, and says what is wrong then
            job.state = "failed"
            return
        finally:
            job.planned.set()
        job.state = "done" if done else "stopped"

    def running(self) -> list[Job]:
        return [j for j in self._jobs if j.state == "encoding"]

    def cancel(self, attachments: Iterable[Attachment] | None = None) -> int:
        """Stop the encodes of these attachments (all when None); how many were still running."""
        wanted = None if attachments is None else {id(a) for a in attachments}
        stopped = 0
        for job in self.running():
            if wanted is None or id(job.attachment) in wanted:
                job.stop.set()
                stopped += 1
        return stopped

    def wait(self) -> None:
        """Until no worker is left (before the model is closed or switched)."""
        for job in self._jobs:
            if job.thread is not None:
                job.thread.join()

    def status(self) -> str:
        """For the toolbar: what is encoding, and how far it is."""
        running = self.running()
        if not running:
            return ""
        first = running[0]
        more = f" (+{len(running) - 1})" if len(running) > 1 else ""
        return f"encoding {Path(first.attachment.label).name} {first.progress:.0%}{more}"
