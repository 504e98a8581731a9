"""When a request stops: the one place that decides it.

Four rules, applied by the engine and the model runner:
- :func:`limit_params`: at admission, ``max_tokens`` (None: what is left of the context) and
  ``min_tokens`` are clamped so that the prompt and its outputs fit ``max_model_len``;
- :func:`mask_stops`: while a request has fewer than ``min_tokens`` outputs, its EOS
  and stop tokens are masked out of the logits, so it cannot stop;
- :func:`stop_reason`: after each sampled token, ``"stop"`` (any EOS id or a stop token, at or
  past ``min_tokens``), ``"length"`` (``max_tokens`` reached) or None (go on); a stop token id
  is recorded in ``request.stop_reason``, EOS leaves it None (as vLLM does);
- :func:`find_stop_string`: on the text detokenized so far, the first stop string that
  appears in the newly added text (it may span token boundaries), and where the output
  text ends: before it, or after it with ``include_stop_str_in_output``.
"""

from __future__ import annotations

import torch

from tessera.engine.request import Request
from tessera.engine.sampling_inputs import list_to_device
from tessera.engine.scheduler import ScheduledRequest
from tessera.sampling_params import SamplingParams


def limit_params(params: SamplingParams, prompt_len: int, max_model_len: int) -> SamplingParams:
    """``params`` with ``max_tokens`` no larger than what fits after the prompt (``min_tokens`` follows)."""
    room = max_model_len - prompt_len
    limit = room if params.max_tokens is None else min(params.max_tokens, room)
    if limit == params.max_tokens:
        return params
    return params.model_copy(update={"max_tokens": limit, "min_tokens": min(params.min_tokens, limit)})


def stop_tokens(req: Request) -> list[int]:
    """The tokens that end the request: its stop tokens and, unless ignored, every EOS id."""
    eos = sorted(req.eos_token_ids) if not req.params.ignore_eos else []
    return list(req.params.stop_token_ids) + eos


def mask_stops(logits: torch.Tensor, rows: list[ScheduledRequest], pin: bool) -> None:
    """Requests below min_tokens may not stop: mask their EOS and stop tokens (in place)."""
    for i, sched in enumerate(rows):
        req = sched.request
        if req.num_generated < req.params.min_tokens:
            banned = [t for t in stop_tokens(req) if 0 <= t < logits.shape[1]]
            if banned:
                logits[i, list_to_device(banned, torch.int64, logits.device, pin)] = float("-inf")


def stop_reason(req: Request, token: int) -> str | None:
    """Why the request stops after ``token`` (already appended to its outputs), or None."""
    n = len(req.output_token_ids)
    if n >= req.params.min_tokens:
        if token in req.eos_token_ids and not req.params.ignore_eos:
            return "stop"
        if token in req.params.stop_token_ids:
            req.stop_reason = token
            return "stop"
    return "length" if n >= req.params.max_tokens else None


def find_stop_string(text: str, new_chars: int, params: SamplingParams) -> tuple[str, int] | None:
    """(stop string, length of the output text) when one of ``params.stop`` ends in the last ``new_chars``."""
    if not params.stop or new_chars <= 0:
        return None
    longest = max(len(s) for s in params.stop)
    window_start = max(0, len(text) - new_chars - longest + 1)
    found = None
    for s in params.stop:
        at = text.find(s, window_start)
        if at != -1 and (found is None or at < found[1]):
            found = (s, at)
    if found is None:
        return None
    stop, at = found
    return stop, at + len(stop) if params.include_stop_str_in_output else at
