"""Triton sample: greedy and temperature sampling in one pass over the vocabulary, no sort.

Layout: logits [B, V] (unit stride in V), temperature / top_p [B] float32,
top_k [B] int32, exponential_noise [B, V] float32 or None. Programs walk V in
BLOCK tiles keeping a running argmax of ``logits`` (greedy rows) or of
``logits / t - log(noise)`` (the exponential race: argmax(p / noise) without a
softmax; below t = 1 as ``logits - t * log(noise)``, the same argmax without 1 / t
overflowing at tiny t; without caller noise the kernel draws Exp(1) noise itself). A row's
vocabulary is split over SPLITS programs (0: one tile each, up to 32; one
program walking a 128K vocabulary takes about 0.1 ms on an H100), and a second
pass combines their partial maxima. Rows that use top-k or top-p need the
filtered distribution: the launcher sends the batch through the contract's
batched filter (one sort) when any row asks for it, and otherwise never sorts.
With top_k and top_p None (the engine passes None when no row filters) and
noise given, it never reads a device value on the host either.

The 1.1 inputs: penalties and the logit bias run first, in ``_penalize_kernel``
(one elementwise pass over [B, V] writing float32 logits); min_p joins top-k and
top-p in the filtered path; logprobs come from one pass over the raw logits
(:mod:`tessera_triton.kernels.sample_logprobs`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.reference.sample import check_sample_args, tempered_softmax
from tessera.pluggable_layers.sample_features import check_feature_args, drop_below_min_p
from tessera.pluggable_layers.top_k_top_p import filter_probabilities
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, launch_options
from tessera_triton.kernels.sample_logprobs import triton_logprobs

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={"BLOCK": [1024, 2048, 4096, 8192], "SPLITS": [0, 1, 4, 16, 64], "num_warps": [4, 8, 16]},
    default={"BLOCK": 4096, "SPLITS": 0, "num_warps": 8},
)
SHAPE_KEY = ShapeKey(
    {"rows": "pow2", "vocab": "pow2"},
    lambda logits, *a, **k: {"rows": logits.shape[0], "vocab": logits.shape[1]},
)


@triton.jit
def _sample_kernel(
    logits_ptr,
    temp_ptr,
    noise_ptr,
    out_ptr,
    V,
    stride_l,
    stride_n,
    best_ptr,
    idx_ptr,
    seed,
    HAS_NOISE: tl.constexpr,
    BLOCK: tl.constexpr,
    SPLITS: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    t = tl.load(temp_ptr + row)
    greedy = t == 0.0
    # argmax(x / t - log(noise)) == argmax(x - t * log(noise)) for t > 0: below t = 1 the
    # second form is used, as 1 / t overflows for tiny t (1e-40 -> inf, and x * inf is NaN or ties)
    small = t < 1.0
    x_scale = 1.0 / tl.where(greedy | small, 1.0, t)
    noise_scale = tl.where(small, t, 1.0)
    best = tl.full([BLOCK], float("-inf"), tl.float32)
    best_idx = tl.zeros([BLOCK], tl.int32)
    per_split = tl.cdiv(tl.cdiv(V, BLOCK), SPLITS) * BLOCK
    for start in range(split * per_split, tl.minimum(V, (split + 1) * per_split), BLOCK):
        cols = start + tl.arange(0, BLOCK)
        ok = cols < V
        x = tl.load(logits_ptr + row * stride_l + cols, mask=ok, other=float("-inf")).to(tl.float32)
        if HAS_NOISE:
            noise = tl.load(noise_ptr + row * stride_n + cols, mask=ok, other=1.0)
        else:  # Exp(1) draws from the counter-based generator: -log(U)
            noise = -tl.log(tl.maximum(tl.rand(seed, row * V + cols), 1e-20))
        score = tl.where(greedy, x, x * x_scale - noise_scale * tl.log(noise))
        take = score > best
        best = tl.where(take, score, best)
        best_idx = tl.where(take, cols, best_idx)
    top = tl.max(best, axis=0)
    # lowest index among the maxima, as torch.argmax does
    idx = tl.min(tl.where(best == top, best_idx, 2147483647), axis=0)
    if SPLITS == 1:
        tl.store(out_ptr + row, idx.to(tl.int64))
    else:
        tl.store(best_ptr + row * SPLITS + split, top)
        tl.store(idx_ptr + row * SPLITS + split, idx)


@triton.jit
def _penalize_kernel(logits_ptr, out_ptr, mask_ptr, counts_ptr, bias_ptr, pres_ptr, freq_ptr, rep_ptr, V, stride_l,
                     HAS_PENALTIES: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """out[b] = penalized(logits[b]) + bias[b], float32: the contract's penalties, elementwise."""
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = cols < V
    x = tl.load(logits_ptr + row * stride_l + cols, mask=ok, other=0.0).to(tl.float32)
    if HAS_PENALTIES:
        count = tl.load(counts_ptr + row * V + cols, mask=ok, other=0).to(tl.float32)
        seen = (tl.load(mask_ptr + row * V + cols, mask=ok, other=0) != 0) | (count > 0)
        rep = tl.load(rep_ptr + row)
        x = tl.where(seen, tl.where(x > 0, x / rep, x * rep), x)
        x = x - tl.load(freq_ptr + row) * count - tl.load(pres_ptr + row) * (count > 0).to(tl.float32)
    if HAS_BIAS:
        x = x + tl.load(bias_ptr + row * V + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * V + cols, x, mask=ok)


