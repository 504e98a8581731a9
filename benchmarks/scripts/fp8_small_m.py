"""Where linear_fp8's tensor-wise small-M path stops paying: both cuBLASLt paths and bf16 torch.mm by M.

For each M and Llama-3-8B projection shape: the registered kernel (checked against
the dequantized fp32 product, output poisoned first), the row-wise path forced,
and bf16 torch.mm on the dequantized weight; medians of graph replays, inputs
rotated past the L2.

    python benchmarks/scripts/fp8_small_m.py --out fp8_small_m.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tessera.discovery import select_platform
from tessera.pluggable_layers.measure import median_ms_graph
from tessera_cuda.kernels import linear_fp8 as fp8

SHAPES = [(8192, 8192), (4096, 14336), (14336, 4096), (4096, 6144)]  # (K, N)
MS = [1, 16, 32, 64, 128, 256]


def inputs(m, k, n, g, copies=4):
    sets = []
    for _ in range(copies):
        w = torch.randn(n, k, device="cuda", generator=g) * k**-0.5
        scale = w.abs().amax(-1) / 448.0
        sets.append((torch.randn(m, k, device="cuda", generator=g, dtype=torch.bfloat16),
                     (w / scale[:, None]).to(torch.float8_e4m3fn), scale))  # fmt: skip
    return sets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    platform = select_platform()
    g = torch.Generator(device="cuda").manual_seed(0)
    rows = []
    for k, n in SHAPES:
        for m in MS:
            sets = inputs(m, k, n, g)
            x, w, s = sets[0]
            out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
            fp8.linear_fp8(x, w, s, out=out)
            ref = x.float() @ (w.float() * s[:, None]).t()
            err = ((out.float() - ref).norm() / ref.norm()).item()
            bf16 = [(x, (w.float() * s[:, None]).to(torch.bfloat16)) for x, w, s in sets]
            saved = fp8.SMALL_M
            t_kernel = median_ms_graph([lambda a=a: fp8.linear_fp8(*a) for a in sets], platform)
            fp8.SMALL_M = 0
            t_rowwise = median_ms_graph([lambda a=a: fp8.linear_fp8(*a) for a in sets], platform)
            fp8.SMALL_M = 1 << 30
            t_tensorwise = median_ms_graph([lambda a=a: fp8.linear_fp8(*a) for a in sets], platform)
            fp8.SMALL_M = saved
            t_bf16 = median_ms_graph([lambda a=a: torch.mm(a[0], a[1].t()) for a in bf16], platform)
            rows.append({"m": m, "k": k, "n": n, "error": err, "kernel_ms": t_kernel, "rowwise_ms": t_rowwise,
                         "tensorwise_ms": t_tensorwise, "bf16_mm_ms": t_bf16})  # fmt: skip
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "small_m": fp8.SMALL_M,
        "rows": rows,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{result['device']}; SMALL_M = {fp8.SMALL_M}")
    print("    M      K      N    error  kernel  rowwise  tensorw  bf16mm  (us)  kernel/bf16")
    for r in rows:
        print(f"{r['m']:5d} {r['k']:6d} {r['n']:6d} {r['error']:.1e} {r['kernel_ms'] * 1e3:7.1f} {r['rowwise_ms'] * 1e3:8.1f} "
              f"{r['tensorwise_ms'] * 1e3:8.1f} {r['bf16_mm_ms'] * 1e3:7.1f}       {r['kernel_ms'] / r['bf16_mm_ms']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
