"""Where decode time goes when requests ask for logprobs and penalties (Llama-3-8B-shaped, random bf16).

For each variant (plain greedy, logprobs=5, penalties, both) one fixed batch is generated after a
warm-up and its output tok/s taken; then the "both" variant runs once more under the torch profiler
(device kernels by family, device busy share per step) and once under cProfile (host functions by
own time). Prints the table last; JSON to OUT_DIR/profile_sampling.json.

    python3 benchmarks/scripts/profile_sampling.py OUT_DIR [--preset llama3-8b] [--batch 64]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_decode import device_activities, family  # noqa: E402

from tessera import LLM, SamplingParams  # noqa: E402
from tessera.bench.e2e import sampling_extras  # noqa: E402
from tessera.models.presets import preset_dir  # noqa: E402

VARIANTS = {"plain": (None, False), "logprobs5": (5, False), "penalties": (None, True), "both": (5, True)}


class CollectorTime:
    """Seconds the cyclic garbage collector spends per generation while ``timing()`` is active."""

    def __init__(self) -> None:
        self.spent: dict[int, float] | None = None
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if self.spent is None:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.spent[info["generation"]] += time.perf_counter() - self._start

    @contextmanager
    def timing(self):
        self.spent = {0: 0.0, 1: 0.0, 2: 0.0}
        try:
            yield self.spent
        finally:
            self.spent = None


def generate(llm, prompts, variant: str, tokens: int):
    logprobs, penalties = VARIANTS[variant]
    params = SamplingParams(
        temperature=0, max_tokens=tokens, ignore_eos=True, **sampling_extras(logprobs, penalties)
    )
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params)
    return sum(len(o.outputs[0].token_ids) for o in outs) / (time.perf_counter() - t0)


def device_profile(llm, prompts, tokens: int) -> dict:
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        generate(llm, prompts, "both", tokens)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        trace = json.loads(path.read_text())
        acts = device_activities(trace)
    # runtime calls by host time: a synchronizing one (event or stream sync, a pageable copy, a host or
    # device allocation) shows here with the time the host spent in it
    runtime: dict[str, list[float]] = defaultdict(list)
    for e in trace["traceEvents"]:
        if e.get("cat") in ("cuda_runtime", "cuda_driver") and "dur" in e:
            runtime[e["name"]].append(e["dur"])
    calls = sorted(((k, sum(v) / tokens, len(v) / tokens) for k, v in runtime.items()), key=lambda r: -r[1])
    span = (acts[-1]["ts"] + acts[-1]["dur"] - acts[0]["ts"]) / 1000.0
    by_family: dict[str, list[float]] = defaultdict(list)
    for a in acts:
        by_family[family(a["name"])].append(a["dur"])
    rows = sorted(
        ((k, sum(v) / tokens / 1000.0, len(v) / tokens) for k, v in by_family.items()), key=lambda r: -r[1]
    )
    return {"span_ms_per_step": span / tokens, "busy_ms_per_step": sum(a["dur"] for a in acts) / 1000.0 / tokens,
            "families": [{"name": k, "ms_per_step": ms, "per_step": c} for k, ms, c in rows[:30]],
            "runtime_calls": [{"name": k, "host_us_per_step": us, "per_step": c} for k, us, c in calls[:12]]}  # fmt: skip


def host_profile(llm, prompts, tokens: int) -> list[dict]:
    prof = cProfile.Profile()
    prof.enable()
    generate(llm, prompts, "both", tokens)
    prof.disable()
    stream = io.StringIO()
    stats = pstats.Stats(prof, stream=stream)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:40]  # by own time
    where = lambda f, line, name: f"{Path(f).name}:{line}:{name}"  # noqa: E731
    # a torch call that waits for the device shows as own time of a built-in: its callers say which line
    return [{"function": where(f, line, name), "calls": nc, "own_s": tt, "cum_s": ct,
             "callers": {where(*c): round(v[2], 6) for c, v in sorted(callers.items(), key=lambda cv: -cv[1][2])[:6]}
             if f == "~" else {}}
            for (f, line, name), (cc, nc, tt, ct, callers) in rows]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--preset", default="llama3-8b")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--input-len", type=int, default=256)
    ap.add_argument("--output-len", type=int, default=128)
    args = ap.parse_args()
    llm = LLM(str(preset_dir(args.preset)), load_format="random", dtype="bfloat16", max_num_seqs=args.batch,
              max_model_len=args.input_len + args.output_len + 16)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    prompts = [{"prompt_token_ids": torch.randint(10, min(30000, llm.engine.spec.vocab_size), (args.input_len,), generator=g).tolist()}
               for _ in range(args.batch)]  # fmt: skip
    on_gpu = torch.cuda.is_available()
    for variant in VARIANTS:  # warm-up: every sampling path compiles here
        generate(llm, prompts, variant, 4)
    collector = CollectorTime()
    rates, gc_us = {}, {}
    for v in VARIANTS:
        with collector.timing() as spent:
            rates[v] = max(generate(llm, prompts, v, args.output_len) for _ in range(2))
        gc_us[v] = {gen: round(1e6 * t / (2 * args.output_len), 1) for gen, t in spent.items()}
    gc.collect()
    gc.freeze()  # everything alive after startup out of the collector's walks: what full collections cost
    with collector.timing() as spent:
        rates["both, startup heap frozen"] = max(
            generate(llm, prompts, "both", args.output_len) for _ in range(2)
        )
    gc_us["both, startup heap frozen"] = {
        gen: round(1e6 * t / (2 * args.output_len), 1) for gen, t in spent.items()
    }
    gc.unfreeze()
    result = {"device": torch.cuda.get_device_name(0) if on_gpu else "cpu", "preset": args.preset, "batch": args.batch,
              "input_len": args.input_len, "output_len": args.output_len, "tok_s": rates,
              "gc_us_per_step": gc_us, "gc_objects": len(gc.get_objects()),
              "device_profile_both": device_profile(llm, prompts, args.output_len) if on_gpu else None,
              "host_profile_both": host_profile(llm, prompts, args.output_len)}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile_sampling.json").write_text(json.dumps(result, indent=2))
    dev = result["device_profile_both"] or {"span_ms_per_step": 0.0, "busy_ms_per_step": 0.0, "families": []}
    print(f"device span {dev['span_ms_per_step']:.2f} ms/step, busy {dev['busy_ms_per_step']:.2f} ms/step")
    for f in dev["families"][:15]:
        print(f"  {f['ms_per_step'] * 1000:8.1f} us/step x{f['per_step']:5.1f} {f['name']}")
    for c in dev.get("runtime_calls", []):
        print(f"  runtime {c['host_us_per_step']:8.1f} host us/step x{c['per_step']:6.1f} {c['name']}")
    stats = torch.cuda.memory_stats() if on_gpu else {}
    result["allocator"] = {k: stats.get(k) for k in ("num_alloc_retries", "num_sync_all_streams", "num_device_alloc",
                                                     "num_device_free")}  # fmt: skip
    print("allocator:", result["allocator"])
    (args.out / "profile_sampling.json").write_text(json.dumps(result, indent=2))
    for h in result["host_profile_both"][:20]:
        print(f"  host {h['own_s']:7.3f} s own {h['cum_s']:7.3f} s cum {h['calls']:8d} {h['function']}")
        for caller, own in list(h["callers"].items())[:3]:
            print(f"        {own:7.3f} s from {caller}")
    print(f"collector: {result['gc_objects']} objects tracked")
    for v, r in rates.items():
        print(
            f"{v:>26}: {r:9.1f} tok/s  ({r / rates['plain']:.3f} of plain)  gc us/step by generation {gc_us[v]}"
        )


if __name__ == "__main__":
    main()
