"""ModelSpec: a Hugging Face config.json read once, with the lookups every model needs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.errors import ConfigError
from tessera.models.spec_check import ModelLoadError, check_config

__all__ = ["ModelLoadError", "ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    path: Path
    raw: dict[str, Any]

    @classmethod
    def from_dir(cls, path: str | Path) -> ModelSpec:
        path = Path(path)
        if not path.is_dir():
            raise ModelLoadError(
                f"model directory {str(path)!r} does not exist; pass a folder with config.json and *.safetensors"
            )
        config = path / "config.json"
        try:
            raw = json.loads(config.read_text())
        except FileNotFoundError:
            raise ModelLoadError(
                f"{path} has no config.json; is it a Hugging Face checkpoint folder?"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot read {config}: {exc}") from None
        return cls(path=path, raw=check_config(raw, config))

    def get(self, *keys: str, default: Any = None) -> Any:
        for key in keys:
            if key in self.raw and self.raw[key] is not None:
                return self.raw[key]
        return default

    def require(self, *keys: str) -> Any:
        value = self.get(*keys)
        if value is None:
            raise ConfigError(f"{self.path}/config.json lacks {' or '.join(keys)} (missing or null); "
                              "add it from the model's Hugging Face config")  # fmt: skip
        return value

    @property
    def architecture(self) -> str:
        archs = self.get("architectures") or []
        if not archs:
            raise ModelLoadError(
                f"{self.path}/config.json names no architecture ('architectures' is missing)"
            )
        return archs[0]

    @property
    def hidden_size(self) -> int:
        return int(self.require("hidden_size"))

    @property
    def num_heads(self) -> int:
        return int(self.require("num_attention_heads"))

    @property
    def num_kv_heads(self) -> int:
        return int(self.get("num_key_value_heads", default=self.num_heads))

    @property
    def head_dim(self) -> int:
        return int(self.get("head_dim", default=self.hidden_size // self.num_heads))

    @property
    def vocab_size(self) -> int:
        return int(self.require("vocab_size"))

    @property
    def num_layers(self) -> int:
        return int(self.require("num_hidden_layers"))

    @property
    def max_position(self) -> int:
        return int(self.get("max_position_embeddings", default=4096))

    @property
    def torch_dtype(self) -> str | None:
        return self.get("torch_dtype", "dtype")

    @property
    def eos_token_ids(self) -> list[int]:
        eos = self.get("eos_token_id")
        return [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))

    def rope(self, default_partial: float = 1.0) -> dict[str, Any]:
        """theta, scaling dict and partial rotary factor, from the v4 or v5 config layout.

        ``default_partial`` is the architecture's factor when the config states none
        (Bamba rotates half of each head and older configs do not say so).
        """
        params = dict(self.get("rope_parameters") or {})
        scaling = dict(self.get("rope_scaling") or {})
        theta = float(params.get("rope_theta", self.get("rope_theta", default=10000.0)))
        kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
        merged = {**scaling, **params, "rope_type": kind}
        partial = float(
            params.get("partial_rotary_factor", self.get("partial_rotary_factor", default=default_partial))
        )
        return {"theta": theta, "scaling": merged, "partial_rotary_factor": partial}
