"""The profiling forward of a platform that measures its cache budget never runs a position past the model's:
its tokens come as several sequences of at most max_model_len (one long sequence indexed the rotary table out
of bounds on a model with a short context, an IndexError on the CPU, an out-of-bounds read on a GPU)."""

from __future__ import annotations

import pytest

from tessera import LLM

from ..hf_checkpoints import write_tiny_checkpoint


@pytest.mark.parametrize("arch", ["llama", "bamba"])
def test_a_measured_budget_with_more_batched_tokens_than_the_context(arch, tmp_path, install_fixture):
    install_fixture("checked_platform")  # a platform with mem_get_info: the engine profiles its budget
    model = write_tiny_checkpoint(arch, tmp_path / arch, max_position_embeddings=96)
    llm = LLM(str(model), platform="checked_cpu", dtype="float32", max_num_batched_tokens=500, max_num_seqs=4)
    assert llm.engine.max_model_len == 96
    out = llm.generate([[5, 6, 7]], {"max_tokens": 4, "temperature": 0}, use_tqdm=False)[0].outputs[0]
    assert len(out.token_ids) == 4
