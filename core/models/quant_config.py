"""config.json's ``quantization_config``: which pre-quantized checkpoints Tessera reads, and how.

Read: ``gptq`` (4 bits, group size 128 or -1, ``desc_act`` false, symmetric or not, checkpoint_format
``gptq`` or ``gptq_v2``), ``awq`` (4 bits, GEMM version, with zero points), ``fp8`` (per-tensor weight
scales; dynamic or static activations, computed per token either way) and ``compressed-tensors`` in its
``float-quantized`` (``naive-quantized``) form with 8-bit float weights, per tensor or per channel.
Anything else raises :class:`ModelLoadError` naming what the checkpoint asked for.
"""

from __future__ import annotations

from typing import Any

from tessera.models.spec import ModelLoadError, ModelSpec
from tessera.pluggable_layers.quant import CheckpointQuant

READ = "Tessera reads gptq, awq (4-bit, gemm), fp8 and compressed-tensors fp8 (per-tensor or per-channel)"


def checkpoint_quant(spec: ModelSpec) -> CheckpointQuant | None:
    """The checkpoint's quantization, or None for a 16/32-bit checkpoint."""
    cfg = spec.get("quantization_config")
    if cfg is None:
        return None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("quant_method"), str):
        raise ModelLoadError(
            f"{spec.path}/config.json: quantization_config must be an object with a quant_method"
        )
    method = cfg["quant_method"].lower()
    parse = {"gptq": _gptq, "awq": _awq, "fp8": _fp8, "compressed-tensors": _compressed}.get(method)
    if parse is None:
        raise _unsupported(spec, f"quant_method {method!r}")
    return parse(spec, cfg)


def _unsupported(spec: ModelSpec, what: str) -> ModelLoadError:
    return ModelLoadError(
        f"{spec.path}: the checkpoint is quantized as {what}, which Tessera does not read; {READ}"
    )


def _bits4_group(spec: ModelSpec, cfg: dict, method: str) -> int:
    bits, group = cfg.get("bits", cfg.get("w_bit")), cfg.get("group_size", cfg.get("q_group_size", 128))
    if bits != 4:
        raise _unsupported(spec, f"{method} with {bits} bits (4 only)")
    if group != -1 and (not isinstance(group, int) or group <= 0):
        raise _unsupported(spec, f"{method} with group_size {group!r} (a positive size, or -1)")
    return group


def _refuse_partial(spec: ModelSpec, cfg: dict, method: str) -> None:
    """Checkpoints that leave some modules unquantized (or quantize them differently) are refused by name,
    before loading: every projection here is built as a quantized layer."""
    skipped = cfg.get("modules_to_not_convert") or []
    if skipped:
        raise _unsupported(spec, f"{method} with unquantized modules {skipped} (modules_to_not_convert)")
    if cfg.get("dynamic"):
        raise _unsupported(spec, f"{method} with per-module overrides {sorted(cfg['dynamic'])} (dynamic)")


def _gptq(spec: ModelSpec, cfg: dict) -> CheckpointQuant:
    group = _bits4_group(spec, cfg, "gptq")
    _refuse_partial(spec, cfg, "gptq")
    if cfg.get("desc_act"):
        raise _unsupported(spec, "gptq with desc_act=true (act-order: a permuted g_idx); desc_act=false only")
    fmt = (cfg.get("checkpoint_format") or "gptq").lower()
    if fmt not in ("gptq", "gptq_v2"):
        raise _unsupported(spec, f"gptq with checkpoint_format {fmt!r} (gptq or gptq_v2)")
    if cfg.get("lm_head"):
        raise _unsupported(spec, "gptq with a quantized lm_head")
    return CheckpointQuant(
        "wna16", fmt, group, source=f"gptq {fmt}, group size {group}, sym={cfg.get('sym', True)}"
    )


def _awq(spec: ModelSpec, cfg: dict) -> CheckpointQuant:
    group = _bits4_group(spec, cfg, "awq")
    _refuse_partial(spec, cfg, "awq")
    version = str(cfg.get("version", "gemm")).lower()
    if version != "gemm":
        raise _unsupported(spec, f"awq version {version!r} (the gemm layout only)")
    if not cfg.get("zero_point", True):
        raise _unsupported(spec, "awq without zero points")
    return CheckpointQuant("wna16", "awq", group, source=f"awq gemm, group size {group}")


def _fp8(spec: ModelSpec, cfg: dict) -> CheckpointQuant:
    if cfg.get("weight_block_size"):
        raise _unsupported(spec, f"fp8 with block-wise weight scales {cfg['weight_block_size']}")
    fmt = str(cfg.get("fmt", "e4m3")).lower()
    if fmt != "e4m3":
        raise _unsupported(spec, f"fp8 in {fmt}")
    return CheckpointQuant("fp8", source=f"fp8, {cfg.get('activation_scheme', 'dynamic')} activations")


def _compressed(spec: ModelSpec, cfg: dict) -> CheckpointQuant:
    fmt = cfg.get("format", "float-quantized")
    if fmt not in ("float-quantized", "naive-quantized"):
        raise _unsupported(spec, f"compressed-tensors format {fmt!r}")
    groups = list((cfg.get("config_groups") or {}).values())
    if not groups:
        raise _unsupported(spec, "compressed-tensors without config_groups")
    strategies = {_weights_strategy(spec, g) for g in groups}
    ignored = cfg.get("ignore") or []
    if any(i not in ("lm_head", "re:.*lm_head") for i in ignored):
        raise _unsupported(spec, f"compressed-tensors ignoring {ignored} (only lm_head may stay unquantized)")
    return CheckpointQuant(
        "fp8", source=f"compressed-tensors fp8, {'/'.join(sorted(strategies))} weight scales"
    )


def _weights_strategy(spec: ModelSpec, group: Any) -> str:
    weights = (group or {}).get("weights") or {}
    kind, bits, strategy = weights.get("type"), weights.get("num_bits"), weights.get("strategy")
    if (kind, bits) != ("float", 8) or strategy not in ("tensor", "channel"):
        raise _unsupported(spec, f"compressed-tensors weights {kind} {bits}-bit by {strategy}")
    acts = group.get("input_activations")
    if acts and (acts.get("type"), acts.get("num_bits")) != ("float", 8):
        raise _unsupported(
            spec, f"compressed-tensors activations {acts.get('type')} {acts.get('num_bits')}-bit"
        )
    return strategy


def check_architecture(spec: ModelSpec, model_cls: type, scheme: CheckpointQuant | None) -> None:
    """Refuse a quantized checkpoint for an architecture whose layers do not all read one."""
    reads = getattr(model_cls, "quantized_checkpoints", False)  # True (every method) or the methods read
    if scheme is not None and (not reads or (isinstance(reads, tuple) and scheme.method not in reads)):
        raise ModelLoadError(f"{spec.path}: {spec.architecture} checkpoints quantized as {scheme.source} are not read "
                             "yet (their MoE experts or Mamba projections have no kernels for it); dense Llama, Mistral, "
                             "Qwen2 and Qwen3 checkpoints are, and GPTQ / AWQ int4 Qwen3-MoE ones")  # fmt: skip
