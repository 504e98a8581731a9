"""Engine configuration: validated, frozen pydantic models. Derived runtime values live elsewhere
(:class:`tessera.models.hf_config.ModelSpec`, the KV-cache plan)."""

from __future__ import annotations

import importlib.util
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DTYPES = ("auto", "float32", "float16", "bfloat16")
#: What ``dtype="auto"`` takes when the checkpoint's own dtype is not supported, best first.
PREFERRED_DTYPES = ("bfloat16", "float16", "float32")


def auto_dtype(checkpoint_dtype: str | None, supported: tuple[str, ...] | list[str]) -> str:
    """The dtype ``dtype="auto"`` runs: the checkpoint's own where the platform supports it, else the
    best supported one (bfloat16, then float16, then float32)."""
    if checkpoint_dtype in supported:
        return checkpoint_dtype
    return next(d for d in PREFERRED_DTYPES if d in supported)


def run_dtype(requested: str, checkpoint_dtype: str | None, supported: tuple[str, ...] | list[str]) -> str:
    """The dtype an engine runs: ``requested``, or with "auto" the :func:`auto_dtype`."""
    if requested == "auto":
        return auto_dtype(checkpoint_dtype, supported)
    if requested not in supported:
        from tessera.errors import PlatformError

        raise PlatformError(f"dtype {requested} is not supported on this platform (supported: {', '.join(supported)}); "
                            "pick one of those or dtype='auto'")  # fmt: skip
    return requested


class EngineConfig(BaseModel):
    """Everything ``LLM(...)`` and ``tessera generate`` accept. Invalid values raise with the field named."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model: str = Field(description="directory with config.json and *.safetensors")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    platform: str | None = None
    device_index: int = Field(0, ge=0)
    max_model_len: int | Literal["auto"] = "auto"
    max_num_seqs: int = Field(64, ge=1)
    max_num_batched_tokens: int = Field(4096, ge=1)
    block_size: int = Field(16, ge=1, le=1024)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    kv_cache_bytes: int | None = Field(
        None, gt=0, description="KV/state cache budget in bytes (default on CPU: 1 GiB)"
    )
    num_kv_blocks: int | None = Field(
        None, gt=0, description="exact number of KV blocks (testing, benchmarking)"
    )
    enable_prefix_caching: bool = True
    prefix_hash: Literal["sha256", "xxhash"] = "sha256"
    async_scheduling: bool = True
    enforce_eager: bool = False
    warmup: Literal["auto", "full", "off"] = Field(
        "auto",
        description="run every batch shape and sampling variant once at startup so no request compiles "
        "(auto: on platforms with graphs, whose kernels compile per shape)",
    )
    seed: int = 0
    kernel_overrides: dict[str, str] = Field(default_factory=dict)
    quantization: Literal["fp8"] | None = None
    tensor_parallel_size: int = Field(
        1,
        ge=1,
        description="worker processes (one per device) the model is split over; 1 runs in this process",
    )
    enable_expert_parallel: bool = Field(
        False,
        description="with tensor_parallel_size > 1, MoE layers hold whole experts per rank (E / N each)",
    )
    load_format: Literal["safetensors", "random"] = Field(
        "safetensors",
        description="random: seeded random weights created on the device (benchmarks; needs only config.json)",
    )

    @field_validator("max_model_len")
    @classmethod
    def _positive_len(cls, v):
        if v != "auto" and v < 1:
            raise ValueError(f"max_model_len must be positive or 'auto', got {v}")
        return v

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"block_size must be a power of two, got {v}")
        return v

    @model_validator(mode="after")
    def _xxhash_installed(self) -> EngineConfig:
        if self.prefix_hash == "xxhash" and importlib.util.find_spec("xxhash") is None:
            raise ValueError(
                "prefix_hash='xxhash' needs the xxhash package: pip install xxhash (or use 'sha256')"
            )
        return self
