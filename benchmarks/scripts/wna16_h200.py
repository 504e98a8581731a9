"""linear_wna16 (4-bit GPTQ weights, bf16 activations) against bf16 torch.mm at decode sizes, on Llama-3-8B's
projection shapes, in one run.

For each shape and M (1, 16, 64): the kernel the registry selects here (its ``prepare`` run on the GPTQ
tensors first) is checked on fresh random inputs with a NaN-poisoned output against the reference
(dequantize, matmul in float32); then it and bf16 ``torch.mm`` on a dense weight of the same shape are
timed with device events (medians after warm-up, pluggable_layers/measure.py), eagerly and as graph
replays, with input sets rotated past the L2. The int4 floor is the bytes of the weight, scales and
zeros at the measured copy bandwidth. ``--sweep`` also times the kernel's narrowed config space per
shape and writes the best configs as a tuned-config file.

    python benchmarks/scripts/wna16_h200.py OUT_DIR [--sweep all|"qkv/o,down"] [--sweep-m 1,16]

JSON goes to OUT_DIR/wna16_h200.json; the table is printed last.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path

import torch

from tessera.discovery import select_platform
from tessera.kernel_registry import get_registry, platform_facts
from tessera.pluggable_layers.measure import measure_limits, median_ms, median_ms_graph, normalized_error
from tessera.pluggable_layers.ops import OPS
from tessera.pluggable_layers.reference import reference

SHAPES_ALL = [("qkv/o", 4096, 4096), ("qkv fused", 4096, 6144), ("gate|up", 4096, 14336),
          ("gate_up fused", 4096, 28672), ("down", 14336, 4096)]  # (name, K, N)  # fmt: skip
#: TESSERA_WNA16_SHAPES="qkv/o,down" runs those shapes only
SHAPES = [s for s in SHAPES_ALL if s[0] in os.environ.get("TESSERA_WNA16_SHAPES", s[0]).split(",")]
MS = [1, 16, 64]
GROUP = 128
L2_PAST = 256 << 20  # bytes of weights cycled per timing, well past the L2


def gptq_tensors(k, n, device, g):
    groups = k // GROUP
    qweight = torch.randint(-(2**31), 2**31 - 1, (k // 8, n), dtype=torch.int32, device=device, generator=g)
    qzeros = torch.randint(
        -(2**31), 2**31 - 1, (groups, n // 8), dtype=torch.int32, device=device, generator=g
    )
    scales = (torch.rand(groups, n, device=device, generator=g) + 0.5).mul_(k**-0.5 / 6).to(torch.bfloat16)
    return {"qweight": qweight, "scales": scales, "qzeros": qzeros}


def int4_bytes(k, n) -> int:
    return k * n // 2 + 2 * (k // GROUP) * n * 2  # 4-bit weight, bf16 scales and zero points


def check(bound, prepared, raw, m, k, n, device, g) -> float:
    x = torch.randn(m, k, device=device, generator=g).to(torch.bfloat16)
    out = torch.full((m, n), float("nan"), device=device, dtype=torch.bfloat16)
    got = bound(
        x, prepared["qweight"], prepared["scales"], prepared["qzeros"], None, weight_format="gptq", out=out
    )
    ref = reference("linear_wna16")(x.float(), raw["qweight"], raw["scales"].float(), raw["qzeros"], None,
                                    weight_format="gptq")  # fmt: skip
    assert got is out, "the kernel did not return out"
    return normalized_error(out, ref)


SWEEP_MS: set[int] = set()  # --sweep-m


def timings(fns, platform) -> dict:
    return {
        "eager_ms": median_ms(fns, platform, iters=50, warmup=10),
        "graph_ms": median_ms_graph(fns, platform),
    }


def run_shape(name, k, n, platform, bound, device, g, limits, sweep) -> list[dict]:
    copies = max(2, min(32, -(-L2_PAST // int4_bytes(k, n))))
    raw_sets = [gptq_tensors(k, n, device, g) for _ in range(copies)]
    prepared_sets = [bound.prepare(raw) for raw in raw_sets]
    dense_copies = max(2, min(8, -(-L2_PAST // (2 * k * n))))
    dense = [torch.randn(n, k, device=device, generator=g).to(torch.bfloat16) for _ in range(dense_copies)]
    rows = []
    for m in MS:
        error = check(bound, prepared_sets[0], raw_sets[0], m, k, n, device, g)
        xs = [torch.randn(m, k, device=device, generator=g).to(torch.bfloat16) for _ in range(copies)]
        fns = [lambda x=x, p=p: bound(x, p["qweight"], p["scales"], p["qzeros"], None, weight_format="gptq")
               for x, p in zip(xs, prepared_sets, strict=True)]  # fmt: skip
        mm = [lambda x=x, w=w: torch.mm(x, w.t()) for x, w in zip(xs, itertools.cycle(dense))]
        wna16, bf16 = timings(fns, platform), timings(mm, platform)
        best = min(v for v in wna16.values() if v)
        floor_ms = int4_bytes(k, n) / (limits["copy_GBps"] * 1e6)
        row = {"shape": name, "m": m, "k": k, "n": n, "error": error, "budget": OPS["linear_wna16"].budget("bfloat16"),
               "wna16": wna16, "bf16_mm": bf16, "int4_floor_ms": floor_ms, "floor_share": floor_ms / best,
               "speedup_vs_bf16": min(v for v in bf16.values() if v) / best}  # fmt: skip
        if sweep and (not SWEEP_MS or m in SWEEP_MS):
            row["sweep"] = sweep_configs(bound, xs, prepared_sets, m, k, n, platform)
        rows.append(row)
    return rows


def sweep_configs(bound, xs, prepared_sets, m, k, n, platform) -> dict:
    kernel = bound.kernel
    key = kernel.shape_key.of(tokens=m, k=k, n=n)
    results = []
    for config in kernel.config_space.configs(dict(key)):
        fns = [lambda x=x, p=p, c=config: kernel.fn(x, p["qweight"], p["scales"], p["qzeros"], None, config=c)
               for x, p in zip(xs, prepared_sets, strict=True)]  # fmt: skip
        try:
            t = median_ms_graph(fns, platform) or median_ms(fns, platform)
        except Exception as exc:  # noqa: BLE001 - a config that does not compile is skipped
            results.append({"config": config, "error": str(exc)[:200]})
            continue
        results.append({"config": config, "ms": t})
    ok = sorted((r for r in results if "ms" in r), key=lambda r: r["ms"])
    return {
        "key": kernel.shape_key.to_str(key),
        "best": ok[0] if ok else None,
        "top5": ok[:5],
        "tried": len(results),
    }


def tuned_file(rows, kernel_name, device_name) -> dict:
    from tessera_triton.kernels.linear_wna16 import CONFIG_SPACE

    config_default = CONFIG_SPACE.default
    configs = {
        r["sweep"]["key"]: r["sweep"]["best"]["config"] for r in rows if r.get("sweep", {}).get("best")
    }
    return {"schema_version": 1, "kernel": kernel_name, "device": device_name, "key_fields": ["tokens", "k", "n"],
            "configs": configs, "default": dict(config_default), "meta": {"dtype": "bfloat16", "torch": torch.__version__,
            "timed_with": ["graph replay medians, wna16_h200.py --sweep"]}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--sweep", default="", help="comma-separated shape names to sweep configs on ('all': every shape)"
    )
    parser.add_argument("--sweep-m", default="", help="comma-separated M values to sweep at (default: all)")
    args = parser.parse_args()
    SWEEP_MS.update(int(m) for m in args.sweep_m.split(",") if m)
    args.out.mkdir(parents=True, exist_ok=True)
    platform = select_platform()
    device = platform.torch_device(0)
    facts = platform_facts(platform)
    selection = get_registry().select("linear_wna16", facts, "bfloat16", weight_format="gptq")
    bound = get_registry().bind(selection)
    limits = measure_limits(platform, device)
    g = torch.Generator(device=device).manual_seed(0)
    rows = [
        r
        for name, k, n in SHAPES
        for r in run_shape(name, k, n, platform, bound, device, g, limits, args.sweep)
    ]
    result = {"device": facts.device, "kernel": bound.name, "weights": bound.kernel.weights_line(),
              "torch": torch.__version__, "limits": limits, "rows": rows}  # fmt: skip
    (args.out / "wna16_h200.json").write_text(json.dumps(result, indent=2, default=str))
    if args.sweep:
        tuned = tuned_file(rows, bound.name, facts.device)
        (args.out / f"{bound.name}_{facts.device}.json").write_text(json.dumps(tuned, indent=2))
    print_table(result)


def print_table(result: dict) -> None:
    print(
        f"{result['device']}: {result['kernel']} ({result['weights']}); copy {result['limits']['copy_GBps']:.0f} GB/s"
    )
    print(
        "shape            M      K      N   error  wna16 us (eager/graph)  bf16 mm us (eager/graph)  "
        "floor us  floor share  x bf16"
    )
    for r in result["rows"]:
        w, b = r["wna16"], r["bf16_mm"]
        us = lambda v: f"{v * 1e3:7.1f}" if v else "    n/a"  # noqa: E731
        print(f"{r['shape']:14s} {r['m']:3d} {r['k']:6d} {r['n']:6d} {r['error']:.1e}   {us(w['eager_ms'])} / "
              f"{us(w['graph_ms'])}        {us(b['eager_ms'])} / {us(b['graph_ms'])}     {r['int4_floor_ms'] * 1e3:6.1f}"
              f"       {r['floor_share']:.2f}    {r['speedup_vs_bf16']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
