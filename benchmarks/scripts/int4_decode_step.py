"""The int4 decode step of a Llama-3-8B-shaped model at batch 1 against its weight-bytes floor, and the bf16
step of the same shape in the same run (128 tokens in, 256 out, greedy, ignore_eos, decode graphs on).

The int4 model is a real GPTQ checkpoint (4 bits, group size 128, symmetric, desc_act false, the AutoGPTQ
v1 layout) written to a temporary folder from random packed words, not by quantizing dense weights, and
loaded through the GPTQ reader; the embeddings, norms and lm_head are bf16. The scales keep each
projection's output near unit size, so the activations stay finite through every layer: the script checks
that the sampled tokens' logprobs are finite. The bf16 step has random bf16 weights (decode_step.py).

Each floor is the bytes a step reads (every weight as the kernels hold it after prepare, scales and zeros,
norms, lm_head; one embedding row) at the copy bandwidth measured in the same run.

    python benchmarks/scripts/int4_decode_step.py OUT_DIR

JSON goes to OUT_DIR/int4_decode_step.json; the table is printed last. INT4_STEP_PRESET names another preset
and INT4_STEP_CONFIG (a JSON object) overrides config fields, for a quick check on the CPU:

    INT4_STEP_PRESET=tiny-llama INT4_STEP_CONFIG='{"hidden_size": 256, "intermediate_size": 384, "head_dim": 64,
    "num_hidden_layers": 2, "max_position_embeddings": 2048, "vocab_size": 4096}' python benchmarks/scripts/int4_decode_step.py /tmp/int4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode_step import run_model  # noqa: E402

from tessera import LLM, SamplingParams  # noqa: E402
from tessera.discovery import select_platform  # noqa: E402
from tessera.models.presets import PRESETS  # noqa: E402
from tessera.models.random_checkpoint import tensor_shapes  # noqa: E402
from tessera.pluggable_layers.measure import measure_limits  # noqa: E402
from tessera.pluggable_layers.reference.linear_wna16 import checkpoint_shape  # noqa: E402

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GROUP = 128
#: eight symmetric zero points (8), each stored minus one as AutoGPTQ's v1 format does
SYM_ZEROS = 0x77777777
QUANT = {"quant_method": "gptq", "bits": 4, "group_size": GROUP, "desc_act": False, "sym": True,
         "checkpoint_format": "gptq"}  # fmt: skip
GOALS = {"speedup": 2.5, "floor_share": 0.7}


def model_config() -> dict:
    preset = os.environ.get("INT4_STEP_PRESET", "llama3-8b")
    if preset not in PRESETS:
        raise SystemExit(f"INT4_STEP_PRESET={preset!r} is not a preset; presets: {', '.join(PRESETS)}")
    config = {**PRESETS[preset], **json.loads(os.environ.get("INT4_STEP_CONFIG") or "{}")}
    return {**config, "torch_dtype": "bfloat16", "_preset": preset}


def gptq_projection(k: int, n: int, device, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Random GPTQ tensors for a [n, k] projection: uniform 4-bit values, zero point 8, fp16 scales sized so that
    a unit-RMS input gives an output of RMS ~0.8 (the weights' RMS is ~4.6 x scale)."""
    if k % GROUP or k % 8 or n % 8:
        raise SystemExit(
            f"a {n} x {k} projection does not pack with group size {GROUP}; change INT4_STEP_CONFIG"
        )
    shapes = checkpoint_shape("gptq", k, n, k // GROUP)
    qweight = torch.randint(
        -(2**31), 2**31 - 1, shapes["qweight"], dtype=torch.int32, device=device, generator=g
    )
    scales = (torch.rand(shapes["scales"], device=device, generator=g) + 0.5).mul_(k**-0.5 / 6).half()
    qzeros = torch.full(shapes["qzeros"], SYM_ZEROS, dtype=torch.int32, device=device)
    g_idx = torch.arange(k, dtype=torch.int32, device=device) // GROUP
    return {"qweight": qweight, "qzeros": qzeros, "scales": scales, "g_idx": g_idx}


def dense_tensor(name: str, shape, device, g: torch.Generator) -> torch.Tensor:
    if "norm" in name:
        return torch.ones(shape, dtype=torch.bfloat16, device=device)
    std = shape[1] ** -0.5 if name == "lm_head.weight" else 0.02
    return torch.randn(shape, device=device, generator=g).mul_(std).to(torch.bfloat16)


def write_checkpoint(config: dict, folder: Path, device) -> dict:
    """config.json and model.safetensors of a random GPTQ int4 checkpoint; returns the bytes of its tensors by
    kind: ``int4_linear`` (qweight, qzeros, scales), ``g_idx``, ``embed_table``, ``embed_row`` and ``bf16_read``
    (the norms and lm_head)."""
    from safetensors.torch import save_file

    g = torch.Generator(device=device).manual_seed(0)
    tensors, sizes = {}, dict.fromkeys(("int4_linear", "g_idx", "embed_table", "embed_row", "bf16_read"), 0)
    for name, shape in tensor_shapes(config).items():
        stem = name.removesuffix(".weight")
        if stem.endswith(PROJECTIONS):
            packed = {
                f"{stem}.{part}": t.cpu()
                for part, t in gptq_projection(shape[1], shape[0], device, g).items()
            }
        else:
            packed = {name: dense_tensor(name, shape, device, g).cpu()}
        for key, t in packed.items():
            nbytes = t.numel() * t.element_size()
            kind = (
                "embed_table"
                if "embed_tokens" in key
                else "bf16_read"
                if key == name
                else key.rsplit(".", 1)[1]
            )
            sizes[kind if kind in sizes else "int4_linear"] += nbytes
            if kind == "embed_table":
                sizes["embed_row"] = t.shape[1] * t.element_size()
        tensors.update(packed)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    (folder / "config.json").write_text(json.dumps({**config, "quantization_config": QUANT}, indent=2))
    return sizes


def finite_logprobs(llm: LLM) -> dict:
    """A short greedy run with logprobs: the sampled tokens' logprobs (logit - logsumexp) must be finite."""
    prompt = {"prompt_token_ids": list(range(1000, 1032))}
    out = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=16, ignore_eos=True, logprobs=0))[0]
    c = out.outputs[0]
    logprobs = [d[t].logprob for t, d in zip(c.token_ids, c.logprobs, strict=True)]
    if not all(math.isfinite(x) for x in logprobs):
        raise SystemExit(f"the int4 model's logits are not finite: logprobs {logprobs}")
    return {
        "finite": True,
        "tokens": c.token_ids,
        "distinct_tokens": len(set(c.token_ids)),
        "logprobs": logprobs,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--out-len", type=int, default=256)
    args = parser.parse_args()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = model_config()
    platform = select_platform()
    device = platform.torch_device(0)
    limits = measure_limits(platform, device)
    with tempfile.TemporaryDirectory(prefix="int4_step_", dir=os.environ.get("INT4_STEP_TMP")) as tmp:
        dense_dir, int4_dir = Path(tmp, "bf16"), Path(tmp, "gptq")
        dense_dir.mkdir()
        (dense_dir / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k[0] != "_"}))
        bf16 = run_model(dense_dir, "random", False, args.prompt_len, args.out_len)
        platform.empty_cache()
        checkpoint_bytes = write_checkpoint(config, int4_dir, device)
        platform.empty_cache()
        int4 = run_model(int4_dir, "safetensors", False, args.prompt_len, args.out_len, probe=finite_logprobs)
    report(out_dir, config, platform, limits, bf16, int4, checkpoint_bytes)


