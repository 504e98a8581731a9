"""Tiny random Hugging Face checkpoints written by transformers itself (the test oracle).

``write_tiny_checkpoint(arch, path)`` builds the architecture's config at a toy
size, initializes random weights with a fixed seed, and saves config.json plus
safetensors with ``save_pretrained``. transformers is a test-only dependency.
"""

from __future__ import annotations

from pathlib import Path

import torch

COMMON = dict(vocab_size=211, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False)  # fmt: skip


def tiny_config(arch: str, **overrides):
    config = _tiny_config(arch)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def _tiny_config(arch: str):
    import transformers as tf

    if arch == "llama":
        return tf.LlamaConfig(**COMMON, rope_theta=10000.0, head_dim=16)
    if arch == "llama3":
        scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 64}  # fmt: skip
        return tf.LlamaConfig(
            **{**COMMON, "tie_word_embeddings": True}, rope_theta=500000.0, rope_scaling=scaling
        )
    if arch == "qwen2":
        return tf.Qwen2Config(**COMMON, rope_theta=10000.0)
    if arch == "qwen3":
        return tf.Qwen3Config(**COMMON, head_dim=32, rope_theta=10000.0)
    if arch == "qwen3_moe":
        return tf.Qwen3MoeConfig(**COMMON, head_dim=16, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                                 decoder_sparse_step=1, mlp_only_layers=[1], norm_topk_prob=True, rope_theta=10000.0)  # fmt: skip
    if arch == "bamba":
        return tf.BambaConfig(**COMMON, attn_layer_indices=[1], mamba_n_heads=8, mamba_d_head=16, mamba_n_groups=2,
                              mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=16)  # fmt: skip
    raise ValueError(f"no tiny config for {arch!r}")


ARCHITECTURES = ("llama", "llama3", "qwen2", "qwen3", "qwen3_moe", "bamba")


def write_tiny_checkpoint(arch: str, path: Path, seed: int = 0, **overrides) -> Path:
    import transformers as tf

    torch.manual_seed(seed)
    config = tiny_config(arch, **overrides)
    model = tf.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log"):
                p.copy_(torch.log(torch.rand_like(p) * 4 + 0.5))
            elif "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(("dt_bias", ".D")):
                p.copy_(torch.rand_like(p))
            else:
                p.normal_(0.0, 0.08)
    model.save_pretrained(path, safe_serialization=True)
    return Path(path)
