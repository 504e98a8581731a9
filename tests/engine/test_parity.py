"""Parity with transformers on tiny random checkpoints saved by transformers, fp32 on the CPU."""

from __future__ import annotations

import pytest
import torch

from tessera import LLM, SamplingParams
from tessera.engine.scoring import teacher_forced_logits

ARCHS = ["llama", "qwen3", "qwen3_moe", "bamba", "qwen2", "llama3"]
PROMPTS = [[3, 17, 42], list(range(5, 25)), [7] * 9 + [100, 101], list(range(60, 97))]


def hf_model(path):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_prefill_and_decode_logits_match(arch, checkpoints):
    path = checkpoints(arch)
    llm = LLM(str(path), max_num_batched_tokens=256)
    tokens = list(range(10, 50))
    ours = teacher_forced_logits(llm.engine, tokens, prefill_len=32)
    with torch.no_grad():
        ref = hf_model(path)(torch.tensor([tokens])).logits[0].float()
    rel = float((ours - ref).norm() / ref.norm())
    assert rel < 1e-4, f"{arch}: relative error {rel:.2e}"


@pytest.mark.parametrize("arch", ARCHS[:4])
def test_greedy_generation_matches_transformers(arch, checkpoints):
    path = checkpoints(arch)
    llm = LLM(str(path), max_num_batched_tokens=64)
    params = SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)
    outs = llm.generate([{"prompt_token_ids": p} for p in PROMPTS], params)
    model = hf_model(path)
    for prompt, out in zip(PROMPTS, outs, strict=True):
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False, eos_token_id=None,
                             pad_token_id=0)[0, len(prompt):].tolist()  # fmt: skip
        assert out.outputs[0].token_ids == ref, f"{arch} prompt of {len(prompt)} tokens"
        assert out.outputs[0].finish_reason == "length"
