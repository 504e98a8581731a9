"""Head-major ("hnd") vs token-major ("nhd", the current) KV-cache layout on decode attention.

Llama-3-8B heads (32 query heads, 8 KV heads, head 128), bf16, block size 16 (the engine's
default), batch 64 at contexts 4096 and 1024. For each layout, first a check on fresh random
inputs: its kv_cache_write kernel fills NaN-poisoned caches (bit-equal to the reference writer's)
and its paged_attention kernel, output poisoned with NaN, is compared with the float64 reference;
then both layouts are timed with device events through tessera.pluggable_layers.measure (median
after warm-up, input sets cycled past the L2): each kernel with the config the registry binds it
to, and the head-major kernel also with the token-major kernel's tuned config.

    python benchmarks/scripts/kv_layout_h200.py kv_layout_h200.json
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from tessera.discovery import select_platform
from tessera.kernel_registry import get_registry, platform_facts
from tessera.pluggable_layers.kv_layout import cache_shape, from_token_major
from tessera.pluggable_layers.measure import error_figures, median_ms
from tessera.pluggable_layers.ops import OPS
from tessera.pluggable_layers.reference import reference
from tessera.pluggable_layers.registry import KernelQuery

HQ, HK, D, BLOCK = 32, 8, 128, 16
DTYPE_NAME = os.environ.get(
    "KV_LAYOUT_DTYPE", "bfloat16"
)  # float16 for a smoke run in the Triton interpreter
DTYPE = getattr(torch, DTYPE_NAME)
SHAPES = [(64, 4096), (64, 1024)]  # (sequences, context); KV_LAYOUT_SHAPES="2x64,3x17" for a smoke run
if os.environ.get("KV_LAYOUT_SHAPES"):
    SHAPES = [tuple(int(n) for n in s.split("x")) for s in os.environ["KV_LAYOUT_SHAPES"].split(",")]
PAIRS = {"nhd": ("triton_kv_cache_write", "triton_paged_attention"),
         "hnd": ("triton_kv_cache_write_hnd", "triton_paged_attention_hnd")}  # fmt: skip
COPIES = 3


def decode_inputs(seqs: int, ctx: int, g: torch.Generator, device) -> dict:
    """Token-major caches, shuffled block tables, one query token per sequence."""
    per = -(-ctx // BLOCK)
    blocks = seqs * per + 1
    kc, vc = (torch.randn(blocks, BLOCK, HK, D, generator=g, device=device).to(DTYPE) for _ in range(2))
    tables = torch.randperm(blocks, generator=g, device=device)[: seqs * per].view(seqs, per).to(torch.int32)
    return {"q": torch.randn(seqs, HQ, D, generator=g, device=device).to(DTYPE), "key_cache": kc, "value_cache": vc,
            "query_start_loc": torch.arange(seqs + 1, dtype=torch.int32, device=device),
            "seq_lens": torch.full((seqs,), ctx, dtype=torch.int32, device=device), "block_tables": tables,
            "scale": D**-0.5}  # fmt: skip


def in_layout(x: dict, layout: str) -> dict:
    return {**x, "key_cache": from_token_major(x["key_cache"], layout),
            "value_cache": from_token_major(x["value_cache"], layout)}  # fmt: skip


def bound(registry, facts, op: str, name: str, layout: str):
    kernel = registry.get(op, name)
    query = KernelQuery(op, facts, DTYPE_NAME, {"kv_layout": layout, "head_size": D})
    refusal, kernel = registry.bind_exact(kernel, query)
    if refusal:
        raise SystemExit(f"{name} cannot run here: {refusal}")
    return kernel


def check_writer(writer, layout: str, g, device) -> bool:
    """The writer's caches equal the reference writer's, bit for bit, every untouched slot still NaN."""
    t, blocks = 300, 40
    key, value = (torch.randn(t, HK, D, generator=g, device=device).to(DTYPE) for _ in range(2))
    slots = torch.randperm(blocks * BLOCK, generator=g, device=device)[:t]
    shape = cache_shape(layout, blocks, BLOCK, HK, D)
    got = [torch.full(shape, float("nan"), dtype=DTYPE, device=device) for _ in range(2)]
    want = [c.clone() for c in got]
    writer(key, value, *got, slots)
    reference("kv_cache_write")(key, value, *want, slots, kv_layout=layout)
    return all(torch.equal(a.view(torch.int16), b.view(torch.int16)) for a, b in zip(got, want, strict=True))


def check_attention(attend, layout: str, seqs: int, ctx: int, g, device) -> dict:
    x = in_layout(decode_inputs(seqs, ctx, g, device), layout)
    out = torch.full_like(x["q"], float("nan"))
    attend(**x, out=out)
    ref = reference("paged_attention")(**{k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v
                                          for k, v in x.items()}, kv_layout=layout)  # fmt: skip
    figures = error_figures(out.double(), ref)
    budget = OPS["paged_attention"].budget(DTYPE_NAME)
    ok = figures.problem is None and figures.normalized <= budget
    return {"ok": ok, "normalized": figures.normalized, "max_abs": figures.max_abs, "budget": budget,
            "problem": figures.problem}  # fmt: skip


def time_layout(attend, sets: list[dict], platform, config=None) -> float:
    outs = [torch.empty_like(s["q"]) for s in sets]
    if config is None:
        fns = [lambda s=s, o=o: attend(**s, out=o) for s, o in zip(sets, outs, strict=True)]
    else:
        fns = [
            lambda s=s, o=o: attend.kernel.fn(**s, out=o, config=config)
            for s, o in zip(sets, outs, strict=True)
        ]
    return median_ms(fns, platform, iters=50, warmup=10)


def run_shape(registry, facts, platform, device, seqs: int, ctx: int, g) -> dict:
    kernels = {lay: (bound(registry, facts, "kv_cache_write", w, lay), bound(registry, facts, "paged_attention", a, lay))
               for lay, (w, a) in PAIRS.items()}  # fmt: skip
    row: dict = {"seqs": seqs, "context": ctx, "kv_bytes": 2 * seqs * ctx * HK * D * 2, "layouts": {}}
    base = [decode_inputs(seqs, ctx, g, device) for _ in range(COPIES)]
    nhd_attend = kernels["nhd"][1]
    tuned = (
        nhd_attend.lookup.get(nhd_attend.kernel.shape_key.of_call(**base[0])) if nhd_attend.lookup else None
    )
    row["nhd_config"] = tuned
    for layout, (writer, attend) in kernels.items():
        check = check_attention(attend, layout, seqs, ctx, g, device)
        check["writer_bit_equal"] = check_writer(writer, layout, g, device)
        sets = [in_layout(x, layout) for x in base]
        entry = {
            "check": check,
            "ms": time_layout(attend, sets, platform),
            "config": attend.lookup.get(attend.kernel.shape_key.of_call(**sets[0]))
            if attend.lookup
            else None,
        }
        if layout != "nhd" and tuned is not None:
            entry["ms_with_nhd_config"] = time_layout(attend, sets, platform, tuned)
        entry["GBps"] = row["kv_bytes"] / (entry["ms"] * 1e-3) / 1e9
        row["layouts"][layout] = entry
        del sets
    del base
    platform.empty_cache()
    return row


def table(result: dict) -> str:
    lines = [f"{result['device']}: decode attention, Llama-3-8B heads (32/8, head 128), {result['dtype']}, block {BLOCK}",
             " seqs x ctx  layout  check  norm.err    ms (bound cfg)  GB/s   ms (nhd's cfg)  vs nhd"]  # fmt: skip
    for row in result["rows"]:
        nhd_ms = row["layouts"]["nhd"]["ms"]
        for layout, e in row["layouts"].items():
            same = e.get("ms_with_nhd_config")
            ok = "ok" if e["check"]["ok"] and e["check"]["writer_bit_equal"] else "FAIL"
            lines.append(f"{row['seqs']:5d} x {row['context']:<5d} {layout:>5s}  {ok:>5s}  {e['check']['normalized']:.2e}"
                         f"  {e['ms'] * 1e3:10.1f} us  {e['GBps']:6.0f}  {'' if same is None else f'{same * 1e3:9.1f} us':>14s}"
                         f"  {nhd_ms / e['ms']:5.2f}x")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    out_path = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    platform = select_platform()
    device = platform.torch_device(0)
    facts = platform_facts(platform)
    registry = get_registry()
    g = torch.Generator(device=device).manual_seed(0)
    rows = [run_shape(registry, facts, platform, device, seqs, ctx, g) for seqs, ctx in SHAPES]
    result = {"device": platform.devices()[0].name, "torch": torch.__version__, "block_size": BLOCK,
              "heads": [HQ, HK, D], "dtype": DTYPE_NAME, "rows": rows}  # fmt: skip
    if out_path:
        out_path.write_text(json.dumps(result, indent=2, default=str))
    print(table(result))
    return (
        0
        if all(
            e["check"]["ok"] and e["check"]["writer_bit_equal"] for r in rows for e in r["layouts"].values()
        )
        else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
