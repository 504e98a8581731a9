"""The tuned configs the H200 and the MI300X select compile for sm_90 and gfx942: the conformance suite
launches only default configs, so without this a tuned entry with tiles or stages the compiler rejects would
first fail on the card (tessera_triton.tuned_compile_check)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("triton")

from tessera_triton.compile_check import TARGETS, compile_specializations  # noqa: E402
from tessera_triton.compile_cover import covering  # noqa: E402
from tessera_triton.tuned_compile_check import TARGET_OF, record_tuned, tuned_files  # noqa: E402

CARDS = ("NVIDIA_H200", "AMD_MI300X")


@pytest.fixture(scope="module")
def card_files():
    files = [f for f in tuned_files() if f.stem in CARDS]
    assert {f.stem for f in files} == set(CARDS), "the cuda and rocm plugins' tuned files are installed"
    return files


@pytest.mark.cpu_dtypes_independent
def test_every_tuned_entry_of_the_cards_compiles_for_its_target(card_files):
    specs, problems, skipped = record_tuned(card_files)
    assert problems == [] and skipped == []
    from tessera_triton.register import KERNELS

    ops = {f.parent.name.removeprefix("triton_").removesuffix("_hnd") for f in card_files}
    modules = {f"tessera_triton.kernels.{KERNELS[op][0]}" for op in ops}
    unlaunched = [m for m in modules if not any(s.module.startswith(m) for s in specs)]
    assert not unlaunched, f"tuned kernels none of whose entries launched: {unlaunched}"
    assert {s.target for s in specs} == {TARGET_OF[c] for c in CARDS} <= set(TARGETS)
    results = compile_specializations(covering(specs))
    failed = [r.line() for r in results if not r.ok]
    assert not failed, "\n\n".join(failed)


def test_a_tuned_file_for_no_kernel_of_the_pack_is_a_problem(tmp_path):
    folder = tmp_path / "triton_no_such_op"
    folder.mkdir()
    path = folder / "NVIDIA_H200.json"
    path.write_text(json.dumps({"kernel": "triton_no_such_op", "device": "NVIDIA_H200", "key_fields": []}))
    other = tmp_path / "triton_rms_norm" / "sm_100.json"
    other.parent.mkdir()
    other.write_text("{}")
    specs, problems, skipped = record_tuned([path, other])
    assert specs == [] and skipped == [str(other)]
    assert problems == [f"{path}: no kernel 'triton_no_such_op' in the pack"]
