"""The model-shape zoo: op cases at the layer shapes of real checkpoints (``data/model_zoo.json``).

Under --quick each model's ops run with a few tokens (one or two decode rows for attention and the
Mamba2 state update) at the real hidden, head, expert, state and vocabulary sizes, and no large
weights; --full adds prefill chunks, the Mamba2 scans, its GEMMs and, up to
``MAX_EXPERT_WEIGHTS`` elements, its expert weights at full size.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from tessera.conformance.cases import attention, elementwise, linear, mamba, moe, norms, quant
from tessera.conformance.cases.common import Case
from tessera.conformance.cases.sample import sample_case

#: the float64 reference holds the expert weights on the host: larger ones are left out
MAX_EXPERT_WEIGHTS = 6 * 10**8


@cache
def models() -> dict[str, dict]:
    text = resources.files("tessera.conformance").joinpath("data/model_zoo.json").read_text()
    return json.loads(text)["models"]


def _slug(name: str) -> str:
    return name.replace(".", "_").replace("-", "_")


def attention_cases(m: dict, full: bool) -> list[Case]:
    hq, hk, d, rot = m["heads"], m["kv_heads"], m["head_dim"], m.get("rotary_dim", m["head_dim"])
    out = [elementwise.rotary_case("rope", 3, hq, hk, d, rot, True),
           elementwise.kv_write_case("kv_write", 5, hk, d, 16, True),
           attention.paged_case("attn_decode", [1, 17], [1, 1], hq, hk, d=d)]  # fmt: skip
    if full:
        out.append(
            attention.paged_case("attn_decode_prefill", [1, 17, 33], [1, 1, 5], hq, hk, d=d, full=True)
        )
        out.append(attention.paged_case("attn_prefill512", [4096, 512], [1, 512], hq, hk, d=d, full=True))
        out.append(linear.linear_case("qkv_proj", 4, m["hidden"], (hq + 2 * hk) * d, False, full=True))
    return out


def moe_cases(m: dict, full: bool) -> list[Case]:
    e, k, h, i = m["experts"], m["top_k"], m["hidden"], m["moe_intermediate"]
    out = [moe.route_case("route", 7, e, k, m["renormalize"], m["scoring"]),
           moe.route_case("route_nan_rows", 6, e, k, m["renormalize"], m["scoring"], junk="nan_rows"),
           moe.experts_case("experts_narrow", 5, e, k, 64, 32)]  # fmt: skip
    if full and e * 3 * i * h <= MAX_EXPERT_WEIGHTS:
        out.append(moe.experts_case("experts", 16, e, k, h, i, full=True))
    return out


def mamba_cases(s: dict, full: bool) -> list[Case]:
    conv = s["intermediate"] + 2 * s["groups"] * s["state"]
    chunk, heads, p, n, g = s["chunk"], s["heads"], s["head_dim"], s["state"], s["groups"]
    out = [mamba.conv_case("conv", [1, 6], conv, s["conv_kernel"]),
           mamba.conv_update_case("conv_update", 3, conv, s["conv_kernel"]),
           mamba.ssd_case("ssd_short", [1, 5], heads, p, n, g, chunk),
           mamba.ssu_case("ssu", 3, heads, p, n, g, True),
           norms.gated_case("gated_norm", 3, s["intermediate"], s["intermediate"] // g)]  # fmt: skip
    if full:
        out.append(
            mamba.ssd_case("ssd_chunk_edges", [chunk + 1, 2 * chunk], heads, p, n, g, chunk, full=True)
        )
    return out


def model_cases(name: str, m: dict, full: bool) -> list[Case]:
    h = m["hidden"]
    out = [norms.rms_norm_case("rms_norm", 3, h, eps=m["eps"]), sample_case("sample", 2, m["vocab"], "mixed" if full else "greedy")]  # fmt: skip
    if full:
        out.append(norms.add_rms_norm_case("add_rms_norm", 3, h))
    if "intermediate" in m:
        out.append(elementwise.silu_case("silu_and_mul", 2, m["intermediate"]))
        if full:
            out.append(linear.linear_case("down_proj", 4, m["intermediate"], h, False, full=True))
    if full and m.get("wna16"):  # 4-bit GPTQ/AWQ projections at the model's shapes
        out += quant.zoo_cases(h, m["intermediate"], m["heads"], m["kv_heads"], m["head_dim"])
    if "heads" in m:
        out += attention_cases(m, full)
    if "experts" in m:
        out += moe_cases(m, full)
    if "mamba" in m:
        out += mamba_cases(m["mamba"], full)
    for case in out:
        case.name = f"zoo_{_slug(name)}_{case.name}"
        case.origin = "zoo"
        case.params = {"model": name}
    return out


@cache
def cases(full: bool) -> list[Case]:
    """One case per distinct shape: a shape several models share runs once, named by the first."""
    out, seen = [], {}
    for name, m in models().items():
        for case in model_cases(name, m, full):
            key = (case.op, case.name.split("_", 2 + _slug(name).count("_"))[-1], _shape_key(case))
            if key in seen:
                seen[key].params["model"] += f",{name}"
                continue
            seen[key] = case
            out.append(case)
    return out


def _shape_key(case: Case) -> str:
    """The case's input shapes and scalar arguments, from one build."""
    import torch

    inputs = case.build(torch.Generator().manual_seed(0))
    return repr(
        sorted((k, tuple(v.shape) if isinstance(v, torch.Tensor) else v) for k, v in inputs.values.items())
    )
