"""The cpu platform's dtypes: detected from the CPU's flags, or forced by TESSERA_CPU_DTYPES so a
test (and CI) can stand in for another kind of CPU."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tessera.cli import app
from tessera.discovery import select_platform
from tessera.errors import PlatformError
from tessera_cpu.platform import CPU_DTYPES_ENV, detected_dtypes

runner = CliRunner()


def test_detected_dtypes_follow_the_flags():
    assert detected_dtypes(set()) == ("float32",)
    assert detected_dtypes({"avx2", "avx512_bf16"}) == ("float32", "bfloat16")
    assert detected_dtypes({"amx_bf16", "avx512_fp16"}) == ("float32", "bfloat16", "float16")
    assert detected_dtypes({"asimdhp"}) == ("float32", "float16")


@pytest.mark.parametrize("forced", ["float32", "float32,bfloat16", "float32,bfloat16,float16"])
def test_forced_dtypes_replace_the_detected_ones(monkeypatch, fresh_discovery, forced):
    monkeypatch.setenv(CPU_DTYPES_ENV, forced)
    platform = select_platform("cpu")
    assert platform.capabilities().dtypes == tuple(forced.split(","))
    assert CPU_DTYPES_ENV in platform.availability().reason


@pytest.mark.parametrize("bad", ["bfloat16", "float32,int8", "float32,float32", "float32,,fp16"])
def test_a_malformed_forced_list_makes_cpu_unavailable_with_the_reason(monkeypatch, fresh_discovery, bad):
    monkeypatch.setenv(CPU_DTYPES_ENV, bad)
    with pytest.raises(PlatformError, match=f"{CPU_DTYPES_ENV}=.*float32 first"):
        select_platform("cpu")
    listing = runner.invoke(app, ["platform", "show", "cpu"])
    assert (
        listing.exit_code == 0 and "available: False" in listing.output and "float32 first" in listing.output
    )
