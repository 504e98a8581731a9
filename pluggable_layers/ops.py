"""The op contract: one OpSpec per op, naming its signature, layouts, semantics and tolerance.

Every kernel registered for an op takes the reference's arguments, in the same
order and with the same keywords, and returns what the reference returns. Tensors
are token-major: ``T`` is the number of tokens in the flat batch, ``B`` the number
of sequences, ``H`` hidden size, ``D`` head size. Where an op has an ``out``
argument the kernel must write every element of it (the conformance suite fills it
with NaN first) and return it.

The tolerance class names the error budget a kernel's output must meet against
the float64 reference: the normalized error ``||out - ref|| / ||ref||`` must stay
within the budget for the output's dtype (``TOLERANCES``); NaN never passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.pluggable_layers.errors import KernelError

FLOAT_DTYPES = ("float32", "float16", "bfloat16")

#: normalized-error budget per tolerance class and dtype (0 means exact)
TOLERANCES: dict[str, dict[str, float]] = {
    "exact": {"float64": 0.0, "float32": 0.0, "float16": 0.0, "bfloat16": 0.0},
    "elementwise": {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2},
    "reduction": {"float64": 1e-12, "float32": 2e-5, "float16": 3e-3, "bfloat16": 2e-2},
    "matmul": {"float64": 1e-12, "float32": 2e-3, "float16": 5e-3, "bfloat16": 2e-2},
    "attention": {"float64": 1e-12, "float32": 2e-3, "float16": 5e-3, "bfloat16": 2e-2},
    "scan": {"float64": 1e-10, "float32": 5e-4, "float16": 1e-2, "bfloat16": 3e-2},
    "fp8": {"float64": 6e-2, "float32": 6e-2, "float16": 6e-2, "bfloat16": 6e-2},
}


@dataclass(frozen=True)
class OpSpec:
    """What an op computes. The docstring of its reference module holds the full semantics."""

    name: str
    signature: str
    summary: str
    dtypes: tuple[str, ...]
    tolerance: str
    #: optional features added by a minor version of the contract: feature -> (plugin API version, what it adds).
    #: A kernel declares the ones it implements (``register(..., features=...)``); a query whose facts ask for a
    #: feature (a truthy ``facts[feature]``) refuses every kernel that did not declare it.
    features: tuple[tuple[str, str, str], ...] = ()
    #: a collective: runs on every rank of a process group (``group`` argument) and is certified by the
    #: conformance suite's distributed cases (world size 2), not by single-process cases
    collective: bool = False
    #: the arguments that are weights (plugin API 1.2): a kernel's ``prepare`` receives these once, as the
    #: checkpoint holds them, and returns them in the kernel's own form, which the layer then passes instead
    weights: tuple[str, ...] = ()
    #: the plugin API version that added the op ("1.0" for the first ops)
    since: str = "1.0"

    def budget(self, dtype: str) -> float:
        return TOLERANCES[self.tolerance][dtype]

    def feature_names(self) -> tuple[str, ...]:
        return tuple(f[0] for f in self.features)


def _spec(
    name: str,
    signature: str,
    summary: str,
    tolerance: str,
    dtypes=FLOAT_DTYPES,
    features=(),
    collective=False,
    weights=(),
    since="1.0",
) -> OpSpec:
    return OpSpec(name=name, signature=signature, summary=summary, dtypes=tuple(dtypes), tolerance=tolerance,
                  features=tuple(features), collective=collective, weights=tuple(weights), since=since)  # fmt: skip


#: The sample op's optional inputs (plugin API 1.1). Penalties and the bias act on the logits before the
#: temperature; min_p then drops tokens below min_p * the row's top probability, before top-k and top-p.
#: Logprobs are of the logits as passed in (the model's raw distribution: log_softmax before bias,
#: penalties and temperature, as vLLM reports them). A 1.0 kernel that declares none of these is
#: still selected for batches that use none of them; the engine asks a second selection, with the
#: facts ``penalties``/``logit_bias``/``min_p``/``logprobs`` set, for batches that do.
SAMPLE_FEATURES = (
    ("penalties", "1.1", "prompt_mask[B,V] bool, output_counts[B,V] i32, presence_penalty[B], frequency_penalty[B],"
     " repetition_penalty[B]: logits -= frequency * count + presence * (count > 0); where the token is in the"
     " prompt or the output, logits > 0 are divided by repetition, logits < 0 multiplied"),
    ("logit_bias", "1.1", "logit_bias[B,V] f32 added to the logits (after the penalties)"),
    ("min_p", "1.1", "min_p[B] f32: after the temperature, tokens with p < min_p * max p are dropped"),
    ("logprobs", "1.1", "num_logprobs N (int): also return logprobs[B,1+N] f32, logprob_token_ids[B,1+N] i64"
     " (column 0 the sampled token, then the N most likely) and sampled_rank[B] i64 (1 + tokens more likely)"),
)  # fmt: skip
MAX_LOGPROBS = 20  # the most top logprobs a kernel must return (vLLM's default max_logprobs)


OPS: dict[str, OpSpec] = {
    s.name: s
    for s in (
        _spec(
            "rms_norm",
            "rms_norm(x[T,H], weight[H], eps, out=None) -> out[T,H]",
            "x * rsqrt(mean(x^2) + eps) * weight, computed in float32, cast to x's dtype",
            "reduction",
        ),
        _spec(
            "add_rms_norm",
            "add_rms_norm(x[T,H], residual[T,H], weight[H], eps, out=None, residual_out=None) -> (out, residual_out)",
            "residual_out = x + residual; out = rms_norm(residual_out)",
            "reduction",
        ),
        _spec(
            "rotary_embedding",
            "rotary_embedding(positions[T], q[T,Hq,D], k[T,Hk,D], cos_sin_cache[P,R], is_neox, q_out=None, k_out=None)"
            " -> (q_out, k_out)",
            "rotate the first R dims of each head by the angle cached for its position (neox halves or gptj pairs)",
            "elementwise",
        ),
        _spec(
            "silu_and_mul",
            "silu_and_mul(x[T,2I], out=None) -> out[T,I]",
            "silu(x[:, :I]) * x[:, I:]",
            "elementwise",
        ),
        _spec(
            "linear",
            "linear(x[T,K], weight[N,K], bias[N]|None, out=None) -> out[T,N]",
            "x @ weight.T + bias",
            "matmul",
            weights=("weight",),
        ),
        _spec(
            "linear_fp8",
            "linear_fp8(x[T,K], weight[N,K] fp8, weight_scale[N] f32, bias[N]|None, out=None) -> out[T,N]",
            "x quantized per token to weight's fp8 dtype, times the per-channel-scaled fp8 weight",
            "fp8",
            dtypes=("float16", "bfloat16", "float32"),
            weights=("weight", "weight_scale"),
        ),
        _spec(
            "linear_wna16",
            "linear_wna16(x[T,K], qweight int32, scales[G,N], qzeros int32, bias[N]|None, weight_format,"
            " out=None) -> out[T,N]",
            "x @ dequantize(qweight, scales, qzeros).T + bias: 4-bit weights in groups of K/G input channels,"
            " as a GPTQ ('gptq' v1 zeros stored minus one, 'gptq_v2') or AWQ ('awq', GEMM layout) checkpoint"
            " stores them",
            "matmul",
            weights=("qweight", "scales", "qzeros"),
            since="1.2",
        ),
        _spec(
            "moe_route",
            "moe_route(router_logits[T,E], top_k, renormalize, scoring) -> (topk_weights[T,k] f32, topk_ids[T,k] i32)",
            "top-k experts by softmax (or sigmoid) score, weights optionally renormalized to sum 1",
            "reduction",
        ),
        _spec(
            "moe_experts",
            "moe_experts(x[T,H], w13[E,2I,H], w2[E,H,I], topk_weights[T,k], topk_ids[T,k], w13_scale=None,"
            " w2_scale=None, out=None) -> out[T,H]",
            "sum_j topk_weights[t,j] * w2[e] @ silu_and_mul(w13[e] @ x[t]) with e = topk_ids[t,j]",
            "matmul",
        ),
        _spec(
            "moe_experts_wna16",
            "moe_experts_wna16(x[T,H], w13_qweight[E,..], w13_scales[E,G,2I], w13_qzeros[E,..], w2_qweight[E,..],"
            " w2_scales[E,G2,H], w2_qzeros[E,..], topk_weights[T,k], topk_ids[T,k], weight_format, out=None)"
            " -> out[T,H]",
            "moe_experts on 4-bit experts: each expert's w13 [2I, H] and w2 [H, I] stored as linear_wna16 stores"
            " a weight (GPTQ or AWQ layout, per expert along dim 0), dequantized then as moe_experts",
            "matmul",
            weights=("w13_qweight", "w13_scales", "w13_qzeros", "w2_qweight", "w2_scales", "w2_qzeros"),
            since="1.2",
        ),
        _spec(
            "kv_cache_write",
            "kv_cache_write(key[T,Hk,D], value[T,Hk,D], key_cache[NB,BS,Hk,D], value_cache[NB,BS,Hk,D],"
            " slot_mapping[T] i64) -> None (caches [NB,Hk,BS,D] for kernels of kv_layout 'hnd', plugin API 1.2)",
            "key_cache.view(-1,Hk,D)[slot] = key[t] for each token whose slot >= 0; same for value",
            "exact",
        ),
        _spec(
            "paged_attention",
            "paged_attention(q[T,Hq,D], key_cache, value_cache, query_start_loc[B+1] i32, seq_lens[B] i32,"
            " block_tables[B,M] i32, scale, sliding_window=None, out=None) -> out[T,Hq,D]",
            "varlen causal attention of each sequence's query window over its paged KV (GQA, optional window)",
            "attention",
        ),
        _spec(
            "causal_conv1d",
            "causal_conv1d(x[T,C], weight[C,W], bias[C]|None, query_start_loc[B+1], conv_states[S,C,W-1],"
            " state_indices[B], has_initial_state[B], activation, out=None) -> out[T,C]",
            "depthwise causal conv per sequence, continuing from and writing back each sequence's conv state",
            "reduction",
        ),
        _spec(
            "causal_conv1d_update",
            "causal_conv1d_update(x[B,C], conv_states[S,C,W-1], weight[C,W], bias[C]|None, state_indices[B],"
            " activation, out=None) -> out[B,C]",
            "one decode step of causal_conv1d: shift the state in place, emit one output per sequence",
            "reduction",
        ),
        _spec(
            "ssd_chunk_scan",
            "ssd_chunk_scan(x[T,H,P], dt[T,H], A[H], B[T,G,N], C[T,G,N], D[H]|None, dt_bias[H]|None, dt_softplus,"
            " query_start_loc[B+1], ssm_states[S,H,P,N], state_indices[B], has_initial_state[B], chunk_size,"
            " out=None) -> out[T,H,P]",
            "Mamba2 selective scan over each sequence, from its initial state, final state written back",
            "scan",
        ),
        _spec(
            "selective_state_update",
            "selective_state_update(ssm_states[S,H,P,N], x[B,H,P], dt[B,H], A[H], B[B,G,N], C[B,G,N], D[H]|None,"
            " z[B,H,P]|None, dt_bias[H]|None, dt_softplus, state_indices[B], out=None) -> out[B,H,P]",
            "one decode step of the Mamba2 recurrence on the indexed states, optional silu(z) gating",
            "scan",
        ),
        _spec(
            "gated_rms_norm",
            "gated_rms_norm(x[T,Dm], z[T,Dm]|None, weight[Dm], eps, group_size, out=None) -> out[T,Dm]",
            "rms-normalize x * silu(z) within groups of group_size channels, times weight",
            "reduction",
        ),
        _spec(
            "sample",
            "sample(logits[B,V], temperature[B], top_k[B] i32|None, top_p[B]|None, exponential_noise[B,V]|None,"
            " *, min_p=None, logit_bias=None, prompt_mask=None, output_counts=None, presence_penalty=None,"
            " frequency_penalty=None, repetition_penalty=None, num_logprobs=None)"
            " -> token_ids[B] i64, or with num_logprobs (token_ids, logprobs[B,1+N], logprob_token_ids[B,1+N],"
            " sampled_rank[B]) (None: that filter or feature is off for every row)",
            "penalties and bias on the logits, then greedy where temperature is 0, else argmax(filtered"
            " softmax(logits/t) / noise) (exponential race); token ids exact, logprobs within the reduction budget",
            "reduction",
            dtypes=("float32", "float16", "bfloat16"),
            features=SAMPLE_FEATURES,
        ),
        _spec(
            "all_reduce",
            "all_reduce(x[T,H], group) -> out[T,H]",
            "the element-wise sum of x over the ranks of the process group, on every rank (x may be reduced in"
            " place and returned)",
            "reduction",
            collective=True,
        ),
        _spec(
            "all_gather",
            "all_gather(x[T,N], group, dim=-1) -> out[T,W*N]",
            "every rank's x concatenated along dim in rank order, on every rank",
            "exact",
            collective=True,
        ),
        _spec(
            "reduce_scatter",
            "reduce_scatter(x[T,W*N], group, dim=-1) -> out[T,N]",
            "the sum of x over the ranks, split into W equal chunks along dim; rank r gets chunk r",
            "reduction",
            collective=True,
        ),
    )
}

#: the collective ops (tensor and expert parallelism): kernels run on every rank of a group
COLLECTIVE_OPS = tuple(name for name, spec in OPS.items() if spec.collective)


def op_spec(name: str) -> OpSpec:
    try:
        return OPS[name]
    except KeyError:
        raise KernelError(f"unknown op {name!r}; the ops are: {', '.join(OPS)}") from None
