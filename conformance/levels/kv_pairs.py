"""Every kv_cache_write / paged_attention pair of one KV layout, end to end (plugin API 1.2).

For each layout and each writer and reader registered for the platform that declare it, the
writer stores a batch's keys and values into NaN-poisoned caches of that layout (slots from
shuffled block tables), then the reader attends over them; the output is compared with the
float64 reference attention over the same keys and values, stored by the reference writer in the
default layout. A pair that disagrees on where a token's row lives fails here even when each
kernel passes its own op cases.
"""

from __future__ import annotations

import time

import torch

from tessera.conformance.cases.attention import paged_case
from tessera.conformance.ops import judge
from tessera.conformance.report import CaseResult
from tessera.pluggable_layers.kv_layout import DEFAULT_KV_LAYOUT, FACT, KV_LAYOUTS, cache_shape, layouts_of
from tessera.pluggable_layers.ops import OPS
from tessera.pluggable_layers.reference import reference
from tessera.pluggable_layers.registry import KernelQuery

# decode and prefill rows together, GQA 4, block boundaries crossed
SEQ_LENS, Q_LENS, HQ, HK, D, BLOCK = [1, 17, 40, 33], [1, 1, 23, 1], 8, 2, 64, 16


def _inputs(g: torch.Generator) -> dict:
    """Keys and values of every context token, and the slot each one is stored in."""
    values = paged_case("pair", SEQ_LENS, Q_LENS, HQ, HK, D, BLOCK).build(g).values
    tables, total = values["block_tables"], sum(SEQ_LENS)
    slots = torch.cat([tables[b, torch.arange(n) // BLOCK].long() * BLOCK + torch.arange(n) % BLOCK
                       for b, n in enumerate(SEQ_LENS)])  # fmt: skip
    key, value = (torch.randn(total, HK, D, generator=g, dtype=torch.float64) for _ in range(2))
    return {**values, "key": key, "value": value, "slot_mapping": slots}


def _attend(writer, reader, x: dict, dtype: torch.dtype, device, layout: str) -> torch.Tensor:
    shape = cache_shape(layout, x["key_cache"].shape[0], BLOCK, HK, D)
    caches = [torch.full(shape, float("nan"), dtype=dtype, device=device) for _ in range(2)]
    on = {k: x[k].to(device) for k in ("slot_mapping", "query_start_loc", "seq_lens", "block_tables")}
    writer(x["key"].to(device, dtype), x["value"].to(device, dtype), *caches, on["slot_mapping"])
    q = x["q"].to(device, dtype)
    return reader(q, *caches, on["query_start_loc"], on["seq_lens"], on["block_tables"], D**-0.5, None,
                  torch.full_like(q, float("nan")))  # fmt: skip


def _expected(x: dict) -> torch.Tensor:
    caches = [torch.zeros(cache_shape(DEFAULT_KV_LAYOUT, x["key_cache"].shape[0], BLOCK, HK, D), dtype=torch.float64)
              for _ in range(2)]  # fmt: skip
    reference("kv_cache_write")(x["key"], x["value"], *caches, x["slot_mapping"])
    return reference("paged_attention")(x["q"], *caches, x["query_start_loc"], x["seq_lens"], x["block_tables"],
                                        D**-0.5)  # fmt: skip


def _bound(registry, facts, kernel, dtype_name: str, layout: str):
    query = KernelQuery(kernel.op, facts, dtype_name, {FACT: layout, "head_size": D})
    return registry.bind_exact(kernel, query)


def pairs(registry, facts, layout: str, names=None) -> list[tuple]:
    """(writer, reader) of ``layout`` registered for the platform (``names``: globs one of them matches)."""
    import fnmatch

    mine = lambda op: [k for k in registry.kernels(op) if (k.platforms is None or facts.name in k.platforms)  # noqa: E731
                       and layout in layouts_of(k)]  # fmt: skip
    out = [(w, r) for w in mine("kv_cache_write") for r in mine("paged_attention")]
    if names:
        out = [(w, r) for w, r in out if any(fnmatch.fnmatch(k.name, n) for k in (w, r) for n in names)]
    return out


def check(registry, facts, dtypes, device, seed: int, names=None, platform=None) -> list[CaseResult]:
    results = []
    for layout in KV_LAYOUTS:
        for writer, reader in pairs(registry, facts, layout, names):
            for dtype_name in dtypes:
                results.append(
                    _one(registry, facts, writer, reader, dtype_name, layout, device, seed, platform)
                )
    return results


def _one(registry, facts, writer, reader, dtype_name, layout, device, seed, platform) -> CaseResult:
    spec = OPS["paged_attention"]
    base = dict(level="pair", case_id=f"kv_pair/{writer.name}+{reader.name}/{dtype_name}/{layout}", op="paged_attention",
                kernel=f"{writer.name}+{reader.name}", provider=reader.provider, dtype=dtype_name, case=layout,
                budget=spec.budget(dtype_name))  # fmt: skip
    start = time.perf_counter()
    (why_w, w), (why_r, r) = (_bound(registry, facts, k, dtype_name, layout) for k in (writer, reader))
    if why_w or why_r:
        return CaseResult(status="skip", message=f"kernel refuses: {why_w or why_r}", **base)
    x = _inputs(torch.Generator().manual_seed(seed))
    try:
        got = _attend(w, r, x, getattr(torch, dtype_name), device, layout)
        if platform is not None:
            platform.synchronize()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a kernel that raises (or exits) is a result, not a crash
        return CaseResult(
            status="error", message=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}", **base
        )
    return judge(spec, dtype_name, [("out", got, _expected(x))], [], base, time.perf_counter() - start)
