"""End-to-end benchmarks: ``tessera bench throughput`` and ``tessera bench latency``.

A workload is a list of (prompt token ids, output length); output lengths are
forced (EOS ignored) so that every engine does the same work. Tessera runs it
through ``LLM.generate``; with ``compare="hf"`` transformers' ``generate`` runs
the same workload on the same weights in the same process. The floor
(:mod:`tessera.bench.floor`) is a lower bound on the workload's time under any
schedule, at the device limits measured in the same run.
"""

from __future__ import annotations

import random
import statistics
import time

import torch

Workload = list[tuple[list[int], int]]


def fixed_workload(num_prompts: int, input_len: int, output_len: int, vocab: int, seed: int) -> Workload:
    rng = random.Random(seed)
    return [([rng.randrange(3, vocab) for _ in range(input_len)], output_len) for _ in range(num_prompts)]


def shared_prefix_workload(num_prompts: int, prefix_len: int, input_len: int, output_len: int, vocab: int,
                           seed: int) -> Workload:  # fmt: skip
    """Every prompt starts with the same ``prefix_len`` tokens (a system prompt), then ``input_len`` of its own."""
    rng = random.Random(seed)
    prefix = [rng.randrange(3, vocab) for _ in range(prefix_len)]
    return [
        (prefix + [rng.randrange(3, vocab) for _ in range(input_len)], output_len) for _ in range(num_prompts)
    ]


def warmup_workload(workload: Workload, vocab: int, seed: int) -> Workload:
    """Prompts of the workload's lengths with other tokens: a warm-up that leaves nothing in the prefix
    cache the timed run could hit."""
    rng = random.Random(seed + 7919)
    return [([rng.randrange(3, vocab) for _ in p], o) for p, o in workload]


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


#: ``tessera bench throughput --penalties``: the penalties the sampling-cost figure is measured with
BENCH_PENALTIES = {"presence_penalty": 0.5, "frequency_penalty": 0.5, "repetition_penalty": 1.1}


def sampling_extras(logprobs: int | None, penalties: bool) -> dict:
    """SamplingParams fields added to every request of a bench run (``--logprobs N``, ``--penalties``)."""
    return {
        **({"logprobs": logprobs} if logprobs is not None else {}),
        **(BENCH_PENALTIES if penalties else {}),
    }


def run_tessera(llm, workload: Workload, extras: dict | None = None, profile: bool = False) -> dict:
    from tessera import SamplingParams

    extras = extras or {}
    params = [SamplingParams(temperature=0, max_tokens=o, ignore_eos=True, **extras) for _, o in workload]
    # warm-up over prompts of the workload's lengths (two tokens each): every prefill shape the run will see
    # compiles its kernels here, not inside the timed region; other tokens, so no prefix-cache hit carries over
    engine = llm.engine
    llm.generate(
        [{"prompt_token_ids": p} for p, _ in warmup_workload(workload, engine.spec.vocab_size, 0)],
        SamplingParams(temperature=0, max_tokens=2, ignore_eos=True, **extras),
        use_tqdm=False,
    )
    platform = engine.platform
    platform.synchronize()
    platform.reset_peak_memory()
    before = dict(engine.stats)
    prompts = [{"prompt_token_ids": p} for p, _ in workload]
    if profile:
        from tessera.bench.host_profile import HostProfile

        with HostProfile(engine) as prof:
            start = time.perf_counter()
            outs = llm.generate(prompts, params, use_tqdm=False)
            elapsed = time.perf_counter() - start
    else:
        start = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
    out_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    in_tokens = sum(len(p) for p, _ in workload)
    ttft = [o.metrics.time_to_first_token for o in outs if o.metrics.time_to_first_token is not None]
    tpot = [o.metrics.time_per_output_token for o in outs if o.metrics.time_per_output_token is not None]
    queries = engine.stats["prefix_queries"] - before["prefix_queries"]
    hits = engine.stats["prefix_hits"] - before["prefix_hits"]
    result = {"seconds": elapsed, "output_tokens": out_tokens, "output_tokens_per_s": out_tokens / elapsed,
              "total_tokens_per_s": (out_tokens + in_tokens) / elapsed,
              "ttft_ms": {"p50": 1000 * percentile(ttft, 0.5), "p99": 1000 * percentile(ttft, 0.99)} if ttft else None,
              "tpot_ms": {"p50": 1000 * percentile(tpot, 0.5), "p99": 1000 * percentile(tpot, 0.99)} if tpot else None,
              "peak_memory_bytes": platform.peak_memory(),
              "prefix_cache": {"block_queries": queries, "block_hits": hits,
                               "hit_rate": hits / queries if queries else 0.0}}  # fmt: skip
    if profile:
        result["host_profile"] = prof.report(elapsed)
    return result


def first_request(llm, prompt_len: int, seed: int = 1) -> dict:
    """TTFT of one request of ``prompt_len`` fresh tokens (two outputs): run first on a new engine, it is
    what a server's first user waits, compiles included."""
    from tessera import SamplingParams

    rng = random.Random(seed + 104729)
    prompt = [rng.randrange(3, llm.engine.spec.vocab_size) for _ in range(prompt_len)]
    start = time.perf_counter()
    out = llm.generate([{"prompt_token_ids": prompt}], SamplingParams(temperature=0, max_tokens=2, ignore_eos=True),
                       use_tqdm=False)[0]  # fmt: skip
    return {
        "ttft_ms": 1000 * out.metrics.time_to_first_token,
        "wall_ms": 1000 * (time.perf_counter() - start),
    }


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
        line += f", floor share {result['floor_share']:.2f} ({result['floor']['binding']}-bound)"
    peer = result.get("hf")
    if peer and "output_tokens_per_s" in peer:
        line += f"; transformers {peer['output_tokens_per_s']:.1f} tok/s -> {result['speedup_vs_hf']:.2f}x"
    elif peer:
        line += f"; transformers failed: {peer['error']}"
    return line


__all__ = [
    "fixed_workload",
    "random_workload",
    "shared_prefix_workload",
    "first_request",
    "run_tessera",
    "run_hf",
    "statistics",
]
