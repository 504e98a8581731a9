"""Host-side cost of the tensor-parallel step message: encode + decode microseconds and bytes per step.

    python benchmarks/scripts/tp_messages.py [--batch 256] [--context 2000] [--steps 200] [--out FILE]

Builds ``--batch`` requests of ``--context`` prompt tokens through the real Scheduler and KV-cache manager
(block size 16), prefills them in one step, then runs ``--steps`` decode steps. Each step is timed from the
driver's ``StepEncoder.message`` through ``encode`` and ``decode`` to the worker's ``StepDecoder.apply`` (no
process, pipe or collective: only what the codec costs on the host CPU). Prints and writes JSON with the
median and mean per decode step and the first (prefill) step on its own. ``--json`` swaps the codec's
msgpack for the standard library's JSON over the same messages (the comparison behind the choice).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from tessera.engine import step_codec
from tessera.engine.kv_cache import KVCacheManager
from tessera.engine.request import Request
from tessera.engine.scheduler import Scheduler
from tessera.sampling_params import SamplingParams

BLOCK = 16


def timed_step(encoder, decoder, out) -> tuple[float, int]:
    t0 = time.perf_counter()
    data = step_codec.encode(encoder.message(out, use_prev=False))
    decoder.apply(step_codec.decode(data))
    return (time.perf_counter() - t0) * 1e6, len(data)


def run(batch: int, context: int, steps: int) -> dict:
    blocks = batch * (-(-(context + steps + 1) // BLOCK) + 1)
    kv = KVCacheManager(blocks, BLOCK, enable_prefix_caching=False, num_state_slots=0)
    scheduler = Scheduler(kv, max_num_seqs=batch, max_num_batched_tokens=batch * context)
    for i in range(batch):
        prompt = [(i * 7 + j) % 32000 for j in range(context)]
        scheduler.add(
            Request(f"cmpl-{i:08x}-0", prompt, SamplingParams(max_tokens=steps + 2, temperature=0.8))
        )
    encoder, decoder = step_codec.StepEncoder(), step_codec.StepDecoder()
    times, sizes = [], []
    for _ in range(steps + 1):
        out = scheduler.schedule()
        us, size = timed_step(encoder, decoder, out)
        times.append(us)
        sizes.append(size)
        for s in out.scheduled:
            if s.samples:
                s.request.output_token_ids.append(len(s.request.output_token_ids) % 32000)
    decode_us, decode_bytes = times[1:], sizes[1:]
    return {
        "batch": batch, "context_tokens": context, "block_size": BLOCK, "decode_steps": steps,
        "first_step": {"us": round(times[0], 1), "bytes": sizes[0]},
        "decode_step": {"median_us": round(statistics.median(decode_us), 1), "mean_us": round(statistics.mean(decode_us), 1),
                        "median_bytes": int(statistics.median(decode_bytes)), "mean_bytes": round(statistics.mean(decode_bytes), 1)},
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--context", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--json", action="store_true", help="encode the same messages with the stdlib json")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.json:
        step_codec.encode = lambda message: json.dumps(message, separators=(",", ":")).encode()
        step_codec.decode = json.loads
    codec = "json" if args.json else "msgpack"
    result = {"label": args.label, "codec": codec, "python": platform.python_version(),
              **run(args.batch, args.context, args.steps)}  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
