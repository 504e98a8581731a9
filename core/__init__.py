"""Tessera: an LLM inference engine whose every kernel comes from a plugin.

The public API is exported lazily, so that plugins importing the contract
(``tessera.platform``, ``tessera.hookspecs``, ``tessera.pluggable_layers``) never
load the engine, and discovery never meets a half-initialised package.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "LLM": "tessera.llm",
    "LLMEngine": "tessera.engine.llm_engine",
    "SamplingParams": "tessera.sampling_params",
    "RequestOutput": "tessera.outputs",
    "CompletionOutput": "tessera.outputs",
    "Logprob": "tessera.outputs",
    "EngineConfig": "tessera.config",
    "TesseraError": "tessera.errors",
    "Platform": "tessera.platform",
    "select_platform": "tessera.discovery",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tessera' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
