"""Benchmark shapes for the MoE and Mamba2 ops: Qwen3-30B-A3B experts (128 experts, top-8, hidden
2048, expert intermediate 768) and a Bamba-9B-sized Mamba2 layer (128 heads of 64, state 128, 1 group,
conv width 4). Peers are torch pipelines on the same problem: for the experts the permute /
``torch._grouped_mm`` / SiLU-and-mul / ``torch._grouped_mm`` / weighted un-permute pipeline, for the
Mamba ops the torch formulation of the reference (the only peer a plain torch install has)."""

from __future__ import annotations

import torch

from tessera.bench.kernel_bench import BenchCase
from tessera.pluggable_layers.measure import normalized_error

E, TOP_K, HIDDEN, INTER = 128, 8, 2048, 768
HEADS, HEAD_DIM, STATE, GROUPS, WIDTH = 128, 64, 128, 1, 4
CONV_DIM = HEADS * HEAD_DIM + 2 * GROUPS * STATE


def moe_inputs(tokens: int, weight_dtype: str, device, dtype, g) -> dict:
    from tessera.pluggable_layers.reference.linear_fp8 import quantize_per_channel

    w13 = torch.randn(E, 2 * INTER, HIDDEN, device=device, dtype=dtype, generator=g) * HIDDEN**-0.5
    w2 = torch.randn(E, HIDDEN, INTER, device=device, dtype=dtype, generator=g) * INTER**-0.5
    scores = torch.rand(tokens, E, device=device, generator=g)
    kw = {"x": torch.randn(tokens, HIDDEN, device=device, dtype=dtype, generator=g), "w13": w13, "w2": w2,
          "topk_weights": torch.softmax(torch.randn(tokens, TOP_K, device=device, generator=g), -1),
          "topk_ids": scores.topk(TOP_K, dim=-1).indices.to(torch.int32)}  # fmt: skip
    if weight_dtype != "bf16":
        fp8 = getattr(torch, weight_dtype)
        q13, s13 = quantize_per_channel(w13.float().flatten(0, 1), fp8)
        q2, s2 = quantize_per_channel(w2.float().flatten(0, 1), fp8)
        kw.update(
            w13=q13.view(w13.shape), w2=q2.view(w2.shape), w13_scale=s13.view(E, -1), w2_scale=s2.view(E, -1)
        )
    return kw


def dequantized(kw: dict, name: str) -> torch.Tensor:
    w = kw[name]
    scale = kw.get(f"{name}_scale")
    return w if scale is None else (w.float() * scale[:, :, None]).to(kw["x"].dtype)


def touched_weight_bytes(kw: dict) -> float:
    used = torch.unique(kw["topk_ids"]).numel()
    per_expert = (
        kw["w13"][0].numel() * kw["w13"].element_size() + kw["w2"][0].numel() * kw["w2"].element_size()
    )
    return used * per_expert + 2 * kw["x"].numel() * kw["x"].element_size()


def grouped_mm_pipeline(kw: dict):
    """The torch pipeline: sort pairs by expert, gather, grouped GEMM, SiLU-and-mul, grouped GEMM, weighted scatter-add."""
    x, ids, weights = kw["x"], kw["topk_ids"], kw["topk_weights"]
    w13_t, w2_t = dequantized(kw, "w13").transpose(1, 2), dequantized(kw, "w2").transpose(1, 2)
    tokens = x.shape[0]

    def run():
        flat = ids.reshape(-1).long()
        order = torch.argsort(flat, stable=True)
        counts = torch.zeros(E, dtype=torch.int32, device=x.device).scatter_add_(
            0, flat, torch.ones_like(flat, dtype=torch.int32)
        )
        offs = torch.cumsum(counts, 0, dtype=torch.int32)
        rows = order // TOP_K
        h = torch._grouped_mm(x[rows], w13_t, offs=offs)
        a = torch.nn.functional.silu(h[:, :INTER]) * h[:, INTER:]
        y = torch._grouped_mm(a, w2_t, offs=offs) * weights.reshape(-1)[order, None].to(x.dtype)
        return torch.zeros(tokens, HIDDEN, device=x.device, dtype=x.dtype).index_add_(0, rows, y)

    return run


def moe_check(out, kw) -> float:
    from tessera.pluggable_layers.reference import reference

    ref = reference("moe_experts")(kw["x"].float(), kw["w13"], kw["w2"], kw["topk_weights"], kw["topk_ids"],
                                   kw.get("w13_scale"), kw.get("w2_scale"))  # fmt: skip
    return normalized_error(out, ref)


