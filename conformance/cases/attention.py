"""Cases for paged_attention: decode and chunked prefill together, GQA 1/4/8, block boundaries,
context 1, sliding window; long contexts under --full."""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, Inputs, nan_like, offsets, randn


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
        paged_case("decode_ctx8191_gqa4", [8191, 1000], [1, 1], 32, 8, d=128, full=True),
        paged_case("prefill_2x2048_gqa4", [2048, 2048], [2048, 2048], 32, 8, d=128, full=True),
    ]
