"""Cases for rms_norm, add_rms_norm and gated_rms_norm: odd hidden sizes, one token, small magnitudes."""

from __future__ import annotations

from tessera.conformance.cases.common import Case, Inputs, nan_like, param_name, randn
from tessera.conformance.space import Choice, Int, Space

SHAPES = [("t1_h64", 1, 64), ("t7_h4099", 7, 4099), ("t300_h131", 300, 131)]
FULL = [("t4096_h8192", 4096, 8192)]


def rms_norm_case(name, t, h, scale=1.0, eps=1e-6, full=False):
    def build(g):
        return Inputs({"x": randn(t, h, g=g, scale=scale), "weight": randn(h, g=g), "eps": eps, "out": nan_like((t, h))},
                      poison=("out",), pad={"x": float("nan")})  # fmt: skip

    return Case("rms_norm", name, build, full_only=full)


def add_rms_norm_case(name, t, h, full=False):
    def build(g):
        return Inputs({"x": randn(t, h, g=g), "residual": randn(t, h, g=g), "weight": randn(h, g=g), "eps": 1e-6,
                       "out": nan_like((t, h)), "residual_out": nan_like((t, h))}, poison=("out", "residual_out"),
                      pad={"x": float("nan"), "residual": float("nan")})  # fmt: skip

    return Case("add_rms_norm", name, build, full_only=full)


def gated_case(name, t, channels, group, gate=True):
    def build(g):
        return Inputs({"x": randn(t, channels, g=g), "z": randn(t, channels, g=g) if gate else None,
                       "weight": randn(channels, g=g), "eps": 1e-5, "group_size": group,
                       "out": nan_like((t, channels))}, poison=("out",))  # fmt: skip

    return Case("gated_rms_norm", name, build, facts={"group_size": group})


def cases() -> list[Case]:
    out = [rms_norm_case(n, t, h) for n, t, h in SHAPES] + [
        rms_norm_case(n, t, h, full=True) for n, t, h in FULL
    ]
    # magnitudes where eps matters: mean(x^2) = 1e-6 = eps
    out.append(rms_norm_case("t5_h256_small_values_eps_1e-6", 5, 256, scale=1e-3))
    out += [add_rms_norm_case(n, t, h) for n, t, h in SHAPES] + [
        add_rms_norm_case(n, t, h, full=True) for n, t, h in FULL
    ]
    out += [gated_case("t9_c256_g256", 9, 256, 256), gated_case("t33_c512_g128", 33, 512, 128),
            gated_case("t1_c96_g48_nogate", 1, 96, 48, gate=False)]  # fmt: skip
    return out


def _named(case: Case, p: dict) -> Case:
    case.params = p
    return case


def space() -> list[Space]:
    tokens = Int(1, 8192, hi_quick=48, boundaries=(16, 64, 128))
    hidden = Int(1, 16384, hi_quick=4099, boundaries=(64, 128, 1024, 2048, 4096, 8192))
    groups = Int(1, 8, boundaries=(2, 4))

    def gated(p):
        q = {**p, "c": p["g"] * p["n"]}
        return _named(gated_case(param_name(q), q["t"], q["c"], q["g"], gate=q["gate"]), q)

    return [
        Space("rms_norm", {"t": tokens, "h": hidden}, lambda p: _named(rms_norm_case(param_name(p), p["t"], p["h"]), p)),
        Space("add_rms_norm", {"t": tokens, "h": hidden},
              lambda p: _named(add_rms_norm_case(param_name(p), p["t"], p["h"]), p)),
        Space("gated_rms_norm", {"t": tokens, "g": Int(1, 4096, hi_quick=1024, boundaries=(64, 128, 256, 1024)), "n": groups,
                                 "gate": Choice((True, False))}, gated),
    ]  # fmt: skip
