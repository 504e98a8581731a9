"""From requests to RequestOutputs: logprobs, stop strings on the detokenized text, n completions per prompt.

A prompt with ``n > 1`` runs as ``n`` sibling requests (ids ``"<id>#<i>"``) sharing the
prompt; its RequestOutput gathers their completions in index order and is finished
when all of them are.
"""

from __future__ import annotations

from functools import lru_cache

from tessera.engine.request import Request
from tessera.engine.stopping import find_stop_string
from tessera.outputs import CompletionOutput, Logprob, RequestOutput
from tessera.tokenizer import IncrementalDetokenizer


def child_id(parent_id: str, index: int, n: int) -> str:
    return parent_id if n == 1 else f"{parent_id}#{index}"


@lru_cache(maxsize=1 << 17)
def decoded_token(tokenizer, token: int) -> str | None:
    """One token's text (special tokens included), decoded once per tokenizer and id."""
    return tokenizer.decode([token], skip_special_tokens=False) if tokenizer is not None else None


def logprob_entry(ids: list[int], values: list[float], rank: int, tokenizer) -> dict[int, Logprob]:
    """token id -> Logprob for one position: the chosen (or true) token first, then the top ones by rank."""
    entry = {}
    for j, (token, value) in enumerate(zip(ids, values, strict=True)):
        if token in entry:
            continue
        entry[token] = Logprob(value, rank if j == 0 else j, decoded_token(tokenizer, token))
    return entry


def record_logprobs(req: Request, row: tuple | None, tokenizer) -> None:
    """Append the sampled token's logprobs (``row``: its logprobs, ids and rank) when the request asked."""
    if req.logprobs is None or row is None:
        return
    values, ids, rank = row
    n = req.params.logprobs + 1
    req.logprobs.append(logprob_entry(ids[:n], values[:n], rank, tokenizer))
    req.cumulative_logprob += values[0]


def record_prompt_logprobs(req: Request, entries, tokenizer) -> None:
    for position, ids, values, rank in entries:
        req.prompt_logprobs[position] = logprob_entry(ids, values, rank, tokenizer)


def stop_on_string(req: Request, detok: IncrementalDetokenizer) -> bool:
    """Detokenize the new tokens; on a stop string, truncate the text and record the reason."""
    delta = detok.update(req.output_token_ids)
    found = find_stop_string(detok.text, len(delta), req.params)
    if found is None:
        return False
    req.stop_reason, end = found
    detok.text = detok.text[:end]
    req.text = detok.text
    return True


def completion(req: Request, detok: IncrementalDetokenizer) -> CompletionOutput:
    if isinstance(req.stop_reason, str):
        text = req.text  # truncated at the stop string
    elif req.finished:
        text = detok.finish(req.output_token_ids)
    else:
        detok.update(req.output_token_ids)  # the stable text so far; a trailing partial character waits
        text = detok.text
        # the tail that may be the start of a stop string waits too, so a stream never shows text that
        # the stop string later cuts off (vLLM holds back the same)
        hold = max((len(s) for s in req.params.stop or ()), default=1) - 1
        if hold > 0:
            text = text[: max(len(text) - hold, 0)]
    cumulative = req.cumulative_logprob if req.logprobs is not None else None
    return CompletionOutput(req.index, text or "", list(req.output_token_ids), req.finish_reason, req.stop_reason,
                            cumulative, list(req.logprobs) if req.logprobs is not None else None)  # fmt: skip


def request_output(children: list[Request], detoks: dict[str, IncrementalDetokenizer]) -> RequestOutput:
    """One RequestOutput for a prompt, from its n sibling requests."""
    first = children[0]
    outs = [completion(c, detoks[c.request_id]) for c in children]
    error = next((c.error for c in children if c.error), None)
    return RequestOutput(first.parent_id, first.prompt, first.prompt_token_ids, outs, all(c.finished for c in children),
                         first.metrics, error=error, prompt_logprobs=first.prompt_logprobs,
                         num_cached_tokens=first.num_cached_prefix)  # fmt: skip
