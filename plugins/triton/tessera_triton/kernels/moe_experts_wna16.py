"""Triton moe_experts_wna16: the fused-experts MLP on 4-bit experts, dequantized tile by tile in registers.

The schedule is triton_moe_experts' (pairs sorted by expert into BLOCK_M-row blocks without a host
sync, a gated up GEMM with SiLU-and-mul in its epilogue, a down GEMM scaled by the routing weight,
the k partial rows summed); only the weight tiles differ. Prepared layout (``prepare``, once at load):
each expert as triton_linear_wna16 keeps a weight, stacked: ``qweight`` int32 [E, K/8, N] packed along
K (GPTQ order, lowest nibble first; AWQ repacked), ``scales`` and ``qzeros`` [E, G, N] in the scales'
dtype with real zero points; for w13 K = H and N = 2I (gate columns, then up), for w2 K = I and N = H.
A [BLOCK_K, BLOCK_N] tile is [BLOCK_K/8, BLOCK_N] words read along N, unpacked with shifts and
``(q - z) * s`` in float32, cast to x's dtype for ``tl.dot`` with float32 accumulation.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.checks import check_contiguous, check_dtype, check_out, fail
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, supported_launch_options
from tessera_triton.kernels import linear_wna16
from tessera_triton.kernels.moe_experts import align, auto_block_m, block_of, store_pairs

OP = "moe_experts_wna16"
FLOATS = (torch.float32, torch.float16, torch.bfloat16)
GEMMS = ("UP", "DOWN")
PREPARED_LAYOUT = ("per expert as triton_linear_wna16: qweight int32 [E, K/8, N] packed along K, qzeros and scales "
                   "[E, G, N] in the scales' dtype (real zero points)")  # fmt: skip

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={"BLOCK_M": [0, 16, 32, 64], "GROUP_M": [1, 8],
            **{f"{p}_{g}": v for g in GEMMS for p, v in (("BLOCK_N", [32, 64, 128]), ("BLOCK_K", [32, 64, 128]),
                                                          ("WARPS", [4, 8]), ("STAGES", [2, 3, 4]))}},
    default={"BLOCK_M": 0, "GROUP_M": 8, "BLOCK_N_UP": 64, "BLOCK_K_UP": 64, "WARPS_UP": 4, "STAGES_UP": 3,
             "BLOCK_N_DOWN": 64, "BLOCK_K_DOWN": 64, "WARPS_DOWN": 4, "STAGES_DOWN": 3},
)  # fmt: skip
SHAPE_KEY = ShapeKey(
    {"experts": "exact", "inter": "exact", "hidden": "exact", "top_k": "exact", "tokens": "pow2"},
    lambda x, w13_qweight, w13_scales, *a, **k: {
        "experts": w13_scales.shape[0], "inter": w13_scales.shape[2] // 2, "hidden": x.shape[1],
        "top_k": (a[5] if len(a) > 5 else k["topk_ids"]).shape[1], "tokens": x.shape[0],
    },
)  # fmt: skip


def prepare(weights, weight_format: str = "gptq", **facts):
    """Each expert's checkpoint tensors in triton_linear_wna16's layout, stacked along dim 0."""
    out = {}
    for name in ("w13", "w2"):
        qweight, scales, qzeros = (weights[f"{name}_{p}"] for p in ("qweight", "scales", "qzeros"))
        experts = [
            linear_wna16.prepare(
                {"qweight": qweight[e], "scales": scales[e], "qzeros": qzeros[e]}, weight_format
            )
            for e in range(scales.shape[0])
        ]
        for part in ("qweight", "scales", "qzeros"):
            out[f"{name}_{part}"] = torch.stack([p[part] for p in experts]).contiguous()
    return out


@triton.jit
def _dequant_tile(qw_ptr, s_ptr, z_ptr, k0, offs_n, n_ok, K, N_ALL, GROUP,
                  BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    """W[k0:k0+BLOCK_K, offs_n] in float32 from one expert's packed words, scales and zero points."""
    offs_w = k0 // 8 + tl.arange(0, BLOCK_K // 8)
    words = tl.load(qw_ptr + offs_w[:, None].to(tl.int64) * N_ALL + offs_n[None, :],
                    mask=(offs_w[:, None] < K // 8) & n_ok[None, :], other=0)  # fmt: skip
    shifts = (tl.arange(0, 8) * 4)[None, :, None]
    q = tl.reshape((words[:, None, :] >> shifts) & 0xF, (BLOCK_K, BLOCK_N)).to(tl.float32)
    g = tl.minimum((k0 + tl.arange(0, BLOCK_K)) // GROUP, K // GROUP - 1)
    gidx = g[:, None].to(tl.int64) * N_ALL + offs_n[None, :]
    s = tl.load(s_ptr + gidx, mask=n_ok[None, :], other=0.0).to(tl.float32)
    z = tl.load(z_ptr + gidx, mask=n_ok[None, :], other=0.0).to(tl.float32)
    return (q - z) * s


@triton.jit
def _expert_wna16_kernel(
    a_ptr, qw_ptr, s_ptr, z_ptr, route_w_ptr, out_ptr, sorted_ptr, block_expert_ptr,
    N, K, N_ALL, GROUP, num_pairs, num_blocks, stride_a, stride_o,
    A_ROW_DIV: tl.constexpr, GATED: tl.constexpr, ROUTE_WEIGHT: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    """out[p, n] = epilogue(sum_k a[row(p), k] * W[e][k, n]) for the pairs p of one expert block."""
    pid_m, pid_n = block_of(tl.program_id(0), N, num_blocks, BLOCK_N, GROUP_M)
    expert = tl.load(block_expert_ptr + pid_m)
    if expert < 0:
        return
    pairs = tl.load(sorted_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
    valid = pairs < num_pairs
    a_rows = (pairs // A_ROW_DIV).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = offs_n < N
    e = expert.to(tl.int64)
    qw = qw_ptr + e * (K // 8) * N_ALL
    s = s_ptr + e * (K // GROUP) * N_ALL
    z = z_ptr + e * (K // GROUP) * N_ALL
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc_up = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(a_ptr + a_rows[:, None] * stride_a + offs_k[None, :],
                    mask=valid[:, None] & (offs_k[None, :] < K), other=0.0)  # fmt: skip
        w = _dequant_tile(qw, s, z, k0, offs_n, n_ok, K, N_ALL, GROUP, BLOCK_K, BLOCK_N).to(a.dtype)
        if IEEE:
            acc = tl.dot(a, w, acc, input_precision="ieee")
        else:
            acc = tl.dot(a, w, acc)
        if GATED:  # the up columns follow the N gate columns
            w_up = _dequant_tile(qw, s, z, k0, offs_n + N, n_ok, K, N_ALL, GROUP, BLOCK_K, BLOCK_N).to(
                a.dtype
            )
            if IEEE:
                acc_up = tl.dot(a, w_up, acc_up, input_precision="ieee")
            else:
                acc_up = tl.dot(a, w_up, acc_up)
    store_pairs(acc, acc_up, route_w_ptr, out_ptr, pairs, valid, offs_n, n_ok, stride_o, GATED, ROUTE_WEIGHT)


def _check(x, name, qweight, scales, qzeros, k, n) -> int:
    """The prepared expert tensors of one GEMM (K inputs, N outputs); returns the group size."""
    experts, groups = scales.shape[0], scales.shape[1] if scales.dim() == 3 else 0
    if scales.dim() != 3 or scales.shape[2] != n or groups == 0 or k % groups or (k // groups) % 8:
        fail(OP, f"{name}_scales must be [E, G, {n}] with G dividing {k} into groups of a multiple of 8 rows, "
                 f"got {list(scales.shape)}")  # fmt: skip
    want = (experts, k // 8, n)
    if qweight.dtype != torch.int32 or tuple(qweight.shape) != want or k % 8:
        fail(OP, f"{name}_qweight must be the prepared int32 {list(want)}, got {qweight.dtype} "
                 f"{list(qweight.shape)}; run this kernel's prepare on the checkpoint weights")  # fmt: skip
    if qzeros is None or tuple(qzeros.shape) != tuple(scales.shape) or not qzeros.is_floating_point():
        fail(OP, f"{name}_qzeros must be the prepared {list(scales.shape)} zero points in the scales' dtype; "
                 "run this kernel's prepare on the checkpoint weights")  # fmt: skip
    for part, t in (("qweight", qweight), ("scales", scales), ("qzeros", qzeros)):
        check_contiguous(OP, f"{name}_{part}", t)
    return k // groups


def _gemm(a, qweight, scales, qzeros, group, route_w, out, blocks, n, k, row_div, gated, config, g):
    sorted_pairs, block_expert, num_blocks = blocks
    block_n, block_k = config[f"BLOCK_N_{g}"], config[f"BLOCK_K_{g}"]
    extra = {
        key: config[key] for key in BACKEND_OPTIONS if key in config and key in supported_launch_options()
    }
    _expert_wna16_kernel[(num_blocks * triton.cdiv(n, block_n),)](
        a, qweight, scales, qzeros, route_w, out, sorted_pairs, block_expert, n, k, scales.shape[2], group,
        route_w.numel(), num_blocks, a.stride(0), out.stride(0), A_ROW_DIV=row_div, GATED=gated,
        ROUTE_WEIGHT=not gated, IEEE=a.dtype == torch.float32, BLOCK_M=config["BLOCK_M"], BLOCK_N=block_n,
        BLOCK_K=block_k, GROUP_M=config["GROUP_M"], num_warps=config[f"WARPS_{g}"],
        num_stages=config[f"STAGES_{g}"], **extra,
    )  # fmt: skip


def moe_experts_wna16(x, w13_qweight, w13_scales, w13_qzeros, w2_qweight, w2_scales, w2_qzeros, topk_weights,
                      topk_ids, weight_format="gptq", out=None, config=None):  # fmt: skip
    check_dtype(OP, "x", x, FLOATS)
    check_contiguous(OP, "x", x)
    tokens, hidden = x.shape
    if w13_scales is None or w2_scales is None or w13_scales.dim() != 3:
        fail(OP, "the prepared scales are missing; run this kernel's prepare on the checkpoint weights")
    inter = w13_scales.shape[2] // 2
    group13 = _check(x, "w13", w13_qweight, w13_scales, w13_qzeros, hidden, 2 * inter)
    group2 = _check(x, "w2", w2_qweight, w2_scales, w2_qzeros, inter, hidden)
    experts = w13_scales.shape[0]
    if w2_scales.shape[0] != experts or topk_ids.shape != topk_weights.shape or topk_ids.shape[0] != tokens:
        fail(
            OP, f"w2 must have the {experts} experts of w13 and topk_ids / topk_weights one [k] row per token"
        )
    check_dtype(OP, "topk_ids", topk_ids, (torch.int32, torch.int64))
    check_contiguous(OP, "topk_ids", topk_ids)
    check_out(OP, out, tuple(x.shape), x.dtype)
    out = torch.empty_like(x) if out is None else out
    if tokens == 0:
        return out
    top_k = topk_ids.shape[1]
    config = dict(config or CONFIG_SPACE.default)
    if not config["BLOCK_M"]:
        config["BLOCK_M"] = auto_block_m(tokens * top_k, experts)
    blocks = align(topk_ids, experts, config["BLOCK_M"])
    route_w = topk_weights.reshape(-1).to(torch.float32)
    act = torch.empty(tokens * top_k, inter, dtype=x.dtype, device=x.device)
    partial = torch.empty(tokens, top_k, hidden, dtype=x.dtype, device=x.device)
    _gemm(x, w13_qweight, w13_scales, w13_qzeros, group13, route_w, act, blocks, inter, hidden, top_k, True,
          config, "UP")  # fmt: skip
    _gemm(act, w2_qweight, w2_scales, w2_qzeros, group2, route_w, partial.view(tokens * top_k, hidden), blocks,
          hidden, inter, 1, False, config, "DOWN")  # fmt: skip
    torch.sum(partial, dim=1, out=out)
    return out


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    """Random prepared 4-bit experts of the key's shape (group 128), each token routed to top_k experts."""
    tokens, experts, inter, hidden, top_k = (
        shape[k] for k in ("tokens", "experts", "inter", "hidden", "top_k")
    )
    args = [torch.randn(tokens, hidden, dtype=dtype, device=device)]
    for k, n in ((hidden, 2 * inter), (inter, hidden)):
        groups = max(1, k // 128)
        args += [torch.randint(-(2**31), 2**31 - 1, (experts, k // 8, n), dtype=torch.int32, device=device),
                 torch.rand(experts, groups, n, dtype=dtype, device=device) * 0.01,
                 torch.full((experts, groups, n), 8.0, dtype=dtype, device=device)]  # fmt: skip
    ids = torch.rand(tokens, experts, device=device).topk(top_k, dim=-1).indices.to(torch.int32)
    weights = torch.softmax(torch.randn(tokens, top_k, device=device), -1)
    return (*args, weights, ids), {}
