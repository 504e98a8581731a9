"""One test per conformance case (collected with ``pytest --pyargs tessera.conformance --tessera-platform P``)."""

from __future__ import annotations

import pytest


def test_case(conformance_result):
    if conformance_result is None:
        pytest.skip("pass --tessera-platform to run the conformance suite")
    r = conformance_result
    if r.status == "skip":
        pytest.skip(r.message)
    if r.status == "xfail":
        pytest.xfail(r.message)
    figures = (
        ""
        if r.normalized is None
        else f" (normalized {r.normalized:.3e}, budget {r.budget}, max abs {r.max_abs:.3e})"
    )
    assert r.status == "pass", f"{r.case_id}: {r.status}: {r.message}{figures}"