def moe_case(tokens: int, weight_dtype: str = "bf16") -> BenchCase:
    flops = 2.0 * tokens * TOP_K * 3 * HIDDEN * INTER
    return BenchCase("moe_experts", f"{tokens} tokens {weight_dtype} E{E} k{TOP_K} {HIDDEN}/{INTER}",
                     lambda d, t, g: moe_inputs(tokens, weight_dtype, d, t, g), touched_weight_bytes, lambda kw: flops,
                     peers={"torch_grouped_mm": grouped_mm_pipeline}, check=moe_check,
                     facts={"num_experts": E, "top_k": TOP_K, "weight_dtype": "bfloat16" if weight_dtype == "bf16" else weight_dtype},
                     items=("tokens", lambda kw: tokens))  # fmt: skip


def route_case(tokens: int) -> BenchCase:
    def make(device, dtype, g):
        # distinct values per row (a permutation): with ties in bf16 any order of the tied experts is right
        ranks = torch.rand(tokens, E, device=device, generator=g).argsort(-1)
        logits = (ranks.to(torch.float32) * (16.0 / E) - 8.0).to(dtype)
        return {"router_logits": logits, "top_k": TOP_K, "renormalize": True, "scoring": "softmax"}

    def torch_route(kw):
        def run():
            w, i = torch.topk(torch.softmax(kw["router_logits"].float(), -1), TOP_K, -1)
            return w / w.sum(-1, keepdim=True), i.to(torch.int32)

        return run

    def check(out, kw):
        w, i = torch_route(kw)()
        return normalized_error(out[0], w) + float((out[1] != i).float().mean())

    return BenchCase("moe_route", f"{tokens} tokens E{E} k{TOP_K}", make, lambda kw: tokens * (E * 2 + TOP_K * 8),
                     peers={"torch": torch_route}, check=check, facts={"num_experts": E, "top_k": TOP_K})  # fmt: skip


def mamba_facts() -> dict:
    return {"heads": HEADS, "head_dim": HEAD_DIM, "state_size": STATE, "conv_kernel": WIDTH}


def reference_peer(op: str):
    """The reference's torch formulation on copies of the state (so the kernel's own inputs stay untouched)."""

    def make(kw):
        from tessera.pluggable_layers.reference import reference

        own = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
        return lambda: reference(op)(**own)

    return make


def state_snapshot(*names: str):
    return lambda kw: {n: kw[n].clone() for n in names}


