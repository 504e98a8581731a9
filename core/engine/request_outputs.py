"""From requests to RequestOutputs: logprobs, stop strings on the detokenized text, n completions per prompt.

A prompt with ``n > 1`` runs as ``n`` sibling requests (ids ``"<id>#<i>"``) sharing the
prompt; its RequestOutput gathers their completions in index order and is finished
when all of them are. A RequestOutput is cumulative (:func:`request_output`, what ``LLM.generate``
returns) or a delta (:func:`request_delta`, what the engine core streams): only what is new since the
prompt's last delta, built without copying what came before, so a step's cost does not grow with the
output already produced.
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
    first = ids[0]
    entry = {first: Logprob(values[0], rank, decoded_token(tokenizer, first))}
    for j in range(1, len(ids)):
        token = ids[j]
        if token not in entry:
            entry[token] = Logprob(values[j], j, decoded_token(tokenizer, token))
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


def stop_on_string(req: Request, detok: IncrementalDetokenizer, search: bool = True) -> bool:
    """Detokenize the new tokens; with ``search`` (min_tokens reached), on a stop string in their text
    truncate the text and record the reason. Text from before min_tokens is never searched again, as
    in vLLM: a stop string that appeared before it does not end the request later."""
    delta = detok.update(req.output_token_ids)
    if not search:
        return False
    found = find_stop_string(detok.text, len(delta), req.params)
    if found is None:
        return False
    req.stop_reason, end = found
    detok.text = detok.text[:end]
    req.text = detok.text
    return True


def stable_end(req: Request, detok: IncrementalDetokenizer) -> int:
    """Detokenize the new tokens of an unfinished request; the length of its text a caller may be shown.

    A trailing partial character waits (in the detokenizer), and so does the tail that may be the start of
    a stop string, so a stream never shows text that the stop string later cuts off (vLLM holds back the same).
    """
    detok.update(req.output_token_ids)
    hold = max((len(s) for s in req.params.stop or ()), default=1) - 1
    return max(len(detok.text) - hold, 0) if hold > 0 else len(detok.text)


def completion(req: Request, detok: IncrementalDetokenizer) -> CompletionOutput:
    if isinstance(req.stop_reason, str):
        text = req.text  # truncated at the stop string
    elif req.finished:
        text = detok.finish(req.output_token_ids)
    else:
        end = stable_end(req, detok)  # before reading detok.text: it adds the new tokens' text
        text = detok.text[:end]
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


# -- deltas: what is new since the last output, without copying what came before ----------------------------
def final_text(req: Request, detok: IncrementalDetokenizer) -> str:
    """The text of a finished request: cut at its stop string, else the whole output decoded (once)."""
    if isinstance(req.stop_reason, str):
        return req.text
    if req.final_text is None:
        req.final_text = detok.finish(req.output_token_ids)
    return req.final_text


def completion_delta(req: Request, detok: IncrementalDetokenizer) -> CompletionOutput:
    """The part of :func:`completion` not returned yet (text, token ids, logprobs); O(what is new)."""
    if req.finished:
        text = final_text(req, detok)
        end = len(text)
    else:
        end = stable_end(req, detok)
        text = detok.text
    new_text, req.sent_text = text[req.sent_text : end], end
    ids, req.sent_tokens = req.output_token_ids[req.sent_tokens :], len(req.output_token_ids)
    logprobs = None
    if req.logprobs is not None:
        logprobs, req.sent_logprobs = req.logprobs[req.sent_logprobs :], len(req.logprobs)
    cumulative = req.cumulative_logprob if req.logprobs is not None else None
    return CompletionOutput(
        req.index, new_text, ids, req.finish_reason, req.stop_reason, cumulative, logprobs
    )


def request_delta(children: list[Request], detoks: dict[str, IncrementalDetokenizer]) -> RequestOutput:
    """A prompt's RequestOutput holding what is new since its last delta, for each of its n completions;
    ``prompt_logprobs`` comes once, with the first output tokens (or the end)."""
    first = children[0]
    outs = [completion_delta(c, detoks[c.request_id]) for c in children]
    finished = all(c.finished for c in children)
    prompt_logprobs = None
    if (first.prompt_logprobs is not None and not first.sent_prompt_logprobs
            and (finished or any(c.output_token_ids for c in children))):  # fmt: skip
        first.sent_prompt_logprobs, prompt_logprobs = True, first.prompt_logprobs
    error = next((c.error for c in children if c.error), None)
    return RequestOutput(first.parent_id, first.prompt, first.prompt_token_ids, outs, finished, first.metrics,
                         error=error, prompt_logprobs=prompt_logprobs, num_cached_tokens=first.num_cached_prefix)  # fmt: skip
