"""Random Hugging Face-layout checkpoints of every supported architecture, without transformers.

Used by the conformance suite's model level and by benchmarks: a config.json
and a model.safetensors with the tensor names and shapes the architecture's
checkpoints have, filled from a seeded generator.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

BASE = {"vocab_size": 257, "hidden_size": 128, "intermediate_size": 192, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 32, "max_position_embeddings": 1024, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "tie_word_embeddings": False, "eos_token_id": 2, "torch_dtype": "float32"}  # fmt: skip

TINY_CONFIGS = {
    "llama": {**BASE, "architectures": ["LlamaForCausalLM"], "model_type": "llama"},
    "qwen3": {**BASE, "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"},
    "qwen3_moe": {**BASE, "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "num_experts": 16,
                  "num_experts_per_tok": 4, "moe_intermediate_size": 64, "mlp_only_layers": [1], "decoder_sparse_step": 1,
                  "norm_topk_prob": True},
    "bamba": {**BASE, "architectures": ["BambaForCausalLM"], "model_type": "bamba", "attn_layer_indices": [1],
              "mamba_n_heads": 8, "mamba_d_head": 32, "mamba_n_groups": 1, "mamba_d_state": 32, "mamba_d_conv": 4,
              "mamba_expand": 2, "mamba_chunk_size": 32, "rope_parameters": {"rope_theta": 10000.0, "partial_rotary_factor": 0.5}},
}  # fmt: skip


def tensor_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Hugging Face tensor names and shapes for ``config`` (one of the supported architectures)."""
    arch = config["architectures"][0]
    h, v, inter = config["hidden_size"], config["vocab_size"], config["intermediate_size"]
    d = config.get("head_dim", h // config["num_attention_heads"])
    q, kv = config["num_attention_heads"] * d, config["num_key_value_heads"] * d
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h), "lm_head.weight": (v, h)}
    shapes["model.final_layernorm.weight" if arch == "BambaForCausalLM" else "model.norm.weight"] = (h,)
    attn_layers = set(config.get("attn_layer_indices") or [])
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        mlp = "feed_forward" if arch == "BambaForCausalLM" else "mlp"
        if arch != "BambaForCausalLM" or i in attn_layers:
            shapes |= {p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
                       p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q)}  # fmt: skip
        if arch in ("Qwen3ForCausalLM", "Qwen3MoeForCausalLM"):
            shapes |= {p + "self_attn.q_norm.weight": (d,), p + "self_attn.k_norm.weight": (d,)}
        if arch == "BambaForCausalLM" and i not in attn_layers:
            heads, hd, n, g = (
                config["mamba_n_heads"],
                config["mamba_d_head"],
                config["mamba_d_state"],
                config["mamba_n_groups"],
            )
            mi = heads * hd
            conv = mi + 2 * g * n
            shapes |= {p + "mamba.in_proj.weight": (mi + conv + heads, h), p + "mamba.conv1d.weight": (conv, 1, config["mamba_d_conv"]),
                       p + "mamba.conv1d.bias": (conv,), p + "mamba.dt_bias": (heads,), p + "mamba.A_log": (heads,),
                       p + "mamba.D": (heads,), p + "mamba.norm.weight": (mi,), p + "mamba.out_proj.weight": (h, mi)}  # fmt: skip
        sparse = arch == "Qwen3MoeForCausalLM" and i not in (config.get("mlp_only_layers") or [])
        if sparse:
            e, mi = config["num_experts"], config["moe_intermediate_size"]
            shapes[p + "mlp.gate.weight"] = (e, h)
            for x in range(e):
                shapes |= {f"{p}mlp.experts.{x}.gate_proj.weight": (mi, h), f"{p}mlp.experts.{x}.up_proj.weight": (mi, h),
                           f"{p}mlp.experts.{x}.down_proj.weight": (h, mi)}  # fmt: skip
        else:
            shapes |= {f"{p}{mlp}.gate_proj.weight": (inter, h), f"{p}{mlp}.up_proj.weight": (inter, h),
                       f"{p}{mlp}.down_proj.weight": (h, inter)}  # fmt: skip
        norms = (
            ("input_layernorm", "pre_ff_layernorm")
            if arch == "BambaForCausalLM"
            else ("input_layernorm", "post_attention_layernorm")
        )
        shapes |= {p + n + ".weight": (h,) for n in norms}
    return shapes


def random_tensors(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in tensor_shapes(config).items():
        if name.endswith("A_log"):
            out[name] = torch.log(torch.rand(shape, generator=g) * 4 + 0.5)
        elif name.endswith(("dt_bias", ".D")) or "norm" in name:
            out[name] = (
                1.0 + 0.1 * torch.randn(shape, generator=g)
                if "norm" in name
                else torch.rand(shape, generator=g)
            )
        else:
            fan_in = shape[-1] if len(shape) > 1 else 1
            out[name] = torch.randn(shape, generator=g) * (
                1.0 if "embed" in name else min(0.08, 1.5 * fan_in**-0.5)
            )
    return out


def write_random_checkpoint(arch: str, path: str | Path, seed: int = 0, **overrides) -> Path:
    from safetensors.torch import save_file

    if arch not in TINY_CONFIGS:
        raise ValueError(f"no tiny config for {arch!r}; known: {', '.join(TINY_CONFIGS)}")
    config = {**TINY_CONFIGS[arch], **overrides}
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    save_file(
        {k: v.contiguous() for k, v in random_tensors(config, seed).items()}, str(path / "model.safetensors")
    )
    return path
