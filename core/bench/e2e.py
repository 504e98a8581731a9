"""End-to-end benchmarks: ``tessera bench throughput`` and ``tessera bench latency``.

A workload is a list of (prompt token ids, output length); output lengths are
forced (EOS ignored) so that every engine does the same work. Tessera runs it
through ``LLM.generate``; with ``compare="hf"`` transformers' ``generate`` runs
the same workload on the same weights in the same process. The floor is the
time the device needs at its measured limits: each decode step reads the
weights once plus the KV of every running sequence, prefill does 2 x params
FLOPs per prompt token.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass

import torch

Workload = list[tuple[list[int], int]]


def fixed_workload(num_prompts: int, input_len: int, output_len: int, vocab: int, seed: int) -> Workload:
    rng = random.Random(seed)
    return [([rng.randrange(3, vocab) for _ in range(input_len)], output_len) for _ in range(num_prompts)]


def random_workload(num_prompts: int, low: int, high: int, vocab: int, seed: int) -> Workload:
    rng = random.Random(seed)
    return [
        ([rng.randrange(3, vocab) for _ in range(rng.randint(low, high))], rng.randint(low, high))
        for _ in range(num_prompts)
    ]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


@dataclass
class Floor:
    seconds: float
    weight_bytes: int
    kv_bytes_per_token: int


@dataclass(frozen=True)
class DecodeTraffic:
    """What a decode step moves besides the dense weights and the KV cache."""

    #: per MoE layer: (bytes of all its experts, number of experts, experts per token)
    expert_layers: tuple[tuple[int, int, int], ...] = ()
    #: recurrent (Mamba) state of one sequence, read and written once per step
    state_bytes_per_seq: int = 0


def touched_fraction(tokens: int, experts: int, top_k: int) -> float:
    """Expected share of a layer's experts that ``tokens`` uniformly routed tokens touch."""
    return 1.0 - (1.0 - top_k / experts) ** tokens


def floor_seconds(workload: Workload, weight_bytes: int, params: int, kv_bytes_per_token: int, limits: dict,
                  max_batch: int, traffic: DecodeTraffic = DecodeTraffic()) -> float:  # fmt: skip
    """Lower bound: decode steps read the dense weights once per step (batches of at most max_batch), the
    experts the step's tokens touch, every live KV and each live sequence's recurrent state (read and
    written); prefill costs its FLOPs. ``params`` counts the parameters one token uses."""
    bw, rate = limits["copy_GBps"] * 1e9, limits["matmul_TFLOPs"] * 1e12
    prefill_tokens = sum(len(p) for p, _ in workload)
    total = 2.0 * params * prefill_tokens / rate
    for start in range(0, len(workload), max_batch):
        group = workload[start : start + max_batch]
        for step in range(max(o for _, o in group)):
            live = [(len(p), o) for p, o in group if step < o]
            kv = sum((length + step) * kv_bytes_per_token for length, _ in live)
            experts = sum(b * touched_fraction(len(live), e, k) for b, e, k in traffic.expert_layers)
            state = 2 * traffic.state_bytes_per_seq * len(live)
            total += max((weight_bytes + experts + kv + state) / bw, 2.0 * params * len(live) / rate)
    return total


#: ``tessera bench throughput --penalties``: the penalties the sampling-cost figure is measured with
BENCH_PENALTIES = {"presence_penalty": 0.5, "frequency_penalty": 0.5, "repetition_penalty": 1.1}


def sampling_extras(logprobs: int | None, penalties: bool) -> dict:
    """SamplingParams fields added to every request of a bench run (``--logprobs N``, ``--penalties``)."""
    return {
        **({"logprobs": logprobs} if logprobs is not None else {}),
        **(BENCH_PENALTIES if penalties else {}),
    }


def run_tessera(llm, workload: Workload, extras: dict | None = None) -> dict:
    from tessera import SamplingParams

    extras = extras or {}
    params = [SamplingParams(temperature=0, max_tokens=o, ignore_eos=True, **extras) for _, o in workload]
    # warm-up over the workload's own prompts (two tokens each): every prefill shape the run will see
    # compiles its kernels here, not inside the timed region
    llm.generate(
        [{"prompt_token_ids": p} for p, _ in workload],
        SamplingParams(temperature=0, max_tokens=2, ignore_eos=True, **extras),
        use_tqdm=False,
    )
    platform = llm.engine.platform
    platform.synchronize()
    platform.reset_peak_memory()
    start = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": p} for p, _ in workload], params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    out_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    in_tokens = sum(len(p) for p, _ in workload)
    ttft = [o.metrics.time_to_first_token for o in outs if o.metrics.time_to_first_token is not None]
    tpot = [o.metrics.time_per_output_token for o in outs if o.metrics.time_per_output_token is not None]
    return {"seconds": elapsed, "output_tokens": out_tokens, "output_tokens_per_s": out_tokens / elapsed,
            "total_tokens_per_s": (out_tokens + in_tokens) / elapsed,
            "ttft_ms": {"p50": 1000 * percentile(ttft, 0.5), "p99": 1000 * percentile(ttft, 0.99)} if ttft else None,
            "tpot_ms": {"p50": 1000 * percentile(tpot, 0.5), "p99": 1000 * percentile(tpot, 0.99)} if tpot else None,
            "peak_memory_bytes": platform.peak_memory()}  # fmt: skip


