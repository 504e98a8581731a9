"""Level (c): Linear, MoE, Mamba2 mixer and Attention modules with the platform's kernels against
the same modules built on reference kernels, same weights, same inputs."""

from __future__ import annotations

import torch

from tessera.conformance.levels import layer_graphs
from tessera.conformance.report import CaseResult
from tessera.pluggable_layers.attention import Attention
from tessera.pluggable_layers.batch import AttentionMetadata, MambaMetadata
from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.kv_layout import from_token_major
from tessera.pluggable_layers.linear import Linear
from tessera.pluggable_layers.mamba import Mamba2Mixer, Mamba2Shape
from tessera.pluggable_layers.measure import error_figures
from tessera.pluggable_layers.moe import FusedMoE
from tessera.pluggable_layers.ops import OPS, TOLERANCES

ALL_REFERENCE = {op: "reference" for op in OPS}


def build(kind: str, ctx: KernelContext):
    if kind == "linear":
        return Linear(256, [192, 64], True, ctx, "linear", shard_names=("a", "b"))
    if kind == "moe":
        return FusedMoE(16, 4, 128, 64, ctx, "moe")
    if kind == "mamba2":
        shape = Mamba2Shape(
            hidden_size=128,
            num_heads=8,
            head_dim=16,
            n_groups=2,
            state_size=16,
            conv_kernel=4,
            chunk_size=16,
            eps=1e-5,
        )
        return Mamba2Mixer(shape, ctx, "mamba2")
    return Attention(8, 2, 64, 0.125, ctx, "attention")


def run(kind: str, module, device, g: torch.Generator, dtype: torch.dtype):
    if kind == "linear":
        return module(torch.randn(37, 256, generator=g).to(device, dtype))
    if kind == "moe":
        return module(
            torch.randn(29, 128, generator=g).to(device, dtype), torch.randn(29, 16, generator=g).to(device)
        )
    if kind == "mamba2":
        s = module.shape
        module.state = (
            torch.zeros(4, s.conv_dim, 3, dtype=dtype, device=device),
            torch.zeros(4, 8, 16, 16, device=device),
        )
        lens = [1, 1, 9, 20]
        qsl = torch.tensor([0, 1, 2, 11, 31], dtype=torch.int32, device=device)
        warm = MambaMetadata(qsl, torch.tensor([0, 1, 2, 3], dtype=torch.int32, device=device),
                             torch.zeros(4, dtype=torch.bool, device=device), 0)  # fmt: skip
        x = torch.randn(sum(lens), 128, generator=g).to(device, dtype)
        first = module(x, warm)
        step = MambaMetadata(torch.arange(5, dtype=torch.int32, device=device), torch.tensor([0, 1, 2, 3], dtype=torch.int32, device=device),
                             torch.ones(4, dtype=torch.bool, device=device), 4)  # fmt: skip
        return torch.cat([first, module(torch.randn(4, 128, generator=g).to(device, dtype), step)])
    # drawn token-major, then stored in the layer's own layout, so layers of either layout see one cache
    module.kv_cache = tuple(from_token_major(torch.randn(8, 16, 2, 64, generator=g), module.kv_layout).to(device, dtype)
                            for _ in range(2))  # fmt: skip
    tables = torch.tensor([[3, 1, 0], [5, 2, 7]], dtype=torch.int32, device=device)
    meta = AttentionMetadata(torch.tensor([3 * 16 + 4, 1 * 16 + 0, 5 * 16 + 2, 5 * 16 + 3, 5 * 16 + 4], device=device),
                             torch.tensor([0, 2, 5], dtype=torch.int32, device=device),
                             torch.tensor([34, 5], dtype=torch.int32, device=device), tables)  # fmt: skip
    q, kv = torch.randn(5, 512, generator=g), torch.randn(5, 128, generator=g)
    return module(q.to(device, dtype), kv.to(device, dtype), kv.flip(0).to(device, dtype), meta)


def _seeded_pair(kind, registry, facts, dtype, device, seed):
    """The layer on the platform's kernels and on reference kernels, with the same random weights."""
    native_ctx = KernelContext(registry, facts, dtype, device)
    ref_ctx = KernelContext(registry, facts, dtype, device, overrides=ALL_REFERENCE)
    native, ref = build(kind, native_ctx), build(kind, ref_ctx)
    g = torch.Generator().manual_seed(seed)
    for (name, p), q in zip(native.named_parameters(), ref.parameters(), strict=True):
        values = torch.randn(p.shape, generator=g) * (0.1 if p.dim() > 1 else 1.0)
        p.data.copy_(values.abs() if name.endswith("A_log") else values)
        q.data.copy_(p.data)
    return native, ref, native_ctx


def _outputs(kind, native, ref, platform, device, dtype, seed, graphs: bool):
    g = torch.Generator().manual_seed(seed + 1)
    if not graphs:
        return run(kind, native, device, g, dtype), run(
            kind, ref, device, torch.Generator().manual_seed(seed + 1), dtype
        )
    inputs = layer_graphs.decode_inputs(kind, native, device, g, dtype)
    expected = layer_graphs.eager(
        kind, ref, inputs, getattr(native, "kv_layout", "nhd")
    )  # before the native layer touches the state
    return layer_graphs.replayed(platform, kind, native, inputs), expected


def check(registry, facts, caps, device, seed: int, platform=None) -> list[CaseResult]:
    """Each layer on the platform's kernels against reference kernels; where the platform has
    graphs, also its decode step captured and replayed (``layer/<kind>/<dtype>/graphs``)."""
    results = []
    modes = (False, True) if caps.graphs and platform is not None else (False,)
    for dtype_name in [d for d in ("float32", "bfloat16", "float16") if d in caps.dtypes]:
        dtype = getattr(torch, dtype_name)
        for kind, graphs in ((k, m) for k in ("linear", "moe", "mamba2", "attention") for m in modes):
            case = kind + ("/graphs" if graphs else "")
            case_id = f"layer/{kind}/{dtype_name}" + ("/graphs" if graphs else "")
            try:
                native, ref, native_ctx = _seeded_pair(kind, registry, facts, dtype, device, seed)
                out, expected = _outputs(kind, native, ref, platform, device, dtype, seed, graphs)
                figures = error_figures(out.float().cpu(), expected.double().cpu())
                budget = TOLERANCES["matmul"][dtype_name]
                ok = figures.problem is None and figures.normalized <= budget
                kernels = ",".join(sorted({c.kernel for c in native_ctx.choices}))
                results.append(CaseResult(level="layer", case_id=case_id, op=kind, kernel=kernels, dtype=dtype_name, case=case,
                                          status="pass" if ok else "fail", max_abs=figures.max_abs, max_rel=figures.max_rel,
                                          normalized=figures.normalized, budget=budget, message=figures.problem or ""))  # fmt: skip
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a kernel that exits fails its case, not the run
                results.append(CaseResult(level="layer", case_id=case_id, op=kind, dtype=dtype_name, case=case, status="error",
                                          message=f"{type(exc).__name__}: {str(exc)[:300]}"))  # fmt: skip
    return results
