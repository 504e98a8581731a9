"""The penalties' device-side token counts equal counting the requests' tokens on the host, whichever way the
rows map to pool slots (consecutive views, gathered rows, a freed slot reused), with and without a token still
on the device (async scheduling)."""

from __future__ import annotations

import torch

from tessera.engine.request import Request, Status
from tessera.engine.scheduler import ScheduledRequest
from tessera.engine.token_counts import TokenCounts
from tessera.sampling_params import SamplingParams

VOCAB = 50
PENALIZED = SamplingParams(max_tokens=32, presence_penalty=0.5)
PLAIN = SamplingParams(max_tokens=32)


def running(rid: str, prompt: list[int], params=PENALIZED) -> Request:
    req = Request(rid, prompt, params)
    req.status = Status.RUNNING
    return req


def row(req: Request) -> ScheduledRequest:
    return ScheduledRequest(req, req.num_tokens - 1, 1)


def expected(req: Request, extra: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    mask, counts = torch.zeros(VOCAB, dtype=torch.bool), torch.zeros(VOCAB, dtype=torch.int32)
    if req.params.uses_penalties:
        mask[req.prompt_token_ids] = True
        for t in req.output_token_ids + ([extra] if extra is not None else []):
            counts[t] += 1
    return mask, counts


def check(counts: TokenCounts, reqs: list[Request], prev=None, pending: dict | None = None) -> None:
    pending = pending or {}
    rows = [row(r) for r in reqs]
    prev_rows = {rid: i for i, rid in enumerate(pending)}
    prev_sampled = torch.tensor(list(pending.values()), dtype=torch.int64) if pending else None
    mask, out = counts.gather(rows, prev_sampled, prev_rows)
    for i, req in enumerate(reqs):
        want_mask, want_counts = expected(req, pending.get(req.request_id))
        assert torch.equal(mask[i], want_mask), req.request_id
        assert torch.equal(out[i], want_counts), req.request_id


def test_counts_follow_tokens_through_views_gathers_and_reused_slots():
    counts = TokenCounts(rows=4, vocab=VOCAB, device=torch.device("cpu"))
    a, b, c = running("a", [1, 2, 2]), running("b", [3]), running("c", [4, 5])
    check(counts, [a, b, c])  # slots 1, 2, 3 in row order: views of the pool
    a.output_token_ids += [7, 7]
    b.output_token_ids += [1]
    check(counts, [a, b, c])
    check(counts, [c, a, b])  # the same slots out of order: gathered rows
    plain = running("p", [9], PLAIN)
    check(counts, [a, plain, c])  # a request without penalties reads the zero row
    b.status = Status.FINISHED
    d = running("d", [8, 8])
    d.output_token_ids += [3, 3, 3]
    check(counts, [a, c, d])  # d takes b's freed slot, counted from scratch
    # async scheduling: the token sampled last step is still on the device
    for req in (a, c, d):
        req.num_pending = 1
    check(counts, [a, c, d], pending={"a": 11, "c": 12, "d": 3})
    for req, token in ((a, 11), (c, 12), (d, 3)):
        req.output_token_ids.append(token)
        req.num_pending = 0
    check(counts, [a, c, d])  # the device token is not counted twice once it reaches the host
