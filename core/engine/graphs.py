"""Decode graphs: the model forward for one-token-per-sequence batches, captured per padded batch size.

Used only when the platform offers graphs (``Platform.graph()``) and every kernel
the model selected is graph-safe. A batch of ``n`` decodes replays the graph of
the smallest captured size ``>= n``; the padding rows are token 0 at position 0,
write no KV (slot -1), read one token of block 0 and keep their Mamba state in the
spare slot. Rows a larger batch left behind are reset to that before a smaller
batch replays, so no kernel runs on a stale request's data.
"""

from __future__ import annotations

import logging

import torch

from tessera.engine.cache_plan import CachePlan
from tessera.engine.runner_parts import RunnerParts
from tessera.pluggable_layers.batch import AttentionMetadata, BatchMetadata, MambaMetadata

log = logging.getLogger("tessera.engine")


def capture_sizes(max_batch: int) -> list[int]:
    sizes = [s for s in (1, 2, 4, 8) if s <= max_batch]
    sizes += list(range(16, max_batch + 1, 16))
    if max_batch not in sizes:
        sizes.append(max_batch)
    return sorted(set(sizes))


class DecodeGraphs:
    """Graphs of ``runner.forward`` for decode batches of up to ``min(max_num_seqs, 256)`` sequences."""

    def __init__(self, runner: RunnerParts, plan: CachePlan, max_num_seqs: int) -> None:
        self.runner = runner
        device = runner.device
        self.max_batch = min(max_num_seqs, 256)
        self.max_blocks = -(-runner.max_model_len // plan.block_size)
        self.spare_slot = max(plan.num_state_slots - 1, 0)
        n, i32 = self.max_batch, torch.int32
        self.input_ids = torch.zeros(n, dtype=torch.int64, device=device)
        self.positions = torch.zeros(n, dtype=torch.int64, device=device)
        self.slot_mapping = torch.full((n,), -1, dtype=torch.int64, device=device)
        self.query_start_loc = torch.arange(n + 1, dtype=i32, device=device)
        self.seq_lens = torch.ones(n, dtype=i32, device=device)
        self.block_tables = torch.zeros(n, self.max_blocks, dtype=i32, device=device)
        self.state_indices = torch.full((n,), self.spare_slot, dtype=i32, device=device)
        self.has_initial_state = torch.ones(n, dtype=torch.bool, device=device)
        self.graphs: dict[int, object] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self._live_rows = 0  # rows of the static inputs that hold a request's data (the rest are padding)
        self._capture_all()

    def _meta(self, size: int) -> BatchMetadata:
        qsl = self.query_start_loc[: size + 1]
        attention = AttentionMetadata(
            self.slot_mapping[:size], qsl, self.seq_lens[:size], self.block_tables[:size]
        )
        mamba = MambaMetadata(qsl, self.state_indices[:size], self.has_initial_state[:size], size)
        return BatchMetadata(size, attention, mamba)

    def _capture_all(self) -> None:
        platform, pool = self.runner.platform, None
        for size in reversed(capture_sizes(self.max_batch)):
            args = (self.input_ids[:size], self.positions[:size], self._meta(size))
            self.runner.forward(*args)  # warm-up: compiles kernels for this shape outside the capture
            platform.synchronize(self.runner.device_index)
            graph = platform.graph()
            with platform.graph_capture(graph, pool=pool):
                self.outputs[size] = self.runner.forward(*args)
            pool = graph.pool() if pool is None and hasattr(graph, "pool") else pool
            self.graphs[size] = graph
        log.info("captured decode graphs for batch sizes %s", sorted(self.graphs))

    def can_run(self, batch) -> bool:
        n = len(batch.order)
        return (
            n > 0
            and batch.num_decodes == n
            and n <= self.max_batch
            and max(len(r) for r in batch.block_tables) <= self.max_blocks
        )

    def run(
        self, batch, input_ids: torch.Tensor, positions: torch.Tensor, meta: BatchMetadata
    ) -> torch.Tensor:
        n = len(batch.order)
        size = next(s for s in sorted(self.graphs) if s >= n)
        att, mam = meta.attention, meta.mamba
        if n < self._live_rows:
            self._reset_padding(n, self._live_rows)
        self._live_rows = n
        self.input_ids[:n].copy_(input_ids)
        self.positions[:n].copy_(positions)
        self.slot_mapping[:n].copy_(att.slot_mapping)
        self.seq_lens[:n].copy_(att.seq_lens)
        self.block_tables[:n, : att.block_tables.shape[1]].copy_(att.block_tables)
        self.state_indices[:n].copy_(mam.state_indices)
        self.graphs[size].replay()
        return self.outputs[size][:n]

    def _reset_padding(self, start: int, stop: int) -> None:
        """Rows ``start:stop`` held an earlier, larger batch: make them the padding row again (token 0 at
        position 0, one token of block 0, no KV write, the spare state slot), so no kernel ever runs on
        a stale request's data in the rows a smaller batch pads with."""
        self.input_ids[start:stop].zero_()
        self.positions[start:stop].zero_()
        self.slot_mapping[start:stop].fill_(-1)
        self.seq_lens[start:stop].fill_(1)
        self.block_tables[start:stop].zero_()
        self.state_indices[start:stop].fill_(self.spare_slot)
