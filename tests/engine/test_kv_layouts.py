"""The engine end to end in each KV-cache layout: the paged_attention kernel chosen (by TESSERA_KERNELS
or the engine's kernel overrides) fixes the layout, the writer follows it, the cache is allocated in
it, and greedy output is the same token for token."""

from __future__ import annotations

import pytest

from tessera import LLM, SamplingParams
from tessera.pluggable_layers.errors import KernelError

from .test_scheduling import prompts_and_params

HND = {"paged_attention": "cpu_torch_paged_attention_hnd"}


def greedy(llm: LLM, prompts, params) -> list[list[int]]:
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params)
    return [o.outputs[0].token_ids for o in outs]


def layer_layouts(llm: LLM) -> set[tuple]:
    """(layout, key cache shape, writer, reader) of every attention layer."""
    return {(a.kv_layout, tuple(a.kv_cache[0].shape), a._write.name, a._attend.name)
            for a in llm.engine.runner.model.attention_layers()}  # fmt: skip


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_greedy_output_is_the_same_in_both_layouts(checkpoints, arch, monkeypatch):
    path = str(checkpoints(arch))
    prompts, params = prompts_and_params(12, 1)
    nhd = LLM(path, platform="cpu", block_size=4, num_kv_blocks=40, max_num_seqs=6)
    monkeypatch.setenv("TESSERA_KERNELS", "paged_attention=cpu_torch_paged_attention_hnd")
    hnd = LLM(path, platform="cpu", block_size=4, num_kv_blocks=40, max_num_seqs=6)
    spec = nhd.engine.runner.model.attention_layers()[0]
    heads, dim = spec.num_kv_heads, spec.head_dim
    assert layer_layouts(nhd) == {
        ("nhd", (40, 4, heads, dim), "cpu_torch_kv_cache_write", "cpu_torch_paged_attention")
    }
    assert layer_layouts(hnd) == {("hnd", (40, heads, 4, dim), "cpu_torch_kv_cache_write_hnd",
                                   "cpu_torch_paged_attention_hnd")}  # fmt: skip
    expected = greedy(nhd, prompts, params)
    assert greedy(hnd, prompts, params) == expected
    assert hnd.engine.scheduler.num_preemptions > 0, "the small budget was meant to preempt (blocks reused)"


def test_reference_writer_follows_a_head_major_reader(checkpoints):
    path = str(checkpoints("llama"))
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    prompt = [{"prompt_token_ids": list(range(5, 30))}]
    base = LLM(path, platform="cpu").generate(prompt, params)[0].outputs[0].token_ids
    llm = LLM(path, platform="cpu", kernel_overrides={**HND, "kv_cache_write": "reference"})
    assert {x[:3:2] for x in layer_layouts(llm)} == {("hnd", "reference")}
    assert llm.generate(prompt, params)[0].outputs[0].token_ids == base


def test_a_mismatched_pair_is_refused_with_its_reason(checkpoints):
    with pytest.raises(KernelError) as err:
        LLM(str(checkpoints("llama")), platform="cpu",
            kernel_overrides={**HND, "kv_cache_write": "cpu_torch_kv_cache_write"})  # fmt: skip
    assert "override chose kernel 'cpu_torch_kv_cache_write', which cannot serve this call: writes the nhd KV layout, " \
           "but the paged_attention kernel selected with it (cpu_torch_paged_attention_hnd) reads hnd" in str(err.value)  # fmt: skip


def test_triton_head_major_pair_in_the_interpreter(checkpoints, monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TESSERA_CPU_TRITON", "1")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    path = str(checkpoints("llama"))
    prompts, params = [[7, 3, 11, 5, 9, 2]], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)
    expected = greedy(LLM(path, platform="cpu", block_size=4, kernel_overrides={"paged_attention": "reference"}),
                      prompts, params)  # fmt: skip
    pair = {"paged_attention": "triton_paged_attention_hnd", "kv_cache_write": "triton_kv_cache_write_hnd"}
    llm = LLM(path, platform="cpu", block_size=4, kernel_overrides=pair)
    assert {(x[0], x[2], x[3]) for x in layer_layouts(llm)} == {
        ("hnd", pair["kv_cache_write"], pair["paged_attention"])
    }
    assert greedy(llm, prompts, params) == expected
