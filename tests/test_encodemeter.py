"""Encode progress and Ctrl-C during an encode (libmtmd computes; our callback steers)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from mmchat.engine.encodemeter import STRIDE, EncodeMeter


def test_progress_is_reported_per_slice_once_the_size_is_known():
    meter = EncodeMeter()
    meter.start(256, None)
    for _ in range(10 * STRIDE):
        meter._on_node(None, True, None)
    meter.finish(256)  # the first encode of this size teaches the node count
    seen: list[float] = []
    meter.start(256, seen.append)
    for _ in range(10):
        needs = [meter._on_node(None, True, None) for _ in range(STRIDE)]
        assert needs[-1] and not any(needs[:-1])  # the graph is computed in STRIDE-node slices
        assert meter._on_node(None, False, None)  # and goes on
    assert seen == pytest.approx([k / 10 for k in range(1, 10)] + [0.99])


def test_ctrl_c_during_an_encode_stops_the_graph_instead_of_raising_in_the_callback():
    meter = EncodeMeter()
    meter.start(16, None)
    before = signal.getsignal(signal.SIGINT)
    with meter.interruptible():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs: no KeyboardInterrupt, just the flag
        assert meter.cancelled
        assert meter._on_node(None, True, None) is True  # compute up to here...
        assert meter._on_node(None, False, None) is False  # ...then stop the graph
    assert signal.getsignal(signal.SIGINT) is before