def penalize(logits, logit_bias, penalties: dict, block: int = 1024) -> torch.Tensor:
    """Float32 logits with the penalties and bias applied (a new contiguous tensor)."""
    rows, vocab = logits.shape
    out = torch.empty(rows, vocab, dtype=torch.float32, device=logits.device)
    has_pen = penalties.get("output_counts") is not None
    f32 = lambda t: t.to(torch.float32).contiguous()  # noqa: E731
    mask = penalties["prompt_mask"].contiguous().view(torch.uint8) if has_pen else out
    counts = penalties["output_counts"].to(torch.int32).contiguous() if has_pen else out
    pres, freq, rep = (f32(penalties[n]) if has_pen else out for n in PENALTY_SCALARS)
    bias = f32(logit_bias) if logit_bias is not None else out
    logits = logits if logits.stride(-1) == 1 else logits.contiguous()
    _penalize_kernel[(rows, triton.cdiv(vocab, block))](logits, out, mask, counts, bias, pres, freq, rep, vocab,
                                                         logits.stride(0), HAS_PENALTIES=has_pen,
                                                         HAS_BIAS=logit_bias is not None, BLOCK=block)  # fmt: skip
    return out


PENALTY_SCALARS = ("presence_penalty", "frequency_penalty", "repetition_penalty")
FEATURES = ("penalties", "logit_bias", "min_p", "logprobs")


@triton.jit
def _sample_combine_kernel(best_ptr, idx_ptr, out_ptr, SPLITS: tl.constexpr):
    """The row's winner over its splits: the highest score, the lowest index among equals."""
    row = tl.program_id(0).to(tl.int64)
    s = tl.arange(0, SPLITS)
    best = tl.load(best_ptr + row * SPLITS + s)
    idx = tl.load(idx_ptr + row * SPLITS + s)
    top = tl.max(best, axis=0)
    tl.store(out_ptr + row, tl.min(tl.where(best == top, idx, 2147483647), axis=0).to(tl.int64))


def auto_splits(vocab: int, block: int, most: int = 32) -> int:
    """SPLITS=0: one tile per program, up to ``most`` programs a row.

    The count depends on the vocabulary alone, not on the number of rows: the
    split count is a compile-time constant, and a count that followed the batch
    would compile a new variant whenever the number of sampled rows changes,
    in the middle of serving.
    """
    return min(triton.cdiv(vocab, block), most)


