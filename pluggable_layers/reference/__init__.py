"""Plain-torch reference implementations of every op: the oracle and the fallback of last resort.

Each module is named like its op and holds one public function of the same name
whose docstring states the op's full semantics. They are written to be obviously
right, not fast, and run on any device torch supports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from tessera.pluggable_layers.ops import OPS


def reference(op: str) -> Callable:
    """The reference implementation of ``op``."""
    module = importlib.import_module(f"tessera.pluggable_layers.reference.{op}")
    return getattr(module, op)


def all_references() -> dict[str, Callable]:
    return {op: reference(op) for op in OPS}