def reference_check(op: str, state: str):
    """The kernel's output and new state against the fp32 reference run from the pre-call state."""

    def check(out, kw, kept) -> float:
        from tessera.pluggable_layers.reference import reference

        ref_kw = {
            k: (v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
            for k, v in kw.items()
        }
        ref_kw[state] = kept[state].float()
        ref = reference(op)(**ref_kw)
        return max(normalized_error(out, ref), normalized_error(kw[state], ref_kw[state]))

    return check


def ssd_inputs(seqs: int, tokens: int, device, dtype, g) -> dict:
    def rnd(*shape, dt=dtype):
        return torch.randn(*shape, device=device, dtype=dt, generator=g)

    return {"x": rnd(tokens, HEADS, HEAD_DIM), "dt": rnd(tokens, HEADS) - 2.0,
            "A": -torch.rand(HEADS, device=device, generator=g) * 8 - 0.5, "B": rnd(tokens, GROUPS, STATE),
            "C": rnd(tokens, GROUPS, STATE), "D": torch.ones(HEADS, device=device), "dt_bias": torch.zeros(HEADS, device=device),
            "dt_softplus": True,
            "query_start_loc": (torch.arange(seqs + 1, device=device) * (tokens // seqs)).to(torch.int32),
            "ssm_states": rnd(seqs, HEADS, HEAD_DIM, STATE, dt=torch.float32) * 0.1,
            "state_indices": torch.arange(seqs, device=device, dtype=torch.int32),
            "has_initial_state": torch.ones(seqs, device=device, dtype=torch.bool), "chunk_size": 256}  # fmt: skip


def ssd_case(seqs: int, tokens: int) -> BenchCase:
    # bytes: x in and y out, dt, B and C once; FLOPs: the chunked form at 256-token chunks
    def nbytes(kw):
        return (2 * kw["x"].numel() + kw["dt"].numel() + 2 * kw["B"].numel()) * kw["x"].element_size()

    flops = 2.0 * tokens * HEADS * (256 * STATE + 256 * HEAD_DIM + 2 * HEAD_DIM * STATE)
    return BenchCase("ssd_chunk_scan", f"{seqs}x{tokens // seqs} tokens H{HEADS} P{HEAD_DIM} N{STATE}",
                     lambda d, t, g: ssd_inputs(seqs, tokens, d, t, g), nbytes, lambda kw: flops,
                     peers={"torch_chunked_reference": reference_peer("ssd_chunk_scan")},
                     check=reference_check("ssd_chunk_scan", "ssm_states"), before=state_snapshot("ssm_states"),
                     facts={**mamba_facts(), "chunk_size": 256}, items=("tokens", lambda kw: tokens))  # fmt: skip


def state_update_case(batch: int) -> BenchCase:
    def make(device, dtype, g):
        kw = ssd_inputs(batch, batch, device, dtype, g)
        kw.pop("query_start_loc"), kw.pop("has_initial_state"), kw.pop("chunk_size")
        kw["z"] = torch.randn(batch, HEADS, HEAD_DIM, device=device, dtype=dtype, generator=g)
        return kw

    return BenchCase("selective_state_update", f"batch {batch} H{HEADS} P{HEAD_DIM} N{STATE} fp32 state", make,
                     lambda kw: 2 * kw["ssm_states"].numel() * 4, peers={"torch_reference": reference_peer("selective_state_update")},
                     check=reference_check("selective_state_update", "ssm_states"), before=state_snapshot("ssm_states"),
                     facts=mamba_facts())  # fmt: skip


def conv_case(tokens: int) -> BenchCase:
    def make(device, dtype, g):
        return {"x": torch.randn(tokens, CONV_DIM, device=device, dtype=dtype, generator=g),
                "weight": torch.randn(CONV_DIM, WIDTH, device=device, dtype=dtype, generator=g) * 0.5,
                "bias": torch.randn(CONV_DIM, device=device, dtype=dtype, generator=g),
                "query_start_loc": torch.tensor([0, tokens], device=device, dtype=torch.int32),
                "conv_states": torch.randn(1, CONV_DIM, WIDTH - 1, device=device, dtype=dtype, generator=g),
                "state_indices": torch.zeros(1, device=device, dtype=torch.int32),
                "has_initial_state": torch.ones(1, device=device, dtype=torch.bool), "activation": "silu"}  # fmt: skip

    return BenchCase("causal_conv1d", f"{tokens} tokens C{CONV_DIM} W{WIDTH}", make, lambda kw: 2 * kw["x"].numel() * 2,
                     peers={"torch_reference": reference_peer("causal_conv1d")},
                     check=reference_check("causal_conv1d", "conv_states"), before=state_snapshot("conv_states"),
                     facts=mamba_facts(), items=("tokens", lambda kw: tokens))  # fmt: skip


def gated_norm_case(tokens: int) -> BenchCase:
    inter = HEADS * HEAD_DIM

    def make(device, dtype, g):
        return {"x": torch.randn(tokens, inter, device=device, dtype=dtype, generator=g),
                "z": torch.randn(tokens, inter, device=device, dtype=dtype, generator=g),
                "weight": torch.randn(inter, device=device, dtype=dtype, generator=g), "eps": 1e-6, "group_size": inter // GROUPS}  # fmt: skip

    def check(out, kw):
        from tessera.pluggable_layers.reference import reference

        return normalized_error(
            out,
            reference("gated_rms_norm")(kw["x"].float(), kw["z"].float(), kw["weight"].float(), 1e-6, inter),
        )

    return BenchCase("gated_rms_norm", f"{tokens}x{inter} 1 group", make, lambda kw: 3 * kw["x"].numel() * 2, check=check,
                     peers={"torch_reference": reference_peer("gated_rms_norm")})  # fmt: skip


def moe_mamba_cases() -> list[BenchCase]:
    return [
        route_case(8192),
        moe_case(64),
        moe_case(64, "float8_e4m3fn"),
        moe_case(8192),
        moe_case(1),
        ssd_case(1, 16384),
        ssd_case(8, 16384),
        state_update_case(64),
        conv_case(16384),
        gated_norm_case(16384),
    ]
