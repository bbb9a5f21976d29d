"""Progress and Ctrl-C for media encodes, through the projector's graph-eval callback.

libmtmd reports no progress while it encodes (its progress_callback covers loading only),
and an image can take a minute on a CPU. ggml's scheduler asks an eval callback about every
graph node before computing it; answering "yes" every STRIDE nodes makes it compute the
graph in slices and call back after each, which is where the fraction done is reported and
where a pending Ctrl-C stops the encode instead of waiting for the whole graph.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

import llama_cpp as llama

STRIDE = 32  # nodes per slice: 27 slices for a SigLIP-so400m image (865 nodes)


class EncodeMeter:
    def __init__(self) -> None:
        self.nodes = 0  # asked about in the current encode (or the warm-up)
        self.expected = 0  # nodes the current encode is thought to have
        self.report: Callable[[float], None] | None = None
        self.should_stop: Callable[[], bool] | None = None
        self.cancelled = False
        self._known: dict[int, int] = {}  # n_tokens -> nodes of that encode, learned as we go
        self.callback = llama.ggml_backend_sched_eval_callback(self._on_node)  # keep a reference

    def warmed_up(self, graph_nodes: int) -> None:
        """The projector reserved its graph for a typical image: the first estimate of its size."""
        self._known[-1] = graph_nodes

    def start(
        self, n_tokens: int, report: Callable[[float], None] | None, should_stop: Callable[[], bool] | None = None
    ) -> None:
        self.nodes, self.cancelled, self.report, self.should_stop = 0, False, report, should_stop
        self.expected = self._known.get(n_tokens) or self._known.get(-1, 0)

    def finish(self, n_tokens: int) -> None:
        if not self.cancelled:
            self._known[n_tokens] = self.nodes
        self.report = self.should_stop = None

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """While libmtmd encodes, Ctrl-C only sets `cancelled`: an exception raised inside a
        ctypes callback would be swallowed and the encode would go on with a broken graph."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.SIG_IGN:
            yield
            return

        def on_interrupt(signum, frame) -> None:
            self.cancelled = True

        signal.signal(signal.SIGINT, on_interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _on_node(self, tensor, ask: bool, user_data) -> bool:
        try:
            if ask:
                self.nodes += 1
                if self.should_stop is not None and self.nodes % STRIDE == 0 and self.should_stop():
                    self.cancelled = True  # a background encode that is no longer wanted
                return self.cancelled or self.nodes % STRIDE == 0  # cancelled: stop at the next node
            if self.report is not None and self.expected and not self.cancelled:
                self.report(min(self.nodes / self.expected, 0.99))
            return not self.cancelled
        except Exception:
            return True  # a failing progress display must never break an encode
