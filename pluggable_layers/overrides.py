"""Kernel overrides: ``TESSERA_KERNELS="op=kernel,op=kernel"`` and the engine config's ``kernel_overrides``.

An override that names an unknown op or kernel, or names an op twice, is an error
that lists the valid choices: it is never ignored.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from tessera.pluggable_layers.errors import KernelError
from tessera.pluggable_layers.ops import OPS

OVERRIDE_ENV = "TESSERA_KERNELS"


def parse_overrides(text: str | None) -> dict[str, str]:
    """``"rms_norm=reference, moe_experts=triton_moe_experts"`` -> dict; malformed entries raise."""
    result: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        op, sep, name = item.partition("=")
        if not sep or not op.strip() or not name.strip():
            raise KernelError(
                f"{OVERRIDE_ENV} entry {item!r} must look like op=kernel (e.g. rms_norm=reference)"
            )
        op, name = op.strip(), name.strip()
        if op in result:
            raise KernelError(
                f"{OVERRIDE_ENV} names {op} twice ({op}={result[op]} and {op}={name}); keep one entry per op"
            )
        result[op] = name
    return result


def check_overrides(
    overrides: Mapping[str, str], kernels: Mapping[str, Iterable[str]], source: str = OVERRIDE_ENV
) -> None:
    """Raise for an override naming an op that does not exist or a kernel not registered for its op."""
    for op, name in overrides.items():
        if op not in OPS:
            raise KernelError(
                f"{source}: {op}={name}: unknown op {op!r}; the ops are: {', '.join(OPS)}{_near(op, OPS)}"
            )
        known = sorted(kernels.get(op, ()))
        if name not in known:
            raise KernelError(
                f"{source}: {op}={name}: unknown kernel {name!r} for {op}; "
                f"known kernels: {', '.join(known) or 'none'}{_near(name, known)}"
            )


def _near(word: str, choices: Iterable[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {near[0]}?)" if near else ""
