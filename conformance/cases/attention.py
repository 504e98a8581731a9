"""Cases for paged_attention: decode and chunked prefill together, GQA 1/4/8, block boundaries,
context 1, sliding window; long contexts under --full."""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, Inputs, nan_like, offsets, param_name, randn
from tessera.conformance.space import Choice, Int, Space


def paged_case(name, seq_lens, q_lens, hq, hk, d=64, block=16, window=None, full=False):
    def build(g):
        blocks_per = [-(-s // block) for s in seq_lens]
        num_blocks = sum(blocks_per) + 2
        order = torch.randperm(num_blocks, generator=g).tolist()
        tables = torch.zeros(len(seq_lens), max(blocks_per), dtype=torch.int32)
        for b, n in enumerate(blocks_per):
            tables[b, :n] = torch.tensor([order.pop() for _ in range(n)], dtype=torch.int32)
        t = sum(q_lens)
        return Inputs({"q": randn(t, hq, d, g=g), "key_cache": randn(num_blocks, block, hk, d, g=g),
                       "value_cache": randn(num_blocks, block, hk, d, g=g), "query_start_loc": offsets(q_lens),
                       "seq_lens": torch.tensor(seq_lens, dtype=torch.int32), "block_tables": tables, "scale": d**-0.5,
                       "sliding_window": window, "out": nan_like((t, hq, d))}, poison=("out",))  # fmt: skip

    return Case("paged_attention", name, build, full_only=full,
                facts={"head_size": d, "num_heads": hq, "num_kv_heads": hk, "sliding_window": window})  # fmt: skip


def cases() -> list[Case]:
    return [
        paged_case("decode_ctx1_gqa1", [1], [1], 4, 4),
        paged_case("decode_block_edges_gqa4", [16, 17, 31, 32, 33], [1] * 5, 16, 4),
        paged_case("mixed_prefill_decode_gqa8", [1, 40, 75, 16], [1, 40, 11, 1], 8, 1, d=128),
        paged_case("chunked_prefill_window7", [50, 23], [13, 23], 4, 2, window=7),
        # as many query tokens as sequences, yet one sequence has none this step and one has two
        paged_case("empty_query_row_gqa2", [5, 12, 9], [2, 0, 1], 4, 2),
        paged_case("decode_ctx8191_gqa4", [8191, 1000], [1, 1], 32, 8, d=128, full=True),
        paged_case("prefill_2x2048_gqa4", [2048, 2048], [2048, 2048], 32, 8, d=128, full=True),
    ]


def make_paged(p: dict) -> Case:
    """``b`` sequences of context up to ``ctx``; ``decode`` of them take one query token, the others
    a prefill chunk of up to ``chunk`` tokens ending at their context; with ``empty`` the last
    sequence has no query token this step (when there are others)."""
    b, ctx = p["b"], p["ctx"]
    seq = [max(1, ctx - (i * 37) % max(ctx, 1)) for i in range(b)]
    q = [1 if i < p["decode"] else max(1, min(s, p["chunk"] - i)) for i, s in enumerate(seq)]
    if p.get("empty") and b > 1:
        q[-1] = 0
    window = p["window"] or None
    q_params = {**p, "hq": p["hk"] * p["gqa"]}
    case = paged_case(
        param_name(q_params), seq, q, q_params["hq"], p["hk"], d=p["d"], block=p["block"], window=window
    )
    case.params = q_params
    return case


def space() -> list[Space]:
    return [Space("paged_attention", {
        "b": Int(1, 64, hi_quick=5), "ctx": Int(1, 32768, hi_quick=300, boundaries=(16, 32, 64, 128, 256)),
        "decode": Int(0, 64, hi_quick=5), "chunk": Int(1, 2048, hi_quick=40, boundaries=(16, 32)),
        "hk": Int(1, 16, hi_quick=4, boundaries=(8,)), "gqa": Choice((1, 2, 4, 5, 8)), "d": Choice((64, 80, 96, 128, 256)),
        "block": Choice((16, 32)), "window": Choice((0, 0, 0, 7, 64)), "empty": Choice((0, 0, 0, 1)),
    }, make_paged)]  # fmt: skip
