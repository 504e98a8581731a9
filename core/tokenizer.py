"""Tokenizers: tokenizer.json through the ``tokenizers`` library when present, a byte tokenizer
for checkpoints that declare one, and incremental detokenization for streaming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from tessera.errors import ConfigError


class Tokenizer(Protocol):
    eos_token_id: int | None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens, offset past a few special ids (0 pad, 1 bos, 2 eos)."""

    OFFSET = 3

    def __init__(self, bos_token_id: int | None = 1, eos_token_id: int | None = 2) -> None:
        self.bos_token_id, self.eos_token_id = bos_token_id, eos_token_id

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [b + self.OFFSET for b in text.encode("utf-8")]
        bos = [self.bos_token_id] if self.bos_token_id is not None and add_special_tokens else []
        return bos + ids

    def decode(self, ids: list[int]) -> str:
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

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)


def read_tokenizer_config(path: Path) -> dict:
    """tokenizer_config.json as a dict ({} when absent); a malformed file is a clear ModelLoadError."""
    from tessera.models.spec_check import ModelLoadError, is_int

    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}; fix the JSON or remove the file") from None
    if not isinstance(config, dict):
        raise ModelLoadError(
            f"{path} must hold a JSON object, got {type(config).__name__}; fix or remove the file"
        )
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
    """Text of a growing token list, emitted in deltas that never split a multi-byte character."""

    def __init__(self, tokenizer: Tokenizer | None) -> None:
        self.tokenizer = tokenizer
        self.text = ""

    def update(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            return ""
        full = self.tokenizer.decode(ids)
        stable = full[:-1] if full.endswith("\ufffd") else full
        delta = stable[len(self.text) :] if stable.startswith(self.text) else stable
        self.text = stable
        return delta

    def finish(self, ids: list[int]) -> str:
        if self.tokenizer is not None:
            self.text = self.tokenizer.decode(ids)
        return self.text
