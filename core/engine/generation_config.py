"""generation_config.json: the checkpoint's EOS ids and default sampling values (vLLM's ``"auto"``).

- EOS: every id of ``config.json``'s ``eos_token_id`` (an int or a list) and of
  ``generation_config.json``'s, in that order, without repeats; any of them ends a
  request (Llama-3-Instruct ends a turn with ``<|eot_id|>``, its second or third).
- Defaults: ``temperature``, ``top_p``, ``top_k``, ``min_p``, ``repetition_penalty``
  and ``max_new_tokens`` (as ``max_tokens``) from generation_config.json apply to
  every request that leaves the field unset (``SamplingParams.model_fields_set``);
  a field the user set always wins. ``do_sample`` is not read, as in vLLM.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from tessera.errors import ConfigError
from tessera.models.spec_check import ModelLoadError, is_int, is_number, read_json_object
from tessera.sampling_params import SamplingParams

DEFAULTS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
            "repetition_penalty": "repetition_penalty", "max_new_tokens": "max_tokens"}  # fmt: skip


def read_generation_config(model_dir: Path) -> dict:
    """generation_config.json as a dict ({} when absent); malformed values are a clear ModelLoadError."""
    path = Path(model_dir) / "generation_config.json"
    config = read_json_object(path)
    eos = config.get("eos_token_id")
    if eos is not None and not (is_int(eos) or (isinstance(eos, list) and all(is_int(i) for i in eos))):
        raise ModelLoadError(f"{path}: eos_token_id is {eos!r}; it must be a token id or a list of them")
    for key in DEFAULTS:
        if config.get(key) is not None and not is_number(config[key]):
            raise ModelLoadError(f"{path}: {key} is {config[key]!r}; it must be a number")
    return config


def as_ids(value) -> list[int]:
    return [] if value is None else [int(value)] if is_int(value) else [int(v) for v in value]


def eos_token_ids(config_eos: list[int], generation: dict) -> tuple[int, ...]:
    """config.json's EOS ids, then generation_config.json's, each once."""
    return tuple(dict.fromkeys([*config_eos, *as_ids(generation.get("eos_token_id"))]))


def default_values(generation: dict) -> dict:
    """The SamplingParams fields generation_config.json gives defaults for."""
    return {field: generation[key] for key, field in DEFAULTS.items() if generation.get(key) is not None}


def apply_defaults(params: SamplingParams, defaults: dict) -> SamplingParams:
    """``params`` with the checkpoint's defaults in every field the user did not set."""
    update = {k: v for k, v in defaults.items() if k not in params.model_fields_set}
    if not update:
        return params
    try:
        return SamplingParams(**{**params.model_dump(exclude_unset=True), **update})
    except ValidationError as exc:
        raise ConfigError(
            f"generation_config.json's defaults {update} are not valid sampling params: {exc}"
        ) from None
