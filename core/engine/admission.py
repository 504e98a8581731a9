"""Admission checks: a request's prompt and sampling params, validated before the engine queues it.

Every check raises :class:`~tessera.errors.RequestError` (a ConfigError) naming what was wrong
and what to do, and which request field (``param``) it is about; nothing is queued when one fails.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tessera.engine.generation_config import apply_defaults
from tessera.engine.stopping import limit_params
from tessera.errors import RequestError
from tessera.sampling_params import SamplingParams, to_sampling_params
from tessera.tokenizer import Tokenizer, check_text, require_tokenizer

PROMPT_FORMS = 'a string, a list of token ids, {"prompt_token_ids": [...]} or {"prompt": "..."}'


def token_ids(values, where: str) -> list[int]:
    """``values`` as a list of ints; floats, strings and bools are refused, never truncated."""
    if not isinstance(values, list | tuple):
        raise RequestError(
            f"{where} must be a list of integer token ids, got {type(values).__name__}", "prompt"
        )
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise RequestError(f"{where} must hold integer token ids; item {i} is {v!r} ({type(v).__name__}): "
                               "pass ints (token ids), or pass text as a string prompt", "prompt")  # fmt: skip
    return [int(v) for v in values]


def _encode(tokenizer: Tokenizer, text: str) -> list[int]:
    check_text(text)
    return tokenizer.encode(text)


def parse_prompt(prompt, tokenizer: Tokenizer | None, model_dir: Path) -> tuple[str | None, list[int]]:
    """(prompt text or None, prompt token ids)."""
    if isinstance(prompt, str):
        return prompt, _encode(require_tokenizer(tokenizer, model_dir), prompt)
    if isinstance(prompt, Mapping):
        text = prompt.get("prompt")
        if text is not None and not isinstance(text, str):
            raise RequestError(f'a prompt\'s "prompt" must be a string, got {type(text).__name__}', "prompt")
        if "prompt_token_ids" in prompt:
            return text, token_ids(prompt["prompt_token_ids"], "prompt_token_ids")
        if text is not None:
            return text, _encode(require_tokenizer(tokenizer, model_dir), text)
    elif isinstance(prompt, list | tuple):
        return None, token_ids(prompt, "a prompt given as a list")
    raise RequestError(f"a prompt is {PROMPT_FORMS}, got {type(prompt).__name__}", "prompt")


def check_prompt(ids: list[int], vocab_size: int, max_model_len: int) -> None:
    if not ids:
        raise RequestError("the prompt is empty; give at least one token", "prompt")
    if any(not 0 <= t < vocab_size for t in ids):
        raise RequestError(
            f"prompt token ids must lie in [0, {vocab_size}); got {min(ids)}..{max(ids)}", "prompt"
        )
    if len(ids) >= max_model_len:
        raise RequestError(f"the prompt has {len(ids)} tokens, max_model_len is {max_model_len}: "
                           "shorten it or raise max_model_len", "prompt")  # fmt: skip


def check_fits(total: int, num_blocks: int, block_size: int) -> None:
    """A request of ``total`` tokens must fit the whole cache alone, or it could never run."""
    if -(-total // block_size) > num_blocks:
        raise RequestError(f"a request of {total} tokens needs more KV blocks than the cache has "
                           f"({num_blocks} of {block_size}); lower max_tokens or give the cache more memory")  # fmt: skip


def check_params_tokens(params, vocab_size: int) -> None:
    """Token ids inside the sampling params (``stop_token_ids``, ``logit_bias`` keys) must be in the vocabulary."""
    for what, ids in (
        ("stop_token_ids", params.stop_token_ids),
        ("logit_bias", list(params.logit_bias or ())),
    ):
        bad = sorted(t for t in ids if not 0 <= t < vocab_size)
        if bad:
            raise RequestError(
                f"{what} holds token ids outside the vocabulary [0, {vocab_size}): {bad[:8]}", what
            )
    if params.logprobs is not None and params.logprobs > vocab_size:
        raise RequestError(
            f"logprobs is {params.logprobs}, more than the vocabulary ({vocab_size})", "logprobs"
        )


@dataclass(frozen=True)
class Limits:
    """What admission checks a request against: the model's, the context's and the KV cache's sizes."""

    model_dir: Path
    vocab_size: int
    max_model_len: int
    num_blocks: int
    block_size: int
    generation_defaults: dict = field(default_factory=dict)


def prepare(
    prompt, params, limits: Limits, tokenizer: Tokenizer | None, strict_max_tokens: bool = False
) -> tuple[str | None, list[int], SamplingParams]:
    """(prompt text or None, prompt token ids, sampling params with the checkpoint's defaults and ``max_tokens``
    clamped to the context) of a valid request; an invalid one raises ConfigError. With ``strict_max_tokens``
    (the server's, as OpenAI's API) a ``max_tokens`` past the context is an error instead of clamped. Needs no
    engine: the server's frontend runs it too."""
    params = apply_defaults(to_sampling_params(params), limits.generation_defaults)
    text, ids = parse_prompt(prompt, tokenizer, limits.model_dir)
    check_prompt(ids, limits.vocab_size, limits.max_model_len)
    if (
        strict_max_tokens
        and params.max_tokens is not None
        and len(ids) + params.max_tokens > limits.max_model_len
    ):
        raise RequestError(f"this model's maximum context length is {limits.max_model_len} tokens: the prompt has "
                           f"{len(ids)} and max_tokens asks for {params.max_tokens} more; lower max_tokens to at most "
                           f"{limits.max_model_len - len(ids)} or shorten the prompt", "max_tokens")  # fmt: skip
    check_params_tokens(params, limits.vocab_size)
    wanted = limits.max_model_len if params.max_tokens is None else len(ids) + params.max_tokens
    check_fits(min(wanted, limits.max_model_len), limits.num_blocks, limits.block_size)
    return text, ids, limit_params(params, len(ids), limits.max_model_len)
