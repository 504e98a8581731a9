"""Model presets from the real models' configs, for benchmarks with random weights (no download).

``preset_dir(name)`` writes the preset's config.json into the cache and returns
the folder; run it with ``load_format="random"``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tessera.errors import ConfigError
from tessera.models.random_checkpoint import TINY_CONFIGS
from tessera.paths import cache_dir

LLAMA3_8B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 128, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "tie_word_embeddings": False, "bos_token_id": 128000, "eos_token_id": 128001, "torch_dtype": "bfloat16",
}  # fmt: skip
QWEN3_06B = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 1024,
    "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
    "head_dim": 128, "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "tie_word_embeddings": True, "eos_token_id": 151645, "torch_dtype": "bfloat16",
}  # fmt: skip
QWEN3_30B_A3B_24L = {
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "vocab_size": 151936, "hidden_size": 2048,
    "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8,
    "norm_topk_prob": True, "decoder_sparse_step": 1, "mlp_only_layers": [], "num_hidden_layers": 24,
    "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": False, "eos_token_id": 151645,
    "torch_dtype": "bfloat16",
}  # fmt: skip
BAMBA_9B = {
    "architectures": ["BambaForCausalLM"], "model_type": "bamba", "vocab_size": 128256, "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "attn_layer_indices": [9, 18, 27], "mamba_n_heads": 128, "mamba_d_head": 64, "mamba_n_groups": 1,
    "mamba_d_state": 128, "mamba_d_conv": 4, "mamba_expand": 2, "mamba_chunk_size": 256, "mamba_conv_bias": True,
    "mamba_proj_bias": False, "max_position_embeddings": 262144, "rms_norm_eps": 1e-5,
    "rope_parameters": {"rope_theta": 10000.0, "partial_rotary_factor": 0.5}, "tie_word_embeddings": False,
    "eos_token_id": 128001, "torch_dtype": "bfloat16",
}  # fmt: skip

PRESETS = {
    "llama3-8b": LLAMA3_8B, "qwen3-0.6b": QWEN3_06B, "qwen3-30b-a3b-24l": QWEN3_30B_A3B_24L, "bamba-9b": BAMBA_9B,
    **{f"tiny-{name}": config for name, config in TINY_CONFIGS.items()},
}  # fmt: skip


def preset_dir(name: str) -> Path:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    folder = cache_dir() / "presets" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(PRESETS[name], indent=2))
    return folder
