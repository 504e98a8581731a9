"""Host CPU microseconds per step of building a step's batch (no model, no device): the flat host
batch (``build_host_batch``) and its packed tensors (``batch_to_device``) at batch B, context C.

    python benchmarks/scripts/host_batch_cost.py [OUT.json]

Checks first that the packed tensors hold the host batch, then times (process CPU time, median
of 7 rounds of 50 calls), then prints a table."""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import time

import torch

from tessera import SamplingParams
from tessera.engine.inputs import batch_to_device, build_host_batch
from tessera.engine.request import Request
from tessera.engine.scheduler import ScheduledRequest, SchedulerOutput

BLOCK = 16


def decode_batch(batch: int, context: int, seed: int = 0) -> SchedulerOutput:
    rng = random.Random(seed)
    out = SchedulerOutput()
    for i in range(batch):
        prompt = context // 2
        r = Request(
            str(i), [rng.randrange(1, 32000) for _ in range(prompt)], SamplingParams(max_tokens=context)
        )
        r.output_token_ids = [rng.randrange(1, 32000) for _ in range(context - prompt)]
        r.block_ids = list(range(i * (context // BLOCK + 1), (i + 1) * (context // BLOCK + 1)))
        out.scheduled.append(ScheduledRequest(r, context - 1, 1))
    return out


def median_us(fn, rounds: int = 7, calls: int = 50) -> float:
    times = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            fn()
        times.append((time.process_time() - start) / calls * 1e6)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for batch, context in ((1, 256), (64, 512), (256, 2000)):
        out = decode_batch(batch, context)
        host = build_host_batch(out, BLOCK, {})
        ids, _, meta, _ = batch_to_device(host, torch.device("cpu"), None, pin=False)
        assert ids.tolist() == host.input_ids and meta.attention.seq_lens.tolist() == host.seq_lens
        build = median_us(lambda out=out: build_host_batch(out, BLOCK, {}))
        pack = median_us(lambda host=host: batch_to_device(host, torch.device("cpu"), None, pin=False))
        rows.append(
            {"batch": batch, "context": context, "build_host_batch_us": build, "batch_to_device_us": pack}
        )
    result = {"benchmark": "host_batch_cost", "cpu": platform.processor() or platform.machine(),
              "python": platform.python_version(), "torch": torch.__version__, "rows": rows}  # fmt: skip
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump(result, f, indent=1)
    print(f"{'batch':>6} {'context':>8} {'build us':>10} {'to device us':>13}")
    for r in rows:
        print(
            f"{r['batch']:>6} {r['context']:>8} {r['build_host_batch_us']:>10.0f} {r['batch_to_device_us']:>13.0f}"
        )


if __name__ == "__main__":
    main()
