"""The pack's MoE and Mamba2 kernels under TRITON_INTERPRET=1 on CPU tensors against the float64
reference: ragged batches, 1-token sequences, sequences shorter than a chunk and on chunk boundaries,
experts that receive no token, fp8 experts, poisoned outputs, fp32 and fp16."""

from __future__ import annotations

import pytest
import torch

from tessera.pluggable_layers.errors import KernelInputError
from tessera.pluggable_layers.reference import reference
from tessera.pluggable_layers.reference.linear_fp8 import quantize_per_channel

triton = pytest.importorskip("triton")

from tessera_triton.kernels import causal_conv1d as conv  # noqa: E402
from tessera_triton.kernels import gated_rms_norm as gnorm  # noqa: E402
from tessera_triton.kernels import moe_experts as experts  # noqa: E402
from tessera_triton.kernels import moe_route as route  # noqa: E402
from tessera_triton.kernels import selective_state_update as ssu  # noqa: E402
from tessera_triton.kernels import ssd_chunk_scan as ssd  # noqa: E402
from tests.triton_pack.test_triton_elementwise import as64, budget, normalized_error, poisoned  # noqa: E402

DTYPES = [torch.float32, torch.float16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("tokens", "num_experts", "top_k", "renorm", "scoring"),
                         [(1, 8, 2, True, "softmax"), (37, 60, 8, True, "softmax"), (5, 16, 3, False, "sigmoid")])  # fmt: skip
def test_moe_route(dtype, tokens, num_experts, top_k, renorm, scoring):
    # distinct scores (a permutation per row), so the top-k set and its order are unique
    logits = torch.stack([torch.randperm(num_experts) for _ in range(tokens)]).to(dtype) * (8.0 / num_experts)
    weights, ids = route.moe_route(logits, top_k, renorm, scoring, config={"BLOCK_T": 2, "num_warps": 1})
    ref_w, ref_ids = reference("moe_route")(logits.double(), top_k, renorm, scoring)
    assert torch.equal(ids, ref_ids)
    assert normalized_error(weights, ref_w) <= 1e-5


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy on NaN rows, by design
@pytest.mark.parametrize("scoring", ["softmax", "sigmoid"])
@pytest.mark.parametrize(("num_experts", "top_k"), [(6, 3), (8, 2), (60, 4), (1, 1), (3, 3)])
def test_moe_route_ids_stay_in_range_for_nan_and_inf_rows(num_experts, top_k, scoring):
    """NaN logits, a NaN in one lane, a row of -inf and a +inf logit once made the arg-max's equality
    test fail, and the kernel emitted the padded width (or the block width) as an expert id."""
    logits = torch.randn(6, num_experts)
    logits[1] = float("nan")
    logits[2, num_experts // 2] = float("nan")
    logits[3] = float("-inf")
    logits[4, 0] = float("inf")
    weights, ids = route.moe_route(logits, top_k, True, scoring, config={"BLOCK_T": 2, "num_warps": 1})
    assert ((ids >= 0) & (ids < num_experts)).all(), ids
    assert all(len(set(row)) == top_k for row in ids.tolist())
    ref_w, ref_ids = reference("moe_route")(logits.double(), top_k, True, scoring)
    finite = torch.isfinite(ref_w).all(dim=1)
    assert torch.isfinite(weights[finite]).all() and not torch.isfinite(weights[~finite]).any(dim=1).any()
    assert torch.equal(ids[[0, 5]], ref_ids[[0, 5]])


def routed(tokens, num_experts, top_k, used):
    ids = torch.stack([torch.randperm(used)[:top_k] for _ in range(tokens)]).to(torch.int32)
    return torch.softmax(torch.randn(tokens, top_k), -1), ids


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("tokens", "num_experts", "top_k", "used", "block_m"),
                         [(1, 8, 2, 8, 0), (19, 16, 4, 6, 16), (70, 4, 2, 4, 32)])  # fmt: skip
def test_moe_experts(dtype, tokens, num_experts, top_k, used, block_m):
    hidden, inter = 48, 40  # neither a multiple of the K tiles: the masked path
    x = torch.randn(tokens, hidden, dtype=dtype)
    w13 = (torch.randn(num_experts, 2 * inter, hidden) * hidden**-0.5).to(dtype)
    w2 = (torch.randn(num_experts, hidden, inter) * inter**-0.5).to(dtype)
    weights, ids = routed(tokens, num_experts, top_k, used)  # experts >= used receive no token
    config = {**experts.CONFIG_SPACE.default, "BLOCK_M": block_m, "BLOCK_K_UP": 32, "BLOCK_K_DOWN": 32}
    out = poisoned((tokens, hidden), dtype)
    experts.moe_experts(x, w13, w2, weights, ids, out=out, config=config)
    ref = reference("moe_experts")(*as64(x, w13, w2, weights), ids)
    assert normalized_error(out, ref) <= budget("moe_experts", dtype)


