"""The checks a config.json passes before a ModelSpec is built: types and ranges of the fields models read.

Each problem raises :class:`ModelLoadError` naming the file, the field, the bad
value and what to write instead. A null value counts as absent (the model's
default applies, or a required field is reported missing where it is read).
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import Any

from tessera.errors import TesseraError


class ModelLoadError(TesseraError):
    """The model directory, its config or its weights cannot be used."""


POSITIVE_INTS = ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size", "intermediate_size",
                 "num_key_value_heads", "head_dim", "max_position_embeddings", "moe_intermediate_size",
                 "num_experts_per_tok", "mamba_n_heads", "mamba_d_state", "mamba_d_conv", "mamba_chunk_size",
                 "mamba_expand", "mamba_n_groups", "decoder_sparse_step", "sliding_window")  # fmt: skip
NON_NEGATIVE_INTS = ("num_experts", "num_local_experts")
POSITIVE_NUMBERS = ("rms_norm_eps", "rope_theta", "partial_rotary_factor")
BOOLS = ("attention_bias", "mlp_bias", "tie_word_embeddings", "norm_topk_prob", "use_sliding_window",
         "mamba_conv_bias", "mamba_proj_bias")  # fmt: skip
INT_LISTS = ("attn_layer_indices", "mlp_only_layers")
STRINGS = ("model_type", "torch_dtype", "dtype")
MAPPINGS = ("rope_scaling", "rope_parameters")


def read_json_object(path: Path) -> dict[str, Any]:
    """A checkpoint's optional JSON file as a dict ({} when absent); unreadable JSON or anything but an
    object is a ModelLoadError naming the file."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}; fix the JSON or remove the file") from None
    if not isinstance(data, dict):
        raise ModelLoadError(
            f"{path} must hold a JSON object, got {type(data).__name__}; fix or remove the file"
        )
    return data


def is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _kind_problem(key: str, v: Any) -> str | None:
    """What is wrong with a present, non-null value, or None."""
    if key in POSITIVE_INTS and not (is_int(v) and v > 0):
        return "a positive integer"
    if key in NON_NEGATIVE_INTS and not (is_int(v) and v >= 0):
        return "an integer >= 0"
    if key in POSITIVE_NUMBERS and not (is_number(v) and v > 0):
        return "a positive number"
    if key in BOOLS and not isinstance(v, bool):
        return "true or false"
    if key in INT_LISTS and not (isinstance(v, list) and all(is_int(i) for i in v)):
        return "a list of integers"
    if key in STRINGS and not isinstance(v, str):
        return "a string"
    if key in MAPPINGS and not isinstance(v, dict):
        return "an object"
    if key == "eos_token_id" and not (is_int(v) or (isinstance(v, list) and all(is_int(i) for i in v))):
        return "a token id or a list of token ids"
    if key == "mamba_d_head" and not (v == "auto" or (is_int(v) and v > 0)):
        return 'a positive integer or "auto"'
    return None


def _architectures_problem(v: Any) -> str | None:
    if isinstance(v, str):
        return f'a list of names, not a string: write ["{v}"]'
    if not isinstance(v, list) or not all(isinstance(a, str) and a for a in v):
        return 'a list of architecture names such as ["LlamaForCausalLM"]'
    return None


def check_config(raw: Any, file: Path) -> dict[str, Any]:
    """``raw`` (the parsed config.json) if every field models read has a usable value; else ModelLoadError."""
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{file} must hold a JSON object of model settings, got {type(raw).__name__}; "
                             "is it the checkpoint's Hugging Face config.json?")  # fmt: skip
    for key, value in raw.items():
        if value is None:
            continue
        wanted = _architectures_problem(value) if key == "architectures" else _kind_problem(key, value)
        if wanted is not None:
            raise ModelLoadError(f"{file}: {key} is {value!r} ({type(value).__name__}); it must be {wanted}. "
                                 "Fix the file (the model's Hugging Face config has the right value)")  # fmt: skip
    _check_heads(raw, file)
    return raw


def _check_heads(raw: dict[str, Any], file: Path) -> None:
    heads, kv = raw.get("num_attention_heads"), raw.get("num_key_value_heads")
    if heads is not None and kv is not None and heads % kv:
        raise ModelLoadError(f"{file}: num_attention_heads ({heads}) must be a multiple of num_key_value_heads "
                             f"({kv}); fix the file")  # fmt: skip
    hidden = raw.get("hidden_size")
    if heads is not None and hidden is not None and raw.get("head_dim") is None and hidden % heads:
        raise ModelLoadError(f"{file}: hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads}) "
                             "and no head_dim is given; add head_dim or fix the sizes")  # fmt: skip
