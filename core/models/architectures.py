"""Architecture name (config.json "architectures") -> model class."""

from __future__ import annotations

import importlib

from tessera.models.spec import ModelLoadError, ModelSpec

ARCHITECTURES = {
    "LlamaForCausalLM": "tessera.models.llama:LlamaForCausalLM",
    "MistralForCausalLM": "tessera.models.llama:LlamaForCausalLM",
    "Qwen2ForCausalLM": "tessera.models.llama:LlamaForCausalLM",
    "Qwen3ForCausalLM": "tessera.models.llama:Qwen3ForCausalLM",
    "Qwen3MoeForCausalLM": "tessera.models.qwen3_moe:Qwen3MoeForCausalLM",
    "BambaForCausalLM": "tessera.models.bamba:BambaForCausalLM",
}


def model_class(spec: ModelSpec):
    arch = spec.architecture
    target = ARCHITECTURES.get(arch)
    if target is None:
        raise ModelLoadError(
            f"architecture {arch!r} is not supported; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)
