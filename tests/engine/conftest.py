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
