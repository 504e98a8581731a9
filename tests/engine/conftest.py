"""Tiny checkpoints written by transformers, shared by the engine tests of one session."""

from __future__ import annotations

import pytest

from ..hf_checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    cache = {}

    def get(arch: str):
        if arch not in cache:
            cache[arch] = write_tiny_checkpoint(arch, tmp_path_factory.mktemp(arch))
        return cache[arch]

    return get


@pytest.fixture
def deadline():
    """``with deadline(seconds):`` raises TimeoutError in the test if the block runs longer (a hang fails)."""
    import contextlib
    import signal

    @contextlib.contextmanager
    def within(seconds: float):
        def expire(signum, frame):
            raise TimeoutError(f"did not finish within {seconds} s (hung?)")

        old = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    return within
