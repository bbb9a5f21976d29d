"""One model, one request at a time, in arrival order, from a bounded queue.

The model (a llama.cpp context) answers one request at a time, so `Worker` runs every request
on one thread, in the order they came. A request waits in a queue of at most `capacity`; one
more is refused (`busy`: the server answers 503 with Retry-After) rather than left to wait
behind an unbounded line. A client that goes away cancels its job: a waiting one leaves the
queue at once, a running one stops at the next token (the engine's generator is closed, as
Ctrl-C closes it in `mmchat ask`). `drain()` (SIGTERM) refuses whatever has not started and
lets the running request finish.

Each answer is handed to the request's event loop as it is generated (`Job.next`), so the
HTTP side never blocks on the model.

Saved KV states: `ConversationStates.after(messages, completion)` is called with a request's
conversation once the Runner has answered it, on the worker thread, with the model idle. `mmchat serve` uses `SavedStates`: each answered
conversation's state is saved (engine/kvstate.py: a memory tier, `--kv-memory`, and the disk
tier unless --no-cache), and the engine restores the longest saved prefix of every prompt by
itself, so conversations that alternate each get their own prefix back. `NoStates` (the Python
API's default) leaves only the engine's own prefix reuse: the previous request's KV cache.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import threading
from typing import TYPE_CHECKING, Protocol

from ..options import GenerationOptions
from .errors import ApiError

if TYPE_CHECKING:
    from ..messages import Conversation
    from ..results import ChatCompletion
    from ..runner import Runner


def busy(message: str, retry_after: int) -> ApiError:
    """The queue is full (or the server is stopping): 503, come back after `retry_after` seconds."""
    return ApiError(503, message, code="server_busy", headers={"Retry-After": str(retry_after)})


class ConversationStates(Protocol):
    """Where saved KV states plug in: told of each conversation after its answer."""

    def after(self, messages: Conversation, completion: ChatCompletion) -> None: ...


class NoStates:
    """No saved states: only the previous request's prefix is reused (the engine's KV cache)."""

    def after(self, messages: Conversation, completion: ChatCompletion) -> None:
        pass


class SavedStates:
    """Each conversation's KV state saved after its answer (engine/kvstate.py: memory, and disk unless
    --no-cache), so one that comes back after another was answered restores its prefix: the engine
    looks for the longest saved prefix of every prompt by itself, so nothing is done before."""

    def __init__(self, runner: Runner):
        self.runner = runner

    def after(self, messages: Conversation, completion: ChatCompletion) -> None:
        self.runner.save_state()


@dataclasses.dataclass
class Done:
    """The last event of a job: the whole completion (or what came before a cancel)."""

    completion: ChatCompletion


@dataclasses.dataclass
class Failed:
    """The job ended with an error, raised again on the HTTP side."""

    error: BaseException


class Job:
    """One request: its conversation and options, and the events its answer makes."""

    def __init__(self, messages: Conversation, options: GenerationOptions, loop: asyncio.AbstractEventLoop):
        self.messages, self.options = messages, options
        self._loop = loop
        self._events: asyncio.Queue[str | Done | Failed] = asyncio.Queue()
        self._held: list[Done | Failed] = []  # the end, taken while joining text
        self.cancelled = threading.Event()
        self.finished = False  # Done or Failed has been handed over

    def put(self, event: str | Done | Failed) -> None:
        """From the worker thread: hand an event to the request's loop."""
        self.finished = self.finished or isinstance(event, (Done, Failed))
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the loop has closed: nobody is listening
            self.cancelled.set()

    async def next(self) -> str | Done | Failed:
        """The next text (every delta already waiting, joined: a fast model is not held to one send
        per token), or the end."""
        event = self._held.pop() if self._held else await self._events.get()
        if not isinstance(event, str):
            return event
        parts = [event]
        while not self._events.empty():
            more = self._events.get_nowait()
            if not isinstance(more, str):
                self._held.append(more)
                break
            parts.append(more)
        return "".join(parts)


class Worker:
    """Runs jobs one at a time on its own thread; at most `capacity` wait."""

    def __init__(self, runner: Runner, capacity: int, states: ConversationStates | None = None):
        self.runner, self.capacity = runner, capacity
        self.states = states or NoStates()
        self._waiting: collections.deque[Job] = collections.deque()
        self._ready = threading.Condition()
        self._closing = False
        self._running: Job | None = None
        self._thread = threading.Thread(target=self._loop, name="mmchat-serve-worker", daemon=True)
        self._thread.start()

    def submit(self, messages: Conversation, options: GenerationOptions) -> Job:
        """Queue a request; ApiError 503 (busy) when the queue is full or the server is stopping."""
        job = Job(messages, options, asyncio.get_running_loop())
        with self._ready:
            if self._closing:
                raise busy("the server is shutting down: send the request to another instance or later", 5)
            if len(self._waiting) + (self._running is not None) > self.capacity:
                raise busy(f"the queue is full ({self.capacity} requests waiting): try again shortly", 1)
            self._waiting.append(job)
            self._ready.notify()
        return job

    def cancel(self, job: Job) -> None:
        """The client went away: a waiting job leaves the queue, a running one stops at the next token."""
        job.cancelled.set()
        with self._ready:
            if job not in self._waiting:
                return
            self._waiting.remove(job)
        gone = ApiError(499, "the client went away before its request was answered", code="client_gone")  # nginx's 499
        job.put(Failed(gone))

    @property
    def waiting(self) -> int:
        with self._ready:
            return len(self._waiting)

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def busy(self) -> bool:
        return self._running is not None

    def drain(self) -> None:
        """Stop taking requests: those waiting are refused, the running one finishes."""
        with self._ready:
            self._closing = True
            refused, self._waiting = list(self._waiting), collections.deque()
            self._ready.notify_all()
        for job in refused:
            job.put(Failed(busy("the server is shutting down: send the request again later", 5)))

    def join(self, timeout: float | None = None) -> None:
        self.drain()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._waiting and not self._closing:
                    self._ready.wait()
                if not self._waiting:
                    return
                job = self._running = self._waiting.popleft()
            try:
                self._run(job)
            finally:
                with self._ready:
                    self._running = None

    def _run(self, job: Job) -> None:
        stream = None
        try:
            stream = self.runner.stream(job.messages, job.options)
            for delta in stream:
                if job.cancelled.is_set():
                    break  # the client is gone: the engine stops before its next token
                job.put(delta)
            completion = stream.completion or stream.partial()
            if stream.completion is not None:
                self.states.after(job.messages, completion)
            job.put(Done(completion))
        except Exception as e:  # noqa: BLE001  (any failure is the request's, never the worker's)
            job.put(Failed(e))
        finally:
            if stream is not None:
                stream.close()