def test_moe_experts_fp8_weights():
    tokens, num_experts, top_k, hidden, inter = 9, 8, 2, 64, 32
    x = torch.randn(tokens, hidden)
    q13, s13 = quantize_per_channel(torch.randn(num_experts * 2 * inter, hidden) * 0.1, torch.float8_e4m3fn)
    q2, s2 = quantize_per_channel(torch.randn(num_experts * hidden, inter) * 0.1, torch.float8_e4m3fn)
    w13, w2 = q13.view(num_experts, 2 * inter, hidden), q2.view(num_experts, hidden, inter)
    s13, s2 = s13.view(num_experts, -1), s2.view(num_experts, -1)
    weights, ids = routed(tokens, num_experts, top_k, num_experts)
    out = experts.moe_experts(x, w13, w2, weights, ids, s13, s2)
    ref = reference("moe_experts")(x.double(), w13, w2, weights.double(), ids, s13.double(), s2.double())
    assert normalized_error(out, ref) <= 1e-5


def test_align_groups_pairs_by_expert():
    ids = torch.tensor([[3, 1], [1, 0], [3, 1]], dtype=torch.int32)
    sorted_pairs, block_expert, num_blocks = experts.align(ids, 5, 2)
    blocks = sorted_pairs.view(num_blocks, 2)
    sentinel = ids.numel()
    for b in range(num_blocks):
        e = int(block_expert[b])
        real = [int(p) for p in blocks[b] if p != sentinel]
        assert all(int(ids.view(-1)[p]) == e for p in real)
        assert (e == -1) == (not real)
    assert sorted(int(p) for p in sorted_pairs if p != sentinel) == list(range(sentinel))
    assert (
        2 not in block_expert.tolist() and 4 not in block_expert.tolist()
    )  # experts with no pair get no block


def offsets(lengths):
    return torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lengths", [[1, 5, 17], [2], [40, 1, 1]])
