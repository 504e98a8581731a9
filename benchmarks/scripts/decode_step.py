"""Decode step of a Llama-3-8B-shaped model (random bf16 weights), batch 1, 128 in / 256 out:
graphs on and off, against the weight-bytes floor (weights / copy bandwidth measured in the same run).

    python benchmarks/scripts/decode_step.py --out decode_step.json
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

import torch

from tessera import LLM, SamplingParams
from tessera.models.presets import preset_dir
from tessera.pluggable_layers.measure import measure_limits


def bytes_read_per_step(model: torch.nn.Module) -> int:
    """Bytes of the model's weights (as the kernels hold them, after any prepare) that a decode step reads:
    all of them, except the embedding table beyond the one row a token looks up (unless lm_head is tied to it)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())  # a tied weight counted once
    embed = model.embed_tokens.weight
    head = getattr(getattr(model, "lm_head", None), "weight", None)
    if head is embed:
        return total
    return total - (embed.shape[0] - 1) * embed.shape[1] * embed.element_size()


def run(preset: str, eager: bool, prompt_len: int, out_len: int) -> dict:
    """The preset with random bf16 weights."""
    return run_model(preset_dir(preset), "random", eager, prompt_len, out_len)


def run_model(path, load_format: str, eager: bool, prompt_len: int, out_len: int, probe=None) -> dict:
    """Batch-1 greedy decode of ``prompt_len`` tokens in, ``out_len`` out (ignore_eos): the median TPOT of three
    runs after a warm-up, the bytes a step reads, and the kernels chosen; ``probe(llm)``'s answer, if given,
    after the timed runs."""
    llm = LLM(str(path), load_format=load_format, dtype="bfloat16", enforce_eager=eager, max_num_seqs=8,
              max_model_len=2048, gpu_memory_utilization=0.85)  # fmt: skip
    engine = llm.engine
    read_per_step = bytes_read_per_step(engine.runner.model)
    prompt = {"prompt_token_ids": list(range(1000, 1000 + prompt_len))}
    params = SamplingParams(temperature=0, max_tokens=out_len, ignore_eos=True)
    llm.generate([prompt], SamplingParams(temperature=0, max_tokens=16, ignore_eos=True))  # warm-up
    tpots, totals = [], []
    for _ in range(3):
        start = time.perf_counter()
        out = llm.generate([prompt], params)[0]
        if out.error:
            raise SystemExit(f"{path}: the decode run failed: {out.error}")
        totals.append(time.perf_counter() - start)
        tpots.append(out.metrics.time_per_output_token)
    result = {"graphs": engine.runner.graphs is not None, "tpot_ms": statistics.median(tpots) * 1000,
              "total_s": statistics.median(totals), "weight_bytes_read_per_step": read_per_step,
              "kernels": sorted({f"{c.op}:{c.kernel}" for c in engine.runner.ctx.choices}),
              "prepared": sorted({f"{c.op}:{c.kernel}: {c.weights}" for c in engine.runner.ctx.choices if c.weights})}  # fmt: skip
    if probe is not None:
        result["probe"] = probe(llm)
    del llm, engine
    gc.collect()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="llama3-8b")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--out-len", type=int, default=256)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from tessera.discovery import select_platform

    platform = select_platform()
    limits = measure_limits(platform, platform.torch_device(0))
    runs = {}
    for eager in (False, True):
        runs["eager" if eager else "graphs"] = run(args.preset, eager, args.prompt_len, args.out_len)
        platform.empty_cache()
    floor_ms = runs["graphs"]["weight_bytes_read_per_step"] / (limits["copy_GBps"] * 1e6)
    summary = {"device": platform.devices()[0].name, "torch": torch.__version__, "preset": args.preset, "limits": limits,
               "floor_ms": floor_ms, "runs": runs,
               "graphs_over_floor": runs["graphs"]["tpot_ms"] / floor_ms, "eager_over_floor": runs["eager"]["tpot_ms"] / floor_ms}  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))
    print(f"device {summary['device']}: copy {limits['copy_GBps']:.0f} GB/s; floor {floor_ms:.3f} ms/step")
    for name, r in runs.items():
        print(
            f"{name:>7}: TPOT {r['tpot_ms']:.3f} ms = {r['tpot_ms'] / floor_ms:.2f}x floor (graphs captured: {r['graphs']})"
        )


if __name__ == "__main__":
    main()
