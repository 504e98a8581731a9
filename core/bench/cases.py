"""The benchmark shapes: Llama-3-8B attention (32 query / 8 KV heads, head 128, block 16), the
8192^3 and decode-sized fp8 GEMMs, and the elementwise ops at Llama-3-8B hidden sizes."""

from __future__ import annotations

import torch

from tessera.bench.kernel_bench import BenchCase
from tessera.bench.moe_mamba_cases import moe_mamba_cases
from tessera.pluggable_layers.measure import normalized_error

HQ, HK, D, BLOCK = 32, 8, 128, 16


def sdpa_backends():
    """Every SDPA backend torch offers, tried one by one (no backend is named here)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    members = SDPBackend.__members__.items()
    return {
        n.lower(): (lambda b=b: sdpa_kernel([b]))
        for n, b in members
        if n not in ("ERROR", "OVERRIDEABLE", "MATH")
    }


def paged_inputs(seqs: int, context: int, q_len: int, device, dtype, g) -> dict:
    blocks_per = -(-context // BLOCK)
    num_blocks = seqs * blocks_per
    kc = torch.randn(num_blocks, BLOCK, HK, D, device=device, dtype=dtype, generator=g)
    vc = torch.randn(num_blocks, BLOCK, HK, D, device=device, dtype=dtype, generator=g)
    tables = torch.randperm(num_blocks, device=device, generator=g).view(seqs, blocks_per).to(torch.int32)
    return {"q": torch.randn(seqs * q_len, HQ, D, device=device, dtype=dtype, generator=g), "key_cache": kc, "value_cache": vc,
            "query_start_loc": torch.arange(seqs + 1, device=device, dtype=torch.int32) * q_len,
            "seq_lens": torch.full((seqs,), context, device=device, dtype=torch.int32), "block_tables": tables,
            "scale": D**-0.5}  # fmt: skip


def dense_kv(kw: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The paged caches gathered into dense [B, Hk, L, D] tensors (what a non-paged engine would hold)."""
    seqs, blocks_per = kw["block_tables"].shape
    context = int(kw["seq_lens"][0])
    k = (
        kw["key_cache"][kw["block_tables"].long()]
        .view(seqs, blocks_per * BLOCK, HK, D)[:, :context]
        .transpose(1, 2)
    )
    v = (
        kw["value_cache"][kw["block_tables"].long()]
        .view(seqs, blocks_per * BLOCK, HK, D)[:, :context]
        .transpose(1, 2)
    )
    return k.contiguous(), v.contiguous()


def sdpa_peers(q_len: int, causal: bool):
    def make(backend_ctx):
        def peer(kw):
            k, v = dense_kv(kw)
            seqs = k.shape[0]
            q = kw["q"].view(seqs, q_len, HQ, D).transpose(1, 2).contiguous()

            def run():
                with backend_ctx():
                    return torch.nn.functional.scaled_dot_product_attention(
                        q, k, v, is_causal=causal, enable_gqa=True
                    )

            return run

        return peer

    return {f"sdpa_{name}": make(ctx) for name, ctx in sdpa_backends().items()}


def attention_check(q_len: int, causal: bool):
    def check(out, kw):
        k, v = dense_kv(kw)
        seqs = k.shape[0]
        q = kw["q"].view(seqs, q_len, HQ, D).transpose(1, 2)
        ref = torch.nn.functional.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), is_causal=causal, enable_gqa=True
        )
        return normalized_error(out.view(seqs, q_len, HQ, D).transpose(1, 2), ref)

    return check


def decode_case(seqs: int, context: int) -> BenchCase:
    def kv_bytes(kw):
        return (
            2 * kw["key_cache"].numel() * kw["key_cache"].element_size()
            + 2 * kw["q"].numel() * kw["q"].element_size()
        )

    return BenchCase("paged_attention", f"decode b{seqs} ctx{context}", lambda d, t, g: paged_inputs(seqs, context, 1, d, t, g),
                     kv_bytes, peers=sdpa_peers(1, False), check=attention_check(1, False),
                     facts={"head_size": D, "num_heads": HQ, "num_kv_heads": HK, "sliding_window": None})  # fmt: skip


def prefill_case(seqs: int, length: int) -> BenchCase:
    flops = lambda kw: 4.0 * seqs * HQ * D * length * (length + 1) / 2  # noqa: E731
    return BenchCase("paged_attention", f"prefill {seqs}x{length} causal", lambda d, t, g: paged_inputs(seqs, length, length, d, t, g),
                     lambda kw: 0.0, flops, peers=sdpa_peers(length, True), check=attention_check(length, True),
                     facts={"head_size": D, "num_heads": HQ, "num_kv_heads": HK, "sliding_window": None})  # fmt: skip