def report(out_dir, config, platform, limits, bf16, int4, checkpoint_bytes) -> None:
    """The int4 floor is the checkpoint's bytes a step reads (4-bit words, packed zeros, 16-bit scales, norms,
    lm_head, one embedding row), whatever layout the kernel keeps; ``held_floor_ms`` is that of the tensors the
    model holds after prepare (larger where a kernel widens the weights at load, as the cpu one does)."""
    gbps = limits["copy_GBps"] * 1e6
    for r in (bf16, int4):
        r["held_floor_ms"] = r["weight_bytes_read_per_step"] / gbps
    c = checkpoint_bytes
    int4_floor_bytes = c["int4_linear"] + c["bf16_read"] + c["embed_row"]
    int4_floor, bf16_floor = int4_floor_bytes / gbps, bf16["held_floor_ms"]
    speedup, share = bf16["tpot_ms"] / int4["tpot_ms"], int4_floor / int4["tpot_ms"]
    wna16 = sorted({k.split(":", 1)[1] for k in int4["kernels"] if k.startswith("linear_wna16:")})
    summary = {"device": platform.devices()[0].name, "torch": torch.__version__, "preset": config["_preset"],
               "config": {k: v for k, v in config.items() if k[0] != "_"}, "quantization_config": QUANT,
               "limits": limits, "linear_wna16_kernel": wna16, "checkpoint_bytes": checkpoint_bytes,
               "int4_floor_bytes": int4_floor_bytes, "int4_floor_ms": int4_floor, "bf16_floor_ms": bf16_floor,
               "int4": int4, "bf16": bf16, "speedup_bf16_over_int4": speedup, "int4_floor_share": share,
               "bf16_floor_share": bf16_floor / bf16["tpot_ms"], "goals": GOALS,
               "meets_goals": speedup >= GOALS["speedup"] and share >= GOALS["floor_share"]}  # fmt: skip
    (out_dir / "int4_decode_step.json").write_text(json.dumps(summary, indent=2))
    print(
        f"device {summary['device']}: copy {limits['copy_GBps']:.0f} GB/s; linear_wna16 kernel {', '.join(wna16)}"
    )
    print(
        f"int4: floor {int4_floor:.3f} ms ({int4_floor_bytes / 1e6:.1f} MB of checkpoint a step; the model holds "
        f"{int4['weight_bytes_read_per_step'] / 1e6:.1f} MB after prepare), graphs captured: {int4['graphs']}"
    )
    print(f"bf16: floor {bf16_floor:.3f} ms ({bf16['weight_bytes_read_per_step'] / 1e6:.1f} MB a step), "
          f"graphs captured: {bf16['graphs']}")  # fmt: skip
    print(f"{'TPOT int4 ms':>14} {'TPOT bf16 ms':>14} {'bf16/int4':>10} {'int4 floor share':>17}")
    print(f"{int4['tpot_ms']:14.3f} {bf16['tpot_ms']:14.3f} {speedup:10.2f} {share:17.2f}")
    print(f"{'goal':>14} {'':>14} {GOALS['speedup']:10.2f} {GOALS['floor_share']:17.2f}")


if __name__ == "__main__":
    main()
