"""Cases for linear and linear_fp8: odd sizes, one token, bias, decode-sized and larger M."""

from __future__ import annotations

import torch

from tessera.conformance.cases.common import Case, Inputs, nan_like, param_name, randn
from tessera.conformance.space import Choice, Int, Space
from tessera.pluggable_layers.reference.linear_fp8 import quantize_per_channel


def linear_case(name, m, k, n, bias, full=False):
    def build(g):
        return Inputs({"x": randn(m, k, g=g), "weight": randn(n, k, g=g, scale=k**-0.5),
                       "bias": randn(n, g=g) if bias else None, "out": nan_like((m, n))}, poison=("out",),
                      pad={"x": float("nan")})  # fmt: skip

    return Case("linear", name, build, full_only=full)


def fp8_case(name, m, k, n, bias, fp8="float8_e4m3fn", full=False):
    def build(g):
        wq, scale = quantize_per_channel(randn(n, k, g=g, scale=k**-0.5), getattr(torch, fp8))
        return Inputs({"x": randn(m, k, g=g), "weight": wq, "weight_scale": scale.double(),
                       "bias": randn(n, g=g) if bias else None, "out": nan_like((m, n))},
                      poison=("out",), keep=("weight_scale",), pad={"x": float("nan")})  # fmt: skip

    return Case(
        "linear_fp8",
        name,
        build,
        full_only=full,
        facts={"fp8_dtype": fp8, "in_features": k, "out_features": n},
    )


def cases() -> list[Case]:
    return [
        linear_case("m1_k64_n96", 1, 64, 96, False), linear_case("m7_k4099_n33_bias", 7, 4099, 33, True),
        linear_case("m300_k128_n257", 300, 128, 257, False), linear_case("m4096_k4096_n4096", 4096, 4096, 4096, False, full=True),
        fp8_case("m1_k256_n128", 1, 256, 128, False), fp8_case("m33_k512_n96_bias", 33, 512, 96, True),
        # past the small-M path of GEMM-based kernels (64 rows in tessera-cuda)
        fp8_case("m80_k256_n128_bias", 80, 256, 128, True),
        fp8_case("m2048_k4096_n4096", 2048, 4096, 4096, False, full=True),
    ]  # fmt: skip


def _named(case: Case, p: dict) -> Case:
    case.params = p
    return case


def space() -> list[Space]:
    params = {"m": Int(1, 4096, hi_quick=80, boundaries=(16, 64, 128)),
              "k": Int(1, 8192, hi_quick=640, boundaries=(16, 64, 128, 256)),
              "n": Int(1, 8192, hi_quick=384, boundaries=(16, 64, 128, 256)), "bias": Choice((True, False))}  # fmt: skip
    return [
        Space(
            "linear",
            params,
            lambda p: _named(linear_case(param_name(p), p["m"], p["k"], p["n"], p["bias"]), p),
        ),
        Space(
            "linear_fp8",
            {**params, "k": Int(16, 8192, hi_quick=640, boundaries=(64, 128, 256))},
            lambda p: _named(fp8_case(param_name(p), p["m"], p["k"], p["n"], p["bias"]), p),
        ),
    ]
