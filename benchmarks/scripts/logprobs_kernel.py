"""The sample op's logprobs on a decode batch: the Triton pass (tessera_triton.kernels.sample_logprobs) at a few
tile sizes against the shared torch one (logsumexp, comparison, top-k), Llama-3's vocabulary, in one run.

Each variant is first checked against the torch result on fresh random logits (values, ranks; top values
through the log-softmax), then timed with device events (medians after warm-up, input sets rotated).

    python benchmarks/scripts/logprobs_kernel.py OUT_DIR [--rows 64] [--vocab 128256]

JSON goes to OUT_DIR/logprobs_kernel.json; the table is printed last.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tessera.discovery import select_platform
from tessera.kernel_registry import platform_facts
from tessera.pluggable_layers.measure import median_ms
from tessera.pluggable_layers.sample_features import logprobs_of
from tessera_triton.kernels.sample_logprobs import triton_logprobs

VARIANTS = [(1024, 4), (2048, 4), (2048, 8), (4096, 4), (4096, 8), (8192, 8)]  # (block, num_warps)


def check(got, want, logits) -> float:
    values, ids, rank = got
    assert torch.equal(rank, want[2]) and torch.equal(ids[:, 0], want[1][:, 0]), "rank or sampled id differs"
    lp = torch.log_softmax(logits.float(), dim=-1)
    return max(float((values - want[0]).abs().max()), float((lp.gather(1, ids) - values).abs().max()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=128256)
    args = ap.parse_args()
    platform = select_platform(None)
    device = platform.torch_device(0)
    sets = [torch.randn(args.rows, args.vocab, device=device) * 3 for _ in range(4)]
    tokens = [torch.randint(0, args.vocab, (args.rows,), device=device) for _ in range(4)]
    rows = []
    for n in (5, 20):
        want = logprobs_of(sets[0], tokens[0], n)
        torch_ms = median_ms(
            [lambda i=i, n=n: logprobs_of(sets[i], tokens[i], n) for i in range(4)], platform
        )
        for block, warps in VARIANTS:
            err = check(triton_logprobs(sets[0], tokens[0], n, block, warps), want, sets[0])
            assert err < 1e-4, f"block {block} warps {warps}: error {err}"
            fns = [
                lambda i=i, n=n, b=block, w=warps: triton_logprobs(sets[i], tokens[i], n, b, w)
                for i in range(4)
            ]
            rows.append({"n": n, "block": block, "num_warps": warps, "error": err, "triton_us": 1000 * median_ms(fns, platform),
                         "torch_us": 1000 * torch_ms})  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "device": platform_facts(platform).device or platform.name,
        "rows": args.rows,
        "vocab": args.vocab,
        "results": rows,
    }
    (args.out / "logprobs_kernel.json").write_text(json.dumps(result, indent=2))
    print(f"{result['device']}: logprobs of [{args.rows}, {args.vocab}] float32 logits")
    print(f"{'N':>3} {'block':>6} {'warps':>5} {'error':>8} {'triton us':>10} {'torch us':>9}")
    for r in rows:
        print(
            f"{r['n']:>3} {r['block']:>6} {r['num_warps']:>5} {r['error']:8.1e} {r['triton_us']:10.1f} {r['torch_us']:9.1f}"
        )


if __name__ == "__main__":
    main()
