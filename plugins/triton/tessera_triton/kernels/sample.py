"""Triton sample: greedy and temperature sampling in one pass over the vocabulary, no sort.

Layout: logits [B, V] (unit stride in V), temperature / top_p [B] float32,
top_k [B] int32, exponential_noise [B, V] float32 or None. One program per row
walks V in BLOCK tiles keeping a running argmax of ``logits`` (greedy rows) or of
``logits / t - log(noise)`` (the exponential race: argmax(p / noise) without a
softmax; without caller noise the kernel draws Exp(1) noise itself). Rows that use top-k or top-p need the filtered distribution: the
launcher sends the batch through the contract's batched filter (one sort) when
any row asks for it, and otherwise never sorts. With top_k and top_p None (the
engine passes None when no row filters) and noise given, it never reads a
device value on the host either.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tessera.pluggable_layers.reference.sample import check_sample_args
from tessera.pluggable_layers.sampling import filter_probabilities
from tessera.pluggable_layers.tuning import ConfigSpace, ShapeKey
from tessera_triton.common import BACKEND_OPTIONS, launch_options

CONFIG_SPACE = ConfigSpace(
    optional=BACKEND_OPTIONS,
    params={"BLOCK": [1024, 2048, 4096, 8192], "num_warps": [4, 8, 16]},
    default={"BLOCK": 4096, "num_warps": 8},
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
    seed,
    HAS_NOISE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    t = tl.load(temp_ptr + row)
    greedy = t == 0.0
    inv_t = 1.0 / tl.where(greedy, 1.0, t)
    best = tl.full([BLOCK], float("-inf"), tl.float32)
    best_idx = tl.zeros([BLOCK], tl.int32)
    for start in range(0, V, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        ok = cols < V
        x = tl.load(logits_ptr + row * stride_l + cols, mask=ok, other=float("-inf")).to(tl.float32)
        if HAS_NOISE:
            noise = tl.load(noise_ptr + row * stride_n + cols, mask=ok, other=1.0)
        else:  # Exp(1) draws from the counter-based generator: -log(U)
            noise = -tl.log(tl.maximum(tl.rand(seed, row * V + cols), 1e-20))
        score = tl.where(greedy, x, x * inv_t - tl.log(noise))
        take = score > best
        best = tl.where(take, score, best)
        best_idx = tl.where(take, cols, best_idx)
    top = tl.max(best, axis=0)
    # lowest index among the maxima, as torch.argmax does
    idx = tl.min(tl.where(best == top, best_idx, 2147483647), axis=0)
    tl.store(out_ptr + row, idx.to(tl.int64))


def sample(logits, temperature, top_k, top_p, exponential_noise=None, config=None):
    check_sample_args("sample", logits, temperature, top_k, top_p, exponential_noise)
    config = config or CONFIG_SPACE.default
    rows, vocab = logits.shape
    out = torch.empty(rows, dtype=torch.int64, device=logits.device)
    if rows == 0:
        return out
    filtered = (top_k is not None and bool(((top_k > 0) & (top_k < vocab)).any())) or (
        top_p is not None and bool((top_p < 1).any())
    )
    if filtered:
        # the kept distribution: softmax, batched filter, then the race on log-probabilities
        greedy = temperature == 0
        t = torch.where(greedy, torch.ones_like(temperature), temperature).to(torch.float32)
        kept = filter_probabilities(torch.softmax(logits.float() / t[:, None], dim=-1), top_k, top_p)
        scores = torch.where(greedy[:, None], logits.float(), torch.log(kept))
        logits, temperature = scores, torch.where(greedy, temperature, torch.ones_like(temperature))
    logits = logits if logits.stride(-1) == 1 else logits.contiguous()
    noise = exponential_noise.to(torch.float32).contiguous() if exponential_noise is not None else logits
    # without caller noise, the kernel draws its own from a seed taken from torch's (host) generator
    seed = int(torch.randint(0, 2**31 - 1, (1,)))
    _sample_kernel[(rows,)](logits, temperature.to(torch.float32).contiguous(), noise, out, vocab, logits.stride(0),
                            noise.stride(0), seed, HAS_NOISE=exponential_noise is not None, BLOCK=config["BLOCK"],
                            **launch_options(config))  # fmt: skip
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
