"""Tokenizers: tokenizer.json through the ``tokenizers`` library when present, a byte tokenizer
for checkpoints that declare one, and incremental detokenization for streaming."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from tessera.errors import ConfigError


class Tokenizer(Protocol):
    eos_token_id: int | None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens, offset past a few special ids (0 pad, 1 bos, 2 eos)."""

    OFFSET = 3

    def __init__(self, bos_token_id: int | None = 1, eos_token_id: int | None = 2) -> None:
        self.bos_token_id, self.eos_token_id = bos_token_id, eos_token_id

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [b + self.OFFSET for b in text.encode("utf-8")]
        bos = [self.bos_token_id] if self.bos_token_id is not None and add_special_tokens else []
        return bos + ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        """The bytes' text; the special ids (below the offset) are dropped: they have no text."""
        data = bytes(i - self.OFFSET for i in ids if self.OFFSET <= i < self.OFFSET + 256)
        return data.decode("utf-8", errors="replace")


class HFTokenizer:
    """A tokenizer.json through the ``tokenizers`` library."""

    def __init__(self, path: Path, eos_token_id: int | None) -> None:
        from tokenizers import Tokenizer as _Tok

        self._tok = _Tok.from_file(str(path))
        self.eos_token_id = eos_token_id

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        """As transformers decodes: special tokens (added tokens marked special) dropped unless asked for."""
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def decode_stream(self, skip_special_tokens: bool):
        """A ``tokenizers.decoders.DecodeStream`` stepping over this tokenizer, or None where it is missing."""
        try:
            from tokenizers.decoders import DecodeStream
        except ImportError:
            return None
        stream = DecodeStream(skip_special_tokens=skip_special_tokens)
        return lambda token: stream.step(self._tok, token)


def read_tokenizer_config(path: Path) -> dict:
    """tokenizer_config.json as a dict ({} when absent); a malformed file is a clear ModelLoadError."""
    from tessera.models.spec_check import ModelLoadError, is_int, read_json_object

    config = read_json_object(path)
    for key in ("tokenizer_class",):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise ModelLoadError(
                f"{path}: {key} is {config[key]!r}; it must be a string (a tokenizer class name)"
            )
    bos = config.get("bos_token_id")
    if bos is not None and not is_int(bos):
        raise ModelLoadError(f"{path}: bos_token_id is {bos!r}; it must be an integer token id or null")
    return config


def load_tokenizer(model_dir: Path, eos_token_id: int | None) -> Tokenizer | None:
    """The model's tokenizer, or None (then only token-id prompts are accepted)."""
    config = read_tokenizer_config(model_dir / "tokenizer_config.json")
    if config.get("tokenizer_class") == "TesseraByteTokenizer":
        return ByteTokenizer(config.get("bos_token_id", 1), eos_token_id)
    if (model_dir / "tokenizer.json").is_file():
        try:
            return HFTokenizer(model_dir / "tokenizer.json", eos_token_id)
        except ImportError:
            return None
    return None


def require_tokenizer(tokenizer: Tokenizer | None, model_dir: Path) -> Tokenizer:
    if tokenizer is None:
        raise ConfigError(
            f"{model_dir} has no usable tokenizer (tokenizer.json needs `pip install tokenizers`); "
            'pass prompts as {"prompt_token_ids": [...]} instead of text'
        )
    return tokenizer


class IncrementalDetokenizer:
    """Text of a growing token list, in deltas that never split a multi-byte character.

    Each new token is decoded once: through ``tokenizers.decoders.DecodeStream`` for a
    tokenizer.json, else by the offset method (decode a few tokens before the new ones
    and keep what they add; a trailing U+FFFD means an unfinished character, which
    waits for the next token). :meth:`finish` decodes the whole output once, so the final
    text equals ``tokenizer.decode(ids)`` exactly (special tokens skipped as transformers does).
    """

    CONTEXT = 6  # tokens decoded before the new ones by the offset method

    def __init__(self, tokenizer: Tokenizer | None, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        self.text = ""
        self.num_read = 0  # tokens whose text is in self.text (or pending in the stream)
        self._prefix = 0  # offset method: first token of the context window
        self._read_end = 0  # offset method: tokens whose text has been emitted
        make = getattr(tokenizer, "decode_stream", None)
        self._step = make(skip_special_tokens) if make is not None else None

    def update(self, ids: list[int]) -> str:
        """Add the tokens of ``ids`` not seen yet; returns the text they completed."""
        if self.tokenizer is None:
            return ""
        new = ids[self.num_read :]
        self.num_read = len(ids)
        delta = "".join(c for c in map(self._step, new) if c) if self._step else self._offset_delta(ids)
        self.text += delta
        return delta

    def _offset_delta(self, ids: list[int]) -> str:
        before = self.tokenizer.decode(ids[self._prefix : self._read_end], self.skip)
        after = self.tokenizer.decode(ids[self._prefix :], self.skip)
        if after.endswith("\ufffd") or not after.startswith(before):
            return ""  # an unfinished character: wait for more tokens
        self._read_end = len(ids)
        self._prefix = max(0, len(ids) - self.CONTEXT)
        return after[len(before) :]

    def finish(self, ids: list[int]) -> str:
        if self.tokenizer is not None:
            self.text = self.tokenizer.decode(ids, self.skip)
        return self.text


def check_text(text: str, what: str = "the prompt", param: str | None = "prompt") -> None:
    """``text`` must be text a tokenizer can encode: a lone surrogate (what undecodable bytes or JSON's ``\\ud800``
    escape leave in a str) is refused with a RequestError saying where (``param``: the request field)."""
    if text.isascii():  # no surrogate possible, and no copy made to find out
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        from tessera.errors import RequestError

        raise RequestError(f"{what} is not valid text: {exc.object[exc.start:exc.end]!r} at character {exc.start} "
                           "is a lone surrogate; pass Unicode text (decode bytes as UTF-8 first)", param) from None  # fmt: skip
