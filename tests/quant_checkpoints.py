"""Tiny pre-quantized checkpoints for the tests: GPTQ and AWQ int4 as AutoGPTQ and AutoAWQ pack them, and
FP8 as the ``fp8`` quant_method and compressed-tensors store it, next to the dequantized weights in a
plain checkpoint that transformers loads (the oracle).

The packers follow the reference implementations' loops (AutoGPTQ ``QuantLinear.pack``, AutoAWQ
``WQLinear_GEMM.from_linear``) rather than Tessera's unpacking code, so a shared mistake cannot hide.
Quantization is round-to-nearest (which is what the layouts care about; GPTQ's error feedback is not).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .hf_checkpoints import tiny_config

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
#: sizes divisible by group size 128 on every projection's input
QUANT_SIZES = dict(hidden_size=256, intermediate_size=384, head_dim=64)


def quantize_rtn(w: torch.Tensor, group_size: int, sym: bool):
    """(q[N, K] int64 0..15, zeros[N, G] int64, scales[N, G] fp16) with w ~= (q - zero) * scale per group."""
    n, k = w.shape
    gs = k if group_size == -1 else group_size
    wg = w.double().reshape(n, k // gs, gs)
    if sym:
        amax = wg.abs().amax(-1).clamp(min=1e-8)
        scales = (2 * amax / 15).half()
        zeros = torch.full_like(amax, 8, dtype=torch.int64)
    else:
        lo, hi = wg.amin(-1).clamp(max=0), wg.amax(-1).clamp(min=0)
        scales = ((hi - lo).clamp(min=1e-8) / 15).half()
        zeros = torch.round(-lo / scales.double()).clamp(0, 15).long()
    q = torch.round(wg / scales.double()[..., None]) + zeros[..., None]
    return q.clamp(0, 15).long().reshape(n, k), zeros, scales


def dequantized(q, zeros, scales, group_size: int) -> torch.Tensor:
    gs = q.shape[1] if group_size == -1 else group_size
    z = zeros.repeat_interleave(gs, dim=1).float()
    return (q.float() - z) * scales.float().repeat_interleave(gs, dim=1)


def _words(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(values.astype(np.uint32).view(np.int32).copy())


def pack_gptq(q, zeros, scales, group_size: int, v1: bool = True) -> dict[str, torch.Tensor]:
    """AutoGPTQ's layout: qweight[K/8, N] packed along K, qzeros[G, N/8] along N (minus one in v1)."""
    intweight = q.T.numpy().astype(np.uint32)  # [K, N]
    k, n = intweight.shape
    qweight = np.zeros((k // 8, n), dtype=np.uint32)
    for row in range(k // 8):
        for j in range(8):
            qweight[row] |= intweight[row * 8 + j] << (4 * j)
    stored = ((zeros.T.numpy() - (1 if v1 else 0)) & 15).astype(np.uint32)  # [G, N]
    qzeros = np.zeros((stored.shape[0], n // 8), dtype=np.uint32)
    for col in range(n // 8):
        for j in range(8):
            qzeros[:, col] |= stored[:, col * 8 + j] << (4 * j)
    gs = k if group_size == -1 else group_size
    return {"qweight": _words(qweight), "qzeros": _words(qzeros), "scales": scales.T.contiguous(),
            "g_idx": torch.arange(k, dtype=torch.int32) // gs}  # fmt: skip


def pack_awq(q, zeros, scales) -> dict[str, torch.Tensor]:
    """AutoAWQ's GEMM layout: qweight[K, N/8] and qzeros[G, N/8], both along N in the order [0,2,4,6,1,3,5,7]."""

    def pack(values: np.ndarray) -> np.ndarray:
        out = np.zeros((values.shape[0], values.shape[1] // 8), dtype=np.uint32)
        for col in range(values.shape[1] // 8):
            for i in range(8):
                out[:, col] |= values[:, col * 8 + AWQ_ORDER[i]] << (4 * i)
        return out

    return {"qweight": _words(pack(q.T.numpy().astype(np.uint32))),
            "qzeros": _words(pack(zeros.T.numpy().astype(np.uint32))), "scales": scales.T.contiguous()}  # fmt: skip


#: experts whose down projection's input (moe_intermediate_size) group size 128 divides
MOE_SIZES = dict(moe_intermediate_size=128)
#: transformers 5 stores a Qwen3-MoE layer's experts fused: gate_up_proj [E, 2I, H], down_proj [E, H, I]
FUSED_EXPERTS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")


def _hf_model(arch: str, seed: int):
    import transformers as tf

    torch.manual_seed(seed)
    sizes = {**QUANT_SIZES, **(MOE_SIZES if arch == "qwen3_moe" else {})}
    model = tf.AutoModelForCausalLM.from_config(tiny_config(arch, **sizes), torch_dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.1 * torch.randn_like(p)) if "norm" in name else p.normal_(0.0, 0.08)
    return model


def _write(
    model, tensors: dict, quant_dir: Path, dense_dir: Path, quantization_config: dict
) -> tuple[Path, Path]:
    from safetensors.torch import save_file

    model.save_pretrained(dense_dir, safe_serialization=True)
    quant_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(quant_dir / "model.safetensors"))
    config = json.loads((dense_dir / "config.json").read_text())
    config["quantization_config"] = quantization_config
    (quant_dir / "config.json").write_text(json.dumps(config))
    return quant_dir, dense_dir


def write_int4_checkpoint(arch: str, root: Path, method: str, group_size: int = 128, sym: bool = True,
                          seed: int = 0, checkpoint_format: str = "gptq") -> tuple[Path, Path]:  # fmt: skip
    """(quantized folder, dequantized folder) for a GPTQ ("gptq") or AWQ ("awq") int4 checkpoint."""
    model = _hf_model(arch, seed)
    tensors = {}

    def pack(q, zeros, scales):
        if method == "awq":
            return pack_awq(q, zeros, scales)
        return pack_gptq(q, zeros, scales, group_size, v1=checkpoint_format == "gptq")

    with torch.no_grad():
        for name, p in model.state_dict().items():
            stem = name.removesuffix(".weight")
            if name.endswith(FUSED_EXPERTS):  # per expert, as AutoGPTQ / AutoAWQ store them
                _pack_fused_experts(
                    model.get_parameter(name), name, tensors, group_size, sym and method != "awq", pack
                )
                continue
            if not stem.endswith(PROJECTIONS) or not name.endswith(".weight"):
                tensors[name] = p.clone()
                continue
            q, zeros, scales = quantize_rtn(p, group_size, sym and method != "awq")
            model.get_parameter(name).copy_(dequantized(q, zeros, scales, group_size))
            packed = pack(q, zeros, scales)
            tensors.update({f"{stem}.{k}": v for k, v in packed.items()})
    if method == "awq":
        cfg = {
            "quant_method": "awq",
            "bits": 4,
            "group_size": group_size,
            "zero_point": True,
            "version": "gemm",
        }
    else:
        cfg = {"quant_method": "gptq", "bits": 4, "group_size": group_size, "desc_act": False, "sym": sym,
               "checkpoint_format": checkpoint_format}  # fmt: skip
    return _write(model, tensors, root / f"{method}_q", root / f"{method}_dense", cfg)


def _pack_fused_experts(param, name: str, tensors: dict, group_size: int, sym: bool, pack) -> None:
    """Quantize a fused experts tensor expert by expert into ``experts.{e}.{gate,up,down}_proj.*`` tensors,
    writing the dequantized values back into ``param`` (the oracle's weights)."""
    prefix = name.rsplit(".", 1)[0]  # model.layers.L.mlp.experts
    for e in range(param.shape[0]):
        if name.endswith("gate_up_proj"):
            inter = param.shape[1] // 2
            shards = {"gate": param.data[e, :inter], "up": param.data[e, inter:]}
        else:
            shards = {"down": param.data[e]}
        for shard, w in shards.items():
            q, zeros, scales = quantize_rtn(w, group_size, sym)
            w.copy_(dequantized(q, zeros, scales, group_size))
            tensors.update({f"{prefix}.{e}.{shard}_proj.{k}": v for k, v in pack(q, zeros, scales).items()})


def write_fp8_checkpoint(arch: str, root: Path, per_channel: bool, seed: int = 0) -> tuple[Path, Path]:
    """(fp8 folder, dequantized folder): compressed-tensors per-channel scales, or ``fp8`` per-tensor ones."""
    model = _hf_model(arch, seed)
    tensors, fmax = {}, torch.finfo(torch.float8_e4m3fn).max
    with torch.no_grad():
        for name, p in model.state_dict().items():
            stem = name.removesuffix(".weight")
            if not stem.endswith(PROJECTIONS) or not name.endswith(".weight"):
                tensors[name] = p.clone()
                continue
            amax = p.abs().amax(dim=1, keepdim=True) if per_channel else p.abs().amax().reshape(())
            scale = (amax / fmax).float()
            w8 = (p / scale).clamp(-fmax, fmax).to(torch.float8_e4m3fn)
            model.get_parameter(name).copy_(w8.float() * scale)
            tensors.update({f"{stem}.weight": w8, f"{stem}.weight_scale": scale,
                            f"{stem}.input_scale": torch.ones((), dtype=torch.float32)})  # fmt: skip
    if per_channel:
        group = {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "channel",
                 "symmetric": True, "dynamic": False}, "input_activations": {"num_bits": 8, "type": "float",
                 "strategy": "token", "dynamic": True}}  # fmt: skip
        cfg = {"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups": {"group_0": group},
               "ignore": ["lm_head"]}  # fmt: skip
    else:
        cfg = {"quant_method": "fp8", "activation_scheme": "static"}
    return _write(model, tensors, root / "fp8_q", root / "fp8_dense", cfg)
