"""Device-side token counts for the penalties: one row per running request that uses them.

``prompt_mask[slot, V]`` marks the prompt's tokens, ``output_counts[slot, V]`` counts
the output tokens. Rows are filled when a request first samples with penalties and
grow by one batched scatter per step: tokens already on the host, plus (async
scheduling) the token still on the device from the previous step, read from that
step's sampled tensor, so counts equal synchronous mode without a device sync. A row
is rebuilt after a preemption and freed when its request stops running. The pool
(``max_num_seqs`` rows of V, allocated at the first penalized request) lives apart
from the KV budget: 5 bytes per vocabulary entry and row.
"""

from __future__ import annotations

import torch

from tessera.engine.request import Request, Status
from tessera.engine.sampling_inputs import list_to_device
from tessera.engine.scheduler import ScheduledRequest


class TokenCounts:
    def __init__(self, rows: int, vocab: int, device: torch.device, pin: bool = False) -> None:
        """``pin``: stage host lists in pinned memory (the platform's ``pinned_memory``): a copy from
        pageable memory waits for the device, which would undo async scheduling every step."""
        self.rows, self.vocab, self.device, self.pin = rows, vocab, device, pin
        self.prompt_mask: torch.Tensor | None = None
        self.output_counts: torch.Tensor | None = None
        self.slots: dict[str, tuple[int, int, int]] = {}  # request id -> (slot, tokens counted, preemptions)
        self.held: dict[str, Request] = {}

    def _release_stale(self) -> None:
        for rid, req in list(self.held.items()):
            if req.status != Status.RUNNING or self.slots[rid][2] != req.num_preemptions:
                del self.held[rid], self.slots[rid]

    def gather(self, rows: list[ScheduledRequest], prev_sampled, prev_rows: dict[str, int]):
        """(prompt_mask[B,V], output_counts[B,V]) for the sampling rows, counts up to the token sampled now."""
        if self.prompt_mask is None:
            self.prompt_mask = torch.zeros(self.rows + 1, self.vocab, dtype=torch.bool, device=self.device)
            self.output_counts = torch.zeros(self.rows + 1, self.vocab, dtype=torch.int32, device=self.device)
        self._release_stale()
        free: list[int] | None = None  # the free slots, found when a request first needs one
        host_slots, host_tokens, dev_slots, dev_rows, fresh = [], [], [], [], []
        out = []
        for sched in rows:
            req = sched.request
            if not req.params.uses_penalties:
                out.append(0)  # row 0 stays zero: no penalty applies anyway
                continue
            if req.request_id not in self.slots:
                if free is None:
                    free = sorted(set(range(1, self.rows + 1)) - {s for s, _, _ in self.slots.values()})
                slot = free.pop(0)
                fresh.append((slot, req.prompt_token_ids))
                self.slots[req.request_id], self.held[req.request_id] = (slot, 0, req.num_preemptions), req
            slot, counted, pre = self.slots[req.request_id]
            known = req.output_token_ids
            host_slots += [slot] * (len(known) - counted)
            host_tokens += known[counted:]
            counted = max(counted, len(known))
            if req.num_pending > 0 and counted == len(known):
                dev_slots.append(slot)
                dev_rows.append(prev_rows[req.request_id])
                counted += 1
            self.slots[req.request_id] = (slot, counted, pre)
            out.append(slot)
        self._scatter(fresh, host_slots, host_tokens, dev_slots, dev_rows, prev_sampled)
        if out[0] > 0 and out == list(range(out[0], out[0] + len(out))):
            # the rows hold consecutive slots in order (a batch admitted together keeps them): views, no copy
            return self.prompt_mask[out[0] : out[-1] + 1], self.output_counts[out[0] : out[-1] + 1]
        index = self._to_device(out)
        return self.prompt_mask[index], self.output_counts[index]

    def _to_device(self, values: list) -> torch.Tensor:
        return list_to_device(values, torch.int64, self.device, self.pin)

    def _scatter(self, fresh, host_slots, host_tokens, dev_slots, dev_rows, prev_sampled) -> None:
        """Fresh rows get their prompt marks, every row its new output tokens: flat ``index_fill_`` and
        ``scatter_add_`` on views of the pool (no sort and no host sync, which ``index_put_`` can need)."""
        vocab = self.vocab
        for slot, prompt in fresh:
            self.prompt_mask[slot].zero_()
            self.output_counts[slot].zero_()
            self.prompt_mask[slot].index_fill_(0, self._to_device(prompt), True)
        counts = self.output_counts.view(-1)
        ones = lambda n: torch.ones(n, dtype=torch.int32, device=self.device)  # noqa: E731
        if host_tokens:
            flat = self._to_device([s * vocab + t for s, t in zip(host_slots, host_tokens, strict=True)])
            counts.scatter_add_(0, flat, ones(len(host_tokens)))
        if dev_slots:
            where = self._to_device([dev_slots, dev_rows])  # one copy for both index rows
            counts.scatter_add_(0, where[0] * vocab + prev_sampled[where[1]], ones(len(dev_slots)))
