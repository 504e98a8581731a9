"""Per-token logprobs in OpenAI's two shapes, from vLLM-shaped entries.

An entry (one per output token) maps token ids to a logprob: a float or an object
with ``.logprob`` (and optionally ``.decoded_token``), the sampled token among them.
"""

from __future__ import annotations

from collections.abc import Mapping


def _value(v) -> float:
    return float(getattr(v, "logprob", v))


def _token(tokenizer, token_id: int, v=None) -> str:
    decoded = getattr(v, "decoded_token", None)
    if decoded is not None:
        return decoded
    return tokenizer.decode([token_id]) if tokenizer is not None else f"token_id:{token_id}"


def _sampled(entry: Mapping, token_id: int) -> float:
    return _value(entry[token_id]) if token_id in entry else float("-inf")


def _top(entry: Mapping, token_id: int) -> list[tuple[int, object]]:
    """The entry's alternatives, best first, without the sampled token unless it is among the best."""
    return sorted(entry.items(), key=lambda kv: -_value(kv[1]))


def completion_logprobs(tokenizer, token_ids: list[int], entries: list, offset: int = 0) -> dict:
    """``/v1/completions``: {"tokens", "token_logprobs", "top_logprobs", "text_offset"}."""
    tokens, values, tops, offsets = [], [], [], []
    for token_id, entry in zip(token_ids, entries, strict=False):
        text = _token(tokenizer, token_id, entry.get(token_id))
        tokens.append(text)
        values.append(_sampled(entry, token_id))
        tops.append({_token(tokenizer, t, v): _value(v) for t, v in _top(entry, token_id)})
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}


def chat_logprobs(tokenizer, token_ids: list[int], entries: list, top_logprobs: int) -> dict:
    """``/v1/chat/completions``: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}, with exactly
    ``top_logprobs`` alternatives per token (the entry also holds the sampled token when it is not among them)."""
    content = []
    for token_id, entry in zip(token_ids, entries, strict=False):
        text = _token(tokenizer, token_id, entry.get(token_id))
        top = [{"token": (s := _token(tokenizer, t, v)), "logprob": _value(v), "bytes": list(s.encode())}
               for t, v in _top(entry, token_id)[:top_logprobs]]  # fmt: skip
        content.append({"token": text, "logprob": _sampled(entry, token_id), "bytes": list(text.encode()),
                        "top_logprobs": top})  # fmt: skip
    return {"content": content}


def prompt_logprobs_json(entries: list) -> list[dict | None]:
    """vLLM's ``prompt_logprobs``: per prompt token (None for the first) {"token id": {"logprob", "rank",
    "decoded_token"}}."""
    return [None if entry is None else {str(t): {"logprob": _value(v), "rank": getattr(v, "rank", None),
                                                 "decoded_token": getattr(v, "decoded_token", None)}
                                        for t, v in entry.items()} for entry in entries]  # fmt: skip