def fp8_case(m: int, k: int, n: int) -> BenchCase:
    def make(device, dtype, g):
        w = torch.randn(n, k, device=device, dtype=torch.float32, generator=g) * k**-0.5
        scale = w.abs().amax(-1).clamp(min=1e-12) / 448.0
        wq = (w / scale[:, None]).to(torch.float8_e4m3fn)
        return {
            "x": torch.randn(m, k, device=device, dtype=dtype, generator=g),
            "weight": wq,
            "weight_scale": scale,
            "bias": None,
        }

    def peer_bf16(kw):
        w = (kw["weight"].float() * kw["weight_scale"][:, None]).to(kw["x"].dtype)
        return lambda: torch.mm(kw["x"], w.t())

    def peer_scaled_mm(kw):
        xq = kw["x"].to(torch.float8_e4m3fn)
        one = torch.ones(1, device=xq.device)
        return lambda: torch._scaled_mm(
            xq, kw["weight"].t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16
        )

    def check(out, kw):
        w = kw["weight"].float() * kw["weight_scale"][:, None]
        return normalized_error(out, kw["x"].float() @ w.t())

    return BenchCase("linear_fp8", f"{m}x{k}x{n}", make, lambda kw: m * k * 2 + n * k + m * n * 2, lambda kw: 2.0 * m * k * n,
                     peers={"torch_mm_bf16": peer_bf16, "scaled_mm_tensorwise": peer_scaled_mm}, check=check,
                     facts={"fp8_dtype": "float8_e4m3fn"})  # fmt: skip


def linear_case(m: int, k: int, n: int) -> BenchCase:
    def make(device, dtype, g):
        return {"x": torch.randn(m, k, device=device, dtype=dtype, generator=g),
                "weight": torch.randn(n, k, device=device, dtype=dtype, generator=g) * k**-0.5, "bias": None}  # fmt: skip

    return BenchCase("linear", f"{m}x{k}x{n}", make, lambda kw: (m * k + n * k + m * n) * 2, lambda kw: 2.0 * m * k * n,
                     check=lambda out, kw: normalized_error(out, kw["x"].float() @ kw["weight"].float().t()))  # fmt: skip


def rms_norm_case(tokens: int, hidden: int) -> BenchCase:
    def make(device, dtype, g):
        return {"x": torch.randn(tokens, hidden, device=device, dtype=dtype, generator=g),
                "weight": torch.randn(hidden, device=device, dtype=dtype, generator=g), "eps": 1e-5}  # fmt: skip

    def check(out, kw):
        return normalized_error(
            out, torch.nn.functional.rms_norm(kw["x"].float(), (hidden,), kw["weight"].float(), 1e-5)
        )

    return BenchCase("rms_norm", f"{tokens}x{hidden}", make, lambda kw: 2 * tokens * hidden * 2, check=check, copies=4,
                     peers={"torch_rms_norm": lambda kw: lambda: torch.nn.functional.rms_norm(kw["x"], (hidden,), kw["weight"], 1e-5)})  # fmt: skip


def silu_case(tokens: int, inter: int) -> BenchCase:
    def make(device, dtype, g):
        return {"x": torch.randn(tokens, 2 * inter, device=device, dtype=dtype, generator=g)}

    def torch_silu(kw):
        return lambda: torch.nn.functional.silu(kw["x"][:, :inter]) * kw["x"][:, inter:]

    return BenchCase("silu_and_mul", f"{tokens}x{inter}", make, lambda kw: 3 * tokens * inter * 2, copies=4,
                     check=lambda out, kw: normalized_error(out, torch_silu(kw)().float()), peers={"torch": torch_silu})  # fmt: skip


def all_cases() -> list[BenchCase]:
    return [
        decode_case(64, 4096),
        decode_case(64, 1024),
        decode_case(1, 4096),
        decode_case(8, 8192),
        prefill_case(8, 2048),
        fp8_case(8192, 8192, 8192),
        fp8_case(16, 8192, 8192),
        fp8_case(16, 4096, 14336),
        linear_case(16, 4096, 14336),
        linear_case(8192, 8192, 8192),
        rms_norm_case(8192, 4096),
        silu_case(8192, 14336),
        *moe_mamba_cases(),
    ]
