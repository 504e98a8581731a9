"""SamplingParams: how one request samples and when it stops (vLLM's names and meanings).

Fields the user leaves unset take the checkpoint's ``generation_config.json``
values where it has them (vLLM's ``generation_config="auto"``): ``temperature``,
``top_p``, ``top_k``, ``min_p``, ``repetition_penalty`` and ``max_new_tokens`` (as
``max_tokens``); see :func:`tessera.engine.generation_config.apply_defaults`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tessera.errors import ConfigError, describe_validation_error
from tessera.pluggable_layers.ops import MAX_LOGPROBS


class SamplingParams(BaseModel):
    """Per-request sampling and stopping. ``temperature=0`` is greedy; ``top_k`` 0 or -1 is off.

    Any finite ``temperature >= 0`` is safe: a tiny one samples like greedy (ties aside); inf and NaN are refused.
    ``max_tokens=None`` means what is left of the context. ``logprobs`` N returns the sampled token's logprob and
    the N most likely ones per output token (``prompt_logprobs`` the same per prompt token), at most
    ``MAX_LOGPROBS``; they are of the model's raw distribution (before penalties, bias and temperature).
    ``n`` completions are sampled per prompt (seeded: reproducible, and different per index).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(1, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = 1.0
    top_k: int = Field(0, ge=-1)
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(1.0, gt=0.0)
    logit_bias: dict[int, float] | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    max_tokens: int | None = 16
    min_tokens: int = Field(0, ge=0)
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    prompt_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True

    @field_validator("temperature", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty",
                     mode="before")  # fmt: skip
    @classmethod
    def _finite(cls, v, info):
        try:
            finite = math.isfinite(float(v))
        except (TypeError, ValueError):
            return v  # not a number: pydantic says so
        if not finite:
            hint = " (0 is greedy)" if info.field_name == "temperature" else ""
            raise ValueError(f"{info.field_name} must be a finite number{hint}, got {v}")
        return v

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_strings(cls, v):
        if v is None:
            return ()
        v = (v,) if isinstance(v, str) else tuple(v)
        if any(not isinstance(s, str) or not s for s in v):
            raise ValueError(f"stop must be a string or a list of non-empty strings, got {v!r}")
        return v

    @field_validator("stop_token_ids", mode="before")
    @classmethod
    def _stop_ids(cls, v):
        return () if v is None else v

    @field_validator("logit_bias")
    @classmethod
    def _bias_range(cls, v):
        if v is None:
            return v
        bad = {k: b for k, b in v.items() if not math.isfinite(b) or not -100.0 <= b <= 100.0}
        if bad:
            raise ValueError(f"logit_bias values must be finite and in [-100, 100], got {bad}")
        if any(k < 0 for k in v):
            raise ValueError(f"logit_bias keys must be token ids >= 0, got {sorted(k for k in v if k < 0)}")
        return v

    @field_validator("top_p")
    @classmethod
    def _top_p_range(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {v}")
        return v

    @field_validator("max_tokens")
    @classmethod
    def _max_tokens_positive(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"max_tokens must be at least 1 (or None: what is left of the context), got {v}")
        return v

    @model_validator(mode="after")
    def _ints_fit_64_bits(self) -> SamplingParams:
        """Every integer travels as a 64-bit one (to the engine core, to tensor-parallel workers, into
        tensors): one that does not fit is refused here, naming it, rather than failing a step later."""
        ints = {"n": self.n, "top_k": self.top_k, "max_tokens": self.max_tokens, "min_tokens": self.min_tokens,
                "seed": self.seed, "stop_token_ids": max(self.stop_token_ids, key=abs, default=None),
                "logit_bias": max(self.logit_bias or (), default=None)}  # fmt: skip
        for name, v in ints.items():
            if v is not None and not -(2**63) <= v < 2**63:
                what = {
                    "stop_token_ids": "token id in stop_token_ids",
                    "logit_bias": "token id in logit_bias",
                }
                raise ValueError(f"{what.get(name, name)} must fit in a signed 64-bit integer, got {v}")
        return self

    @model_validator(mode="after")
    def _min_below_max(self) -> SamplingParams:
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) exceeds max_tokens ({self.max_tokens})")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def uses_penalties(self) -> bool:
        return self.presence_penalty != 0 or self.frequency_penalty != 0 or self.repetition_penalty != 1


def to_sampling_params(value) -> SamplingParams:
    """``value`` as SamplingParams: itself, None (the defaults) or a mapping of its fields, validated."""
    if value is None:
        return SamplingParams()
    if isinstance(value, SamplingParams):
        return value
    if isinstance(value, Mapping):
        try:
            return SamplingParams(**value)
        except (ValidationError, TypeError) as exc:
            detail = describe_validation_error(exc) if isinstance(exc, ValidationError) else str(exc)
            raise ConfigError(f"invalid sampling params {dict(value)!r}: {detail}") from None
    raise ConfigError(
        f"sampling params must be a SamplingParams (or a dict of its fields), got {type(value).__name__}"
    )