def test_causal_conv1d(dtype, lengths):
    channels, width = 70, 4
    b = len(lengths)
    x = torch.randn(sum(lengths), channels, dtype=dtype)
    weight, bias = torch.randn(channels, width, dtype=dtype), torch.randn(channels, dtype=dtype)
    states = torch.randn(b + 2, channels, width - 1, dtype=dtype)
    idx = torch.randperm(b + 2)[:b].to(torch.int32)
    init = torch.arange(b) % 2 == 0
    ref_states = states.double()
    out = poisoned(tuple(x.shape), dtype)
    conv.causal_conv1d(x, weight, bias, offsets(lengths), states, idx, init, "silu", out=out,
                       config={"BLOCK_T": 8, "BLOCK_C": 64, "num_warps": 2})  # fmt: skip
    ref = reference("causal_conv1d")(*as64(x, weight, bias), offsets(lengths), ref_states, idx, init, "silu")
    assert normalized_error(out, ref) <= budget("causal_conv1d", dtype)
    assert normalized_error(states, ref_states) <= budget("causal_conv1d", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_causal_conv1d_update(dtype):
    batch, channels, width = 5, 130, 4
    x, weight = torch.randn(batch, channels, dtype=dtype), torch.randn(channels, width, dtype=dtype)
    states = torch.randn(batch + 1, channels, width - 1, dtype=dtype)
    idx = torch.randperm(batch + 1)[:batch].to(torch.int32)
    ref_states = states.double()
    out = poisoned((batch, channels), dtype)
    conv.causal_conv1d_update(
        x, states, weight, None, idx, None, out=out, config={"BLOCK_C": 64, "num_warps": 1}
    )
    ref = reference("causal_conv1d_update")(*as64(x), ref_states, weight.double(), None, idx, None)
    assert normalized_error(out, ref) <= budget("causal_conv1d_update", dtype)
    assert normalized_error(states, ref_states) <= budget("causal_conv1d_update", dtype)


def ssm_inputs(rows, heads, head_dim, state, groups, dtype):
    return (torch.randn(rows, heads, head_dim, dtype=dtype), (torch.randn(rows, heads) * 0.5).to(dtype),
            -torch.rand(heads) * 2 - 0.1, torch.randn(rows, groups, state, dtype=dtype),
            torch.randn(rows, groups, state, dtype=dtype), torch.randn(heads), torch.randn(heads) * 0.5)  # fmt: skip


SSD_CONFIG = {"BLOCK_L": 16, "BLOCK_P": 16, "SEGMENT": 0, "num_warps": 4, "num_stages": 1}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("lengths", "config"),
    [
        ([1, 7, 16, 33], SSD_CONFIG),
        ([32, 31], {**SSD_CONFIG, "BLOCK_L": 32}),
        # segments of 16 tokens: a 1-token sequence, one on a segment boundary, one of 3 segments and a bit
        ([1, 32, 50], {**SSD_CONFIG, "SEGMENT": 16}),
    ],
)
def test_ssd_chunk_scan(dtype, lengths, config):
    heads, head_dim, state, groups = 4, 8, 16, 2
    x, dt, A, B, C, D, dt_bias = ssm_inputs(sum(lengths), heads, head_dim, state, groups, dtype)
    b = len(lengths)
    states = torch.randn(b + 1, heads, head_dim, state) * 0.5
    idx = torch.randperm(b + 1)[:b].to(torch.int32)
    init = torch.arange(b) % 2 == 1
    ref_states = states.double()
    out = poisoned(tuple(x.shape), dtype)
    ssd.ssd_chunk_scan(
        x, dt, A, B, C, D, dt_bias, True, offsets(lengths), states, idx, init, 16, out=out, config=config
    )
    ref = reference("ssd_chunk_scan")(
        *as64(x, dt, A, B, C, D, dt_bias), True, offsets(lengths), ref_states, idx, init, 16
    )
    assert normalized_error(out, ref) <= budget("ssd_chunk_scan", dtype)
    assert normalized_error(states, ref_states) <= budget("ssd_chunk_scan", torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gate", [True, False])
def test_selective_state_update(dtype, gate):
    batch, heads, head_dim, state, groups = 3, 4, 8, 16, 2
    x, dt, A, B, C, D, dt_bias = ssm_inputs(batch, heads, head_dim, state, groups, dtype)
    z = torch.randn(batch, heads, head_dim, dtype=dtype) if gate else None
    states = torch.randn(batch + 2, heads, head_dim, state) * 0.5
    idx = torch.randperm(batch + 2)[:batch].to(torch.int32)
    ref_states = states.double()
    out = poisoned(tuple(x.shape), dtype)
    ssu.selective_state_update(states, x, dt, A, B, C, D, z, dt_bias, True, idx, out=out,
                               config={"BLOCK_P": 4, "num_warps": 1})  # fmt: skip
    ref = reference("selective_state_update")(ref_states, *as64(x, dt, A, B, C, D), None if z is None else z.double(),
                                              dt_bias.double(), True, idx)  # fmt: skip
    assert normalized_error(out, ref) <= budget("selective_state_update", dtype)
    assert normalized_error(states, ref_states) <= budget("selective_state_update", torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("group_size", "gate", "block"), [(16, True, 256), (300, True, 256), (64, False, 1024)]
)
def test_gated_rms_norm(dtype, group_size, gate, block):
    x = torch.randn(5, 4 * group_size, dtype=dtype)
    z = torch.randn_like(x) if gate else None
    w = torch.randn(x.shape[1], dtype=dtype)
    out = poisoned(tuple(x.shape), dtype)
    gnorm.gated_rms_norm(x, z, w, 1e-6, group_size, out=out, config={"BLOCK": block, "num_warps": 2})
    ref = reference("gated_rms_norm")(
        x.double(), None if z is None else z.double(), w.double(), 1e-6, group_size
    )
    assert normalized_error(out, ref) <= budget("gated_rms_norm", dtype)


def test_moe_and_mamba_launchers_reject_bad_input():
    with pytest.raises(KernelInputError, match="top_k"):
        route.moe_route(torch.randn(2, 4), 5)
    x = torch.randn(3, 8)
    w13, w2 = torch.randn(4, 8, 8), torch.randn(4, 8, 4)
    with pytest.raises(KernelInputError, match="outside"):
        experts.moe_experts(x, w13, w2, torch.ones(3, 1), torch.tensor([[0], [4], [1]], dtype=torch.int32))
    with pytest.raises(KernelInputError, match="group_size"):
        gnorm.gated_rms_norm(x, None, torch.ones(8), 1e-6, 3)
    with pytest.raises(KernelInputError, match="chunk_size"):
        args = ssm_inputs(2, 2, 4, 8, 1, torch.float32)
        ssd.ssd_chunk_scan(*args, True, offsets([2]), torch.zeros(1, 2, 4, 8), torch.zeros(1, dtype=torch.int32),
                           torch.ones(1, dtype=torch.bool), 0)  # fmt: skip
