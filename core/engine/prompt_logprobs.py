"""Prompt logprobs: for requests that ask, the logprob of each prompt token given the tokens before it.

Computed in the step that runs the prompt chunk, from the hidden states of every
chunk position (the position before each prompt token predicts it): the true
token's logprob and rank, and the top ``prompt_logprobs`` tokens, of the model's
raw distribution. Requests asking for them skip prefix-cache hits (as in vLLM),
so every prompt position is computed.
"""

from __future__ import annotations

import torch

from tessera.engine.inputs import HostBatch


@torch.inference_mode()
def prompt_logprobs(model, hidden: torch.Tensor, batch: HostBatch) -> dict | None:
    """request id -> [(position, [true id, top ids...], [logprobs...], rank of the true token)], or None."""
    found = {}
    for i, sched in enumerate(batch.order):
        req = sched.request
        n = req.params.prompt_logprobs
        if n is None:
            continue
        prompt = req.prompt_token_ids
        positions = [p for p in range(sched.start, sched.start + sched.num_tokens) if p + 1 < len(prompt)]
        if not positions:
            continue
        flat = [batch.query_start_loc[i] + p - sched.start for p in positions]
        logits = model.compute_logits(hidden[torch.tensor(flat, device=hidden.device)]).float()
        lp = torch.log_softmax(logits, dim=-1)
        true = torch.tensor([prompt[p + 1] for p in positions], device=lp.device)
        true_lp = lp.gather(1, true[:, None])
        rank = ((lp > true_lp).sum(-1) + 1).tolist()
        top = torch.topk(lp, n, dim=-1)
        ids = torch.cat([true[:, None], top.indices], 1).tolist()
        values = torch.cat([true_lp, top.values], 1).tolist()
        found[req.request_id] = [(p + 1, ids[j], values[j], rank[j]) for j, p in enumerate(positions)]
    return found or None
