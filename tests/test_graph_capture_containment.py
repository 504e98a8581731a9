"""A capture whose work fails must leave the process able to go on (no capture stream left current)."""

from __future__ import annotations

import pytest

from tessera.platform import _contained_capture


class _Stream:
    def __init__(self) -> None:
        self.current = False

    def __enter__(self):
        self.current = True

    def __exit__(self, *exc) -> None:
        self.current = False


class _Capture:
    """torch's graph context as it behaves: its exit ends the capture, then leaves the stream, and an
    invalidated capture makes ``capture_end`` raise before the stream is left."""

    def __init__(self, graph, invalid_end: bool = False) -> None:
        self.graph, self.stream_ctx, self.invalid_end = graph, _Stream(), invalid_end

    def __enter__(self):
        self.stream_ctx.__enter__()

    def __exit__(self, *exc) -> None:
        self.graph.capture_end()
        self.stream_ctx.__exit__()


class _Graph:
    def __init__(self, invalid: bool = False) -> None:
        self.invalid, self.ended = invalid, 0

    def capture_end(self) -> None:
        self.ended += 1
        if self.invalid:
            raise RuntimeError("operation not permitted when stream is capturing")


def test_body_error_ends_the_capture_and_leaves_the_stream():
    graph = _Graph(invalid=True)
    capture = _Capture(graph)
    with pytest.raises(ValueError, match="the kernel's own error"):
        with _contained_capture(capture, graph):
            assert capture.stream_ctx.current
            raise ValueError("the kernel's own error")
    assert graph.ended == 1 and not capture.stream_ctx.current


def test_invalidated_capture_leaves_the_stream_when_ending_fails():
    graph = _Graph(invalid=True)
    capture = _Capture(graph)
    with pytest.raises(RuntimeError, match="stream is capturing"):
        with _contained_capture(capture, graph):
            pass
    assert not capture.stream_ctx.current


def test_clean_capture_ends_once():
    graph = _Graph()
    capture = _Capture(graph)
    with _contained_capture(capture, graph):
        pass
    assert graph.ended == 1 and not capture.stream_ctx.current
