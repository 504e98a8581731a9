"""Triton moe_experts: the fused-experts MLP as two grouped GEMMs over expert-sorted token blocks.

Layout: x [T, H] and out [T, H] with unit last strides; w13 [E, 2I, H] (gate rows,
then up rows) and w2 [E, H, I], contiguous; topk_ids / topk_weights [T, k].
The (token, choice) pairs are numbered ``p = t * k + j``.

1. align (three small kernels, no host sync, so graphs can capture it): count the
   pairs of each expert with atomics (each pair learns its rank among its
   expert's pairs); round each count up to BLOCK_M and prefix-sum into block
   offsets, labelling every BLOCK_M-row block with its expert (-1 past the last);
   scatter each pair to its expert's offset plus its rank. Padding rows hold the
   sentinel T * k. Experts that receive no pair get no block.
2. gate_up: per (block, N tile) the gate and up tiles of one expert, x rows
   gathered by token (p // k), SiLU-and-mul in the epilogue -> act [T*k, I].
3. down: act rows times w2[e]^T, scaled by the pair's routing weight -> [T*k, H].
4. out[t] = the sum over its k pairs (float32 accumulation).

Each weight tile is read once per block of its expert, so at decode (few pairs
per expert) the weights the batch touches are read about once. fp8 weights are
upcast to x's dtype tile by tile and their per-channel scale applied in the
epilogue. Config: BLOCK_M (0 picks it from the pairs per expert), and for each
GEMM its N and K tiles, warps and stages.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.checks import check_contiguous, check_dtype, check_out
from tessera.pluggable_layers.reference.moe_experts import check_moe_args
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, next_pow2, supported_launch_options

FLOATS = (torch.float32, torch.float16, torch.bfloat16)
GEMMS = ("UP", "DOWN")

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={
        "BLOCK_M": [0, 16, 32, 64, 128],
        "GROUP_M": [1, 4, 8, 16],
        **{f"{p}_{g}": v for g in GEMMS for p, v in (("BLOCK_N", [32, 64, 128, 256]), ("BLOCK_K", [32, 64, 128, 256]),
                                                       ("WARPS", [2, 4, 8]), ("STAGES", [2, 3, 4, 5]))},
    },
    default={"BLOCK_M": 0, "GROUP_M": 8, "BLOCK_N_UP": 64, "BLOCK_K_UP": 64, "WARPS_UP": 4, "STAGES_UP": 3,
             "BLOCK_N_DOWN": 64, "BLOCK_K_DOWN": 64, "WARPS_DOWN": 4, "STAGES_DOWN": 3},
    narrow=lambda key: narrow_for(key),
)  # fmt: skip


def narrow_for(key) -> dict:
    """The candidates worth timing: small BLOCK_M and deep K tiles at decode, large tiles for prefill."""
    pairs_per_expert = key["tokens"] * key["top_k"] / key["experts"]
    if pairs_per_expert <= 16:
        gemm = {"BLOCK_N": [64, 128], "BLOCK_K": [128, 256], "WARPS": [4], "STAGES": [3, 4]}
        fixed = {"BLOCK_M": [16], "GROUP_M": [1]}
    elif pairs_per_expert <= 128:
        gemm = {"BLOCK_N": [64, 128], "BLOCK_K": [64], "WARPS": [4], "STAGES": [3, 4]}
        fixed = {"BLOCK_M": [32, 64], "GROUP_M": [8]}
    else:
        gemm = {"BLOCK_N": [128, 256], "BLOCK_K": [64], "WARPS": [4, 8], "STAGES": [3, 4]}
        fixed = {"BLOCK_M": [64, 128], "GROUP_M": [8]}
    return {**fixed, **{f"{p}_{g}": v for g in GEMMS for p, v in gemm.items()}}


SHAPE_KEY = ShapeKey(
    {"experts": "exact", "inter": "exact", "hidden": "exact", "top_k": "exact", "weight": "exact", "tokens": "pow2"},
    lambda x, w13, w2, topk_weights, topk_ids, *a, **k: {
        "experts": w13.shape[0], "inter": w13.shape[1] // 2, "hidden": x.shape[1], "top_k": topk_ids.shape[1],
        "weight": str(w13.dtype).removeprefix("torch."), "tokens": x.shape[0],
    },
)  # fmt: skip

ALIGN_BLOCK = 1024


@triton.jit
def _count_kernel(ids_ptr, counts_ptr, rank_ptr, num_pairs, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < num_pairs
    ids = tl.load(ids_ptr + offs, mask=mask, other=0)
    rank = tl.atomic_add(counts_ptr + ids, 1, mask=mask)
    tl.store(rank_ptr + offs, rank, mask=mask)


@triton.jit
def _offsets_kernel(counts_ptr, offsets_ptr, block_expert_ptr, E, num_blocks,
                    BLOCK_M: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_B: tl.constexpr):  # fmt: skip
    experts = tl.arange(0, BLOCK_E)
    counts = tl.load(counts_ptr + experts, mask=experts < E, other=0)
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    ends = tl.cumsum(padded, axis=0)
    tl.store(offsets_ptr + experts, ends - padded, mask=experts < E)
    ends = tl.where(experts < E, ends, 2147483647)
    for b0 in range(0, num_blocks, BLOCK_B):
        blocks = b0 + tl.arange(0, BLOCK_B)
        owner = tl.sum((ends[None, :] <= blocks[:, None] * BLOCK_M).to(tl.int32), axis=1)
        tl.store(block_expert_ptr + blocks, tl.where(owner < E, owner, -1), mask=blocks < num_blocks)


@triton.jit
def _scatter_kernel(ids_ptr, rank_ptr, offsets_ptr, sorted_ptr, num_pairs, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < num_pairs
    ids = tl.load(ids_ptr + offs, mask=mask, other=0)
    rank = tl.load(rank_ptr + offs, mask=mask, other=0)
    start = tl.load(offsets_ptr + ids, mask=mask, other=0)
    tl.store(sorted_ptr + start + rank, offs, mask=mask)


@triton.jit
def block_of(pid, N, num_blocks, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(expert block, N tile) of program ``pid``: GROUP_M blocks walk the N tiles together (L2 reuse)."""
    num_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * num_n
    first_m = (pid // per_group) * GROUP_M
    rows_in_group = tl.minimum(num_blocks - first_m, GROUP_M)
    return first_m + (pid % per_group) % rows_in_group, (pid % per_group) // rows_in_group


@triton.jit
def store_pairs(acc, acc_up, route_w_ptr, out_ptr, pairs, valid, offs_n, n_ok, stride_o,
                GATED: tl.constexpr, ROUTE_WEIGHT: tl.constexpr):  # fmt: skip
    """The epilogue: SiLU(gate) * up (GATED) or the routing weight (ROUTE_WEIGHT), stored per pair row."""
    if GATED:
        acc = acc / (1.0 + tl.exp(-acc)) * acc_up
    if ROUTE_WEIGHT:
        acc *= tl.load(route_w_ptr + pairs, mask=valid, other=0.0)[:, None]
    out_ptrs = out_ptr + pairs[:, None].to(tl.int64) * stride_o + offs_n[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=valid[:, None] & n_ok[None, :])


@triton.jit
def _expert_gemm_kernel(
    a_ptr, w_ptr, scale_ptr, route_w_ptr, out_ptr, sorted_ptr, block_expert_ptr,
    N, K, num_pairs, num_blocks, stride_a, stride_we, stride_wn, stride_se, stride_o,
    A_ROW_DIV: tl.constexpr, GATED: tl.constexpr, ROUTE_WEIGHT: tl.constexpr, HAS_SCALE: tl.constexpr,
    EVEN_K: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    """out[p, n] = epilogue(sum_k a[row(p), k] * w[e, n, k]) for the pairs p of one expert block."""
    pid_m, pid_n = block_of(tl.program_id(0), N, num_blocks, BLOCK_N, GROUP_M)
    expert = tl.load(block_expert_ptr + pid_m)
    if expert < 0:
        return
    pairs = tl.load(sorted_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
    valid = pairs < num_pairs
    a_rows = (pairs // A_ROW_DIV).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + a_rows[:, None] * stride_a + offs_k[None, :]
    w_ptrs = (
        w_ptr + expert.to(tl.int64) * stride_we + offs_n[None, :].to(tl.int64) * stride_wn + offs_k[:, None]
    )
    up_shift = N * stride_wn
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc_up = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        if EVEN_K:
            a = tl.load(a_ptrs, mask=valid[:, None], other=0.0)
            w = tl.load(w_ptrs, mask=n_ok[None, :], other=0.0)
        else:
            k_ok = offs_k + k0 < K
            a = tl.load(a_ptrs, mask=valid[:, None] & k_ok[None, :], other=0.0)
            w = tl.load(w_ptrs, mask=n_ok[None, :] & k_ok[:, None], other=0.0)
        if IEEE:
            acc = tl.dot(a, w.to(a.dtype), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, w.to(a.dtype), acc)
        if GATED:
            if EVEN_K:
                w_up = tl.load(w_ptrs + up_shift, mask=n_ok[None, :], other=0.0)
            else:
                w_up = tl.load(w_ptrs + up_shift, mask=n_ok[None, :] & k_ok[:, None], other=0.0)
            if IEEE:
                acc_up = tl.dot(a, w_up.to(a.dtype), acc_up, input_precision="ieee")
            else:
                acc_up = tl.dot(a, w_up.to(a.dtype), acc_up)
        a_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
    if HAS_SCALE:
        scale_row = scale_ptr + expert.to(tl.int64) * stride_se + offs_n
        acc *= tl.load(scale_row, mask=n_ok, other=0.0)[None, :]
        if GATED:
            acc_up *= tl.load(scale_row + N, mask=n_ok, other=0.0)[None, :]
    store_pairs(acc, acc_up, route_w_ptr, out_ptr, pairs, valid, offs_n, n_ok, stride_o, GATED, ROUTE_WEIGHT)


def auto_block_m(pairs: int, experts: int) -> int:
    """The smallest tile that fits the mean pairs per expert (16 at decode, up to 64)."""
    per_expert = pairs / max(experts, 1)
    return 16 if per_expert <= 16 else 32 if per_expert <= 48 else 64


def align(topk_ids: torch.Tensor, num_experts: int, block_m: int):
    """Sort the pairs by expert into block_m-row blocks: (sorted pair ids, block experts, block count)."""
    num_pairs = topk_ids.numel()
    num_blocks = triton.cdiv(num_pairs + num_experts * (block_m - 1), block_m)
    device = topk_ids.device
    ids = topk_ids.reshape(-1)
    counts = torch.zeros(num_experts, dtype=torch.int32, device=device)
    rank = torch.empty(num_pairs, dtype=torch.int32, device=device)
    offsets = torch.empty(num_experts, dtype=torch.int32, device=device)
    block_expert = torch.empty(num_blocks, dtype=torch.int32, device=device)
    sorted_pairs = torch.full((num_blocks * block_m,), num_pairs, dtype=torch.int32, device=device)
    grid = (triton.cdiv(num_pairs, ALIGN_BLOCK),)
    _count_kernel[grid](ids, counts, rank, num_pairs, BLOCK=ALIGN_BLOCK)
    _offsets_kernel[(1,)](counts, offsets, block_expert, num_experts, num_blocks,
                          BLOCK_M=block_m, BLOCK_E=next_pow2(num_experts), BLOCK_B=64)  # fmt: skip
    _scatter_kernel[grid](ids, rank, offsets, sorted_pairs, num_pairs, BLOCK=ALIGN_BLOCK)
    return sorted_pairs, block_expert, num_blocks


def _gemm(a, w, scale, route_w, out, sorted_pairs, block_expert, num_blocks, n, k, row_div, gated, config, g):
    block_n, block_k = config[f"BLOCK_N_{g}"], config[f"BLOCK_K_{g}"]
    extra = {
        key: config[key] for key in BACKEND_OPTIONS if key in config and key in supported_launch_options()
    }
    grid = (num_blocks * triton.cdiv(n, block_n),)
    _expert_gemm_kernel[grid](
        a, w, scale if scale is not None else w, route_w, out, sorted_pairs, block_expert,
        n, k, route_w.numel(), num_blocks, a.stride(0), w.stride(0), w.stride(1),
        scale.stride(0) if scale is not None else 0, out.stride(0),
        A_ROW_DIV=row_div, GATED=gated, ROUTE_WEIGHT=not gated, HAS_SCALE=scale is not None,
        EVEN_K=k % block_k == 0, IEEE=a.dtype == torch.float32, BLOCK_M=config["BLOCK_M"], BLOCK_N=block_n,
        BLOCK_K=block_k, GROUP_M=config["GROUP_M"], num_warps=config[f"WARPS_{g}"],
        num_stages=config[f"STAGES_{g}"], **extra,
    )  # fmt: skip


def moe_experts(x, w13, w2, topk_weights, topk_ids, w13_scale=None, w2_scale=None, out=None, config=None):
    op = "moe_experts"
    check_moe_args(op, x, w13, w2, topk_weights, topk_ids, w13_scale, w2_scale)
    check_dtype(op, "x", x, FLOATS)
    for name, t in (
        ("x", x),
        ("w13", w13),
        ("w2", w2),
        ("topk_ids", topk_ids),
        ("topk_weights", topk_weights),
    ):
        check_contiguous(op, name, t)
    check_out(op, out, tuple(x.shape), x.dtype)
    tokens, hidden = x.shape
    num_experts, inter = w13.shape[0], w13.shape[1] // 2
    top_k = topk_ids.shape[1]
    out = torch.empty_like(x) if out is None else out
    if tokens == 0:
        return out
    config = dict(config or CONFIG_SPACE.default)
    if not config["BLOCK_M"]:
        config["BLOCK_M"] = auto_block_m(tokens * top_k, num_experts)
    sorted_pairs, block_expert, num_blocks = align(topk_ids, num_experts, config["BLOCK_M"])
    route_w = topk_weights.reshape(-1).to(torch.float32)
    act = torch.empty(tokens * top_k, inter, dtype=x.dtype, device=x.device)
    partial = torch.empty(tokens, top_k, hidden, dtype=x.dtype, device=x.device)
    _gemm(x, w13, w13_scale, route_w, act, sorted_pairs, block_expert, num_blocks, inter, hidden, top_k, True,
          config, "UP")  # fmt: skip
    _gemm(act, w2, w2_scale, route_w, partial.view(tokens * top_k, hidden), sorted_pairs, block_expert, num_blocks,
          hidden, inter, 1, False, config, "DOWN")  # fmt: skip
    torch.sum(partial, dim=1, out=out)
    return out


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    """Random experts of the key's shape; each token routed to top_k distinct random experts."""
    tokens, experts, inter, hidden, top_k = (
        shape[k] for k in ("tokens", "experts", "inter", "hidden", "top_k")
    )
    x = torch.randn(tokens, hidden, dtype=dtype, device=device)
    w13 = torch.randn(experts, 2 * inter, hidden, dtype=dtype, device=device) * hidden**-0.5
    w2 = torch.randn(experts, hidden, inter, dtype=dtype, device=device) * inter**-0.5
    ids = torch.rand(tokens, experts, device=device).topk(top_k, dim=-1).indices.to(torch.int32)
    weights = torch.softmax(torch.randn(tokens, top_k, device=device), -1)
    weight_dtype = shape.get("weight", str(dtype).removeprefix("torch."))
    if weight_dtype.startswith("float8"):
        from tessera.pluggable_layers.reference.linear_fp8 import quantize_per_channel

        fp8 = getattr(torch, weight_dtype)
        q13, s13 = quantize_per_channel(w13.float().flatten(0, 1), fp8)
        q2, s2 = quantize_per_channel(w2.float().flatten(0, 1), fp8)
        return (x, q13.view(w13.shape), q2.view(w2.shape), weights, ids, s13.view(experts, -1),
                s2.view(experts, -1)), {}  # fmt: skip
    return (x, w13, w2, weights, ids), {}
