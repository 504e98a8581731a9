"""SamplingParams: how one request samples and when it stops (shaped like vLLM's)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tessera.errors import ConfigError, describe_validation_error


class SamplingParams(BaseModel):
    """Per-request sampling and stopping. ``temperature=0`` is greedy; ``top_k`` 0 or -1 is off.

    Any finite ``temperature >= 0`` is safe: a tiny one samples like greedy (ties aside); inf and NaN are refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(1.0, ge=0.0)
    top_p: float = 1.0
    top_k: int = Field(0, ge=-1)
    max_tokens: int = 16
    min_tokens: int = Field(0, ge=0)
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    seed: int | None = None

    @field_validator("temperature", mode="before")
    @classmethod
    def _temperature_finite(cls, v):
        try:
            finite = math.isfinite(float(v))
        except (TypeError, ValueError):
            return v  # not a number: pydantic says so
        if not finite:
            raise ValueError(f"temperature must be a finite number >= 0 (0 is greedy), got {v}")
        return v

    @field_validator("top_p")
    @classmethod
    def _top_p_range(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {v}")
        return v

    @field_validator("max_tokens")
    @classmethod
    def _max_tokens_positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"max_tokens must be at least 1, got {v}")
        return v

    @model_validator(mode="after")
    def _min_below_max(self) -> SamplingParams:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) exceeds max_tokens ({self.max_tokens})")
        return self

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


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
