"""The small default model: a tiny Llama-architecture checkpoint made on first use, no download.

Weights are random but deterministic (seeded), with a byte-level tokenizer; the
output rows of non-printable bytes are zero so that greedy text stays readable.
It exists so that ``tessera generate`` works on a fresh machine; it knows no
language.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from tessera.paths import cache_dir

VERSION = "v1"
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 259,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}


def default_model_dir() -> Path:
    return cache_dir() / f"default-model-{VERSION}"


def llama_tensors(config: dict, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h, inter, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    d = config["head_dim"]
    q, kv = config["num_attention_heads"] * d, config["num_key_value_heads"] * d

    def w(*shape, scale=0.08):
        return torch.randn(*shape, generator=g) * scale

    tensors = {"model.embed_tokens.weight": w(v, h, scale=1.0), "model.norm.weight": torch.ones(h)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors |= {
            p + "self_attn.q_proj.weight": w(q, h), p + "self_attn.k_proj.weight": w(kv, h),
            p + "self_attn.v_proj.weight": w(kv, h), p + "self_attn.o_proj.weight": w(h, q),
            p + "mlp.gate_proj.weight": w(inter, h), p + "mlp.up_proj.weight": w(inter, h),
            p + "mlp.down_proj.weight": w(h, inter), p + "input_layernorm.weight": torch.ones(h),
            p + "post_attention_layernorm.weight": torch.ones(h),
        }  # fmt: skip
    head = w(v, h, scale=0.5)
    printable = torch.zeros(v, dtype=torch.bool)
    printable[3 + 32 : 3 + 127] = True  # byte tokens of printable ASCII
    head[~printable] = 0
    tensors["lm_head.weight"] = head
    return tensors


def ensure_default_model(seed: int = 0) -> Path:
    """The default model's folder, written atomically the first time."""
    from safetensors.torch import save_file

    target = default_model_dir()
    if (target / "model.safetensors").is_file():
        return target
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.json").write_text(json.dumps(CONFIG, indent=2))
    (tmp / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "TesseraByteTokenizer", "bos_token_id": 1})
    )
    save_file(llama_tensors(CONFIG, seed), str(tmp / "model.safetensors"))
    try:
        tmp.rename(target)
    except OSError:  # another process won the race
        pass
    return target
