"""sample 1.1: penalties, logit bias, min_p and logprobs, by definition, in the reference, CPU and Triton kernels,
and the selection rule that keeps a 1.0 kernel off batches that use them."""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.errors import KernelInputError
from tessera.pluggable_layers.reference.sample import sample as reference_sample


def inputs(rows=6, vocab=257, seed=0):
    g = torch.Generator().manual_seed(seed)
    temperature = torch.rand(rows, generator=g) + 0.3
    temperature[::3] = 0
    counts = torch.randint(0, 3, (rows, vocab), generator=g, dtype=torch.int32) * (
        torch.rand(rows, vocab, generator=g) < 0.1
    )
    return dict(
        logits=torch.randn(rows, vocab, generator=g) * 3, temperature=temperature,
        top_k=torch.randint(0, 40, (rows,), generator=g, dtype=torch.int32), top_p=torch.rand(rows, generator=g) * 0.7 + 0.3,
        exponential_noise=torch.empty(rows, vocab).exponential_(generator=g),
        min_p=torch.rand(rows, generator=g) * 0.2, logit_bias=torch.randn(rows, vocab, generator=g) * (torch.rand(rows, vocab, generator=g) < 0.02),
        prompt_mask=torch.rand(rows, vocab, generator=g) < 0.05, output_counts=counts.to(torch.int32),
        presence_penalty=torch.rand(rows, generator=g) * 4 - 2, frequency_penalty=torch.rand(rows, generator=g) * 4 - 2,
        repetition_penalty=torch.rand(rows, generator=g) * 1.5 + 0.5, num_logprobs=4,
    )  # fmt: skip


def test_penalties_by_definition_on_greedy_rows():
    x = inputs()
    x["temperature"].zero_()
    tokens, *_ = reference_sample(**x)
    for b in range(x["logits"].shape[0]):
        row = x["logits"][b].double().clone()
        counts = x["output_counts"][b].double()
        seen = x["prompt_mask"][b] | (counts > 0)
        rep = float(x["repetition_penalty"][b])
        row = torch.where(seen, torch.where(row > 0, row / rep, row * rep), row)
        row -= (
            float(x["frequency_penalty"][b]) * counts
            + float(x["presence_penalty"][b]) * (counts > 0).double()
        )
        row += x["logit_bias"][b].double()
        assert int(tokens[b]) == int(torch.argmax(row))


def test_logprobs_are_of_the_raw_logits():
    x = inputs()
    tokens, logprobs, token_ids, rank = reference_sample(**x)
    raw = torch.log_softmax(x["logits"].double(), -1)
    assert token_ids[:, 0].tolist() == tokens.tolist()
    assert torch.allclose(logprobs[:, 0].double(), raw.gather(1, tokens[:, None])[:, 0], atol=1e-6)
    assert token_ids[:, 1:].tolist() == torch.topk(raw, 4).indices.tolist()
    assert rank.tolist() == [int((raw[b] > raw[b, t]).sum()) + 1 for b, t in enumerate(tokens.tolist())]


def test_min_p_one_keeps_only_the_top_token():
    x = inputs()
    x["min_p"] = torch.ones(6)
    for key in (
        "prompt_mask",
        "output_counts",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "logit_bias",
    ):
        x[key] = None
    x["num_logprobs"] = None
    x["top_k"], x["top_p"] = None, None
    assert reference_sample(**x).tolist() == x["logits"].argmax(-1).tolist()


def test_bad_feature_inputs_are_refused():
    x = inputs()
    x["output_counts"] = None
    with pytest.raises(KernelInputError, match="penalty inputs come together"):
        reference_sample(**x)
    x = inputs()
    x["num_logprobs"] = 21
    with pytest.raises(KernelInputError, match="num_logprobs"):
        reference_sample(**x)


def kernels():
    """The CPU kernel, and the Triton one under the interpreter (tests/conftest.py sets TRITON_INTERPRET=1)."""
    from tessera_cpu.kernels.sample import sample as cpu_sample

    pytest.importorskip("triton")
    from tessera_triton.kernels.sample import sample as triton_sample

    return [("cpu", cpu_sample), ("triton", triton_sample)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernels_agree_with_the_reference(seed):
    x = inputs(rows=9, vocab=1031, seed=seed)
    ref = reference_sample(
        **{k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in x.items()}
    )
    for name, kernel in kernels():
        got = kernel(**x)
        assert got[0].tolist() == ref[0].tolist(), name
        assert got[2].tolist() == ref[2].tolist() and got[3].tolist() == ref[3].tolist(), name
        assert torch.allclose(got[1].double(), ref[1].double(), atol=1e-5), name


def test_a_1_0_kernel_serves_plain_batches_and_is_refused_for_penalties(
    install_fixture, checkpoints_dir_llama
):
    from tessera import LLM, SamplingParams
    from tessera.discovery import select_platform
    from tessera.kernel_registry import get_registry, platform_facts
    from tessera.pluggable_layers.sampler import FULL_FACTS

    install_fixture("api_1_0")
    import fixture_api_1_0

    registry = get_registry()
    cpu = platform_facts(select_platform("cpu"))
    assert registry.select("sample", cpu, "float32").kernel.name == "vendor_sample_1_0"
    full = registry.select("sample", cpu, "float32", **FULL_FACTS)
    assert full.kernel.name == "cpu_torch_sample"
    refused = next(c for c in full.candidates if c.kernel.name == "vendor_sample_1_0")
    assert (
        refused.verdict == "refused" and "does not declare the sample feature(s) penalties" in refused.reason
    )
    llm = LLM(str(checkpoints_dir_llama))
    plain = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)
    llm.generate([[3, 4, 5]], plain, use_tqdm=False)
    calls = len(fixture_api_1_0.CALLS)
    assert calls > 0
    out = llm.generate(
        [[3, 4, 5]], plain.model_copy(update={"repetition_penalty": 1.2, "logprobs": 2}), use_tqdm=False
    )
    assert len(fixture_api_1_0.CALLS) == calls  # the 1.0 kernel was not asked to do what it cannot
    assert len(out[0].outputs[0].logprobs) == 4