def hf_model_for(llm):
    """A transformers model with the engine's architecture, random weights on the engine's device.

    Never runs a checkpoint's own Python code (``auto_map`` in config.json): ``trust_remote_code=False``
    is passed explicitly, so transformers neither imports it nor asks on the terminal.
    """
    import transformers

    from tessera.errors import ConfigError

    path = str(llm.engine.spec.path)
    try:
        config = transformers.AutoConfig.from_pretrained(path, trust_remote_code=False)
        with torch.device(llm.engine.runner.device):
            model = transformers.AutoModelForCausalLM.from_config(
                config, trust_remote_code=False, dtype=llm.engine.dtype
            )
    except ValueError as exc:
        if "trust_remote_code" not in str(exc) and "custom code" not in str(exc):
            raise
        raise ConfigError(
            f"transformers can load {path} only by running the checkpoint's own Python code (auto_map in "
            "its config.json); tessera never runs checkpoint code, so there is no transformers comparison"
        ) from None
    return model.eval()


def copy_weights(hf_model, llm) -> None:
    """Give the engine the transformers model's weights (Hugging Face names go through its loader)."""
    llm.engine.runner.model.load_weights(hf_model.state_dict().items())


@torch.inference_mode()
def run_hf(model, workload: Workload, batch_size: int) -> dict:
    device = next(model.parameters()).device
    start = time.perf_counter()
    produced = 0
    for i in range(0, len(workload), batch_size):
        group = workload[i : i + batch_size]
        width = max(len(p) for p, _ in group)
        ids = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros(len(group), width, dtype=torch.long)
        for row, (p, _) in enumerate(group):  # left padding
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        new = max(o for _, o in group)
        out = model.generate(ids.to(device), attention_mask=mask.to(device), max_new_tokens=new, min_new_tokens=new,
                             do_sample=False, pad_token_id=0)  # fmt: skip
        produced += sum(o for _, o in group)
        del out
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "output_tokens": produced, "output_tokens_per_s": produced / elapsed}


def summarize(result: dict) -> str:
    t = result["tessera"]
    line = f"tessera {t['output_tokens_per_s']:.1f} output tok/s ({t['seconds']:.2f}s)"
    if t.get("tpot_ms"):
        line += f", TPOT p50 {t['tpot_ms']['p50']:.2f} ms"
    if "floor_share" in result:
        line += f", floor share {result['floor_share']:.2f}"
    peer = result.get("hf")
    if peer and "output_tokens_per_s" in peer:
        line += f"; transformers {peer['output_tokens_per_s']:.1f} tok/s -> {result['speedup_vs_hf']:.2f}x"
    elif peer:
        line += f"; transformers failed: {peer['error']}"
    return line


__all__ = [
    "fixed_workload",
    "random_workload",
    "floor_seconds",
    "DecodeTraffic",
    "decode_traffic",
    "run_tessera",
    "run_hf",
    "statistics",
]


def decode_traffic(runner) -> tuple[int, int, DecodeTraffic]:
    """(dense weight bytes, parameters one token uses, the rest of a decode step's traffic) of a model."""
    from tessera.engine.cache_plan import state_bytes_per_slot
    from tessera.pluggable_layers.moe import FusedMoE

    model = runner.model
    params = [(n, p) for n, p in model.named_parameters() if "embed_tokens" not in n]
    experts = [m for m in model.modules() if isinstance(m, FusedMoE)]
    expert_ids = {id(t) for m in experts for t in (m.w13, m.w2)}
    dense = [p for _, p in params if id(p) not in expert_ids]
    dense_bytes = sum(p.numel() * p.element_size() for p in dense)
    active = sum(p.numel() for p in dense) + sum(
        (m.w13.numel() + m.w2.numel()) * m.top_k // m.num_experts for m in experts
    )
    layers = tuple(
        (sum(t.numel() * t.element_size() for t in (m.w13, m.w2)), m.num_experts, m.top_k) for m in experts
    )
    return dense_bytes, active, DecodeTraffic(layers, state_bytes_per_slot(runner))