def sample(logits, temperature, top_k, top_p, exponential_noise=None, *, min_p=None, logit_bias=None,
           prompt_mask=None, output_counts=None, presence_penalty=None, frequency_penalty=None,
           repetition_penalty=None, num_logprobs=None, config=None):  # fmt: skip
    penalties = {"prompt_mask": prompt_mask, "output_counts": output_counts, "presence_penalty": presence_penalty,
                 "frequency_penalty": frequency_penalty, "repetition_penalty": repetition_penalty}  # fmt: skip
    check_sample_args("sample", logits, temperature, top_k, top_p, exponential_noise)
    check_feature_args("sample", logits, min_p, logit_bias, penalties, num_logprobs)
    raw = logits
    if logits.shape[0] and (output_counts is not None or logit_bias is not None):
        logits = penalize(logits, logit_bias, penalties)
    tokens = _race(
        logits, temperature, top_k, top_p, min_p, exponential_noise, config or CONFIG_SPACE.default
    )
    if num_logprobs is None:
        return tokens
    return (tokens, *triton_logprobs(raw, tokens, int(num_logprobs)))


def _race(logits, temperature, top_k, top_p, min_p, exponential_noise, config):
    rows, vocab = logits.shape
    out = torch.empty(rows, dtype=torch.int64, device=logits.device)
    if rows == 0:
        return out
    filtered = (top_k is not None and bool(((top_k > 0) & (top_k < vocab)).any())) or (
        top_p is not None and bool((top_p < 1).any())) or (min_p is not None and bool((min_p > 0).any()))  # fmt: skip
    if filtered:
        # the kept distribution: softmax, min_p, batched filter, then the race on log-probabilities
        greedy = temperature == 0
        t = torch.where(greedy, torch.ones_like(temperature), temperature).to(torch.float32)
        probs = drop_below_min_p(tempered_softmax(logits.float(), t[:, None]), min_p)
        kept = filter_probabilities(probs, top_k, top_p)
        scores = torch.where(greedy[:, None], logits.float(), torch.log(kept))
        logits, temperature = scores, torch.where(greedy, temperature, torch.ones_like(temperature))
    logits = logits if logits.stride(-1) == 1 else logits.contiguous()
    noise = exponential_noise.to(torch.float32).contiguous() if exponential_noise is not None else logits
    # without caller noise, the kernel draws its own from a seed taken from torch's (host) generator
    seed = int(torch.randint(0, 2**31 - 1, (1,)))
    block = config["BLOCK"]
    splits = int(config.get("SPLITS", 0)) or auto_splits(vocab, block)
    splits = min(splits, triton.cdiv(vocab, block))
    splits = 1 << (splits.bit_length() - 1)  # a power of two, for the combine pass
    part_best = torch.empty(rows * splits if splits > 1 else 1, dtype=torch.float32, device=logits.device)
    part_idx = torch.empty(part_best.shape, dtype=torch.int32, device=logits.device)
    _sample_kernel[(rows, splits)](logits, temperature.to(torch.float32).contiguous(), noise, out, vocab, logits.stride(0),
                                   noise.stride(0), part_best, part_idx, seed, HAS_NOISE=exponential_noise is not None,
                                   BLOCK=block, SPLITS=splits, **launch_options(config))  # fmt: skip
    if splits > 1:
        _sample_combine_kernel[(rows,)](part_best, part_idx, out, SPLITS=splits, num_warps=1)
    return out


def tune_inputs(shape: dict, dtype: torch.dtype, device) -> tuple[tuple, dict]:
    rows, vocab = shape["rows"], shape["vocab"]
    logits = torch.randn(rows, vocab, dtype=dtype, device=device)
    t = torch.full((rows,), 0.8, device=device)
    k = torch.zeros(rows, dtype=torch.int32, device=device)
    return (
        logits,
        t,
        k,
        torch.ones(rows, device=device),
        torch.empty(rows, vocab, device=device).exponential_(),
    ), {}
