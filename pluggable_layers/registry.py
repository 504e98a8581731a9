"""The kernel registry: who can run an op, on which platform, and why one kernel was chosen.

Platform plugins and kernel packs register implementations of the ops in
:mod:`tessera.pluggable_layers.ops`; the reference implementation of every op is
registered for every platform at the lowest priority, so every model runs
everywhere. A layer asks :meth:`KernelRegistry.select` once, at construction,
with static facts (platform, dtype, head size, quantization, ...); the answer
carries every candidate with the reason it was taken or refused, which
``tessera kernels explain`` prints. Overrides come from ``TESSERA_KERNELS``
(``"op=kernel,op=kernel"``) and from the engine config; a fallback to the
reference while other kernels exist is logged once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tessera.pluggable_layers.errors import KernelError
from tessera.pluggable_layers.kernel_types import (
    PRIORITY_PLATFORM,
    PRIORITY_PORTABLE,
    PRIORITY_REFERENCE,
    BoundKernel,
    Candidate,
    KernelImpl,
    KernelQuery,
    PlatformFacts,
    PrepareFn,
    Selection,
    SupportsFn,
    Verdict,
)
from tessera.pluggable_layers.kv_layout import KV_LAYOUTS, KV_OPS, normalize_layouts
from tessera.pluggable_layers.ops import OPS, op_spec
from tessera.pluggable_layers.overrides import OVERRIDE_ENV, check_overrides, parse_overrides
from tessera.pluggable_layers.selection import choose
from tessera.pluggable_layers.tuning import ConfigLookup, ConfigSpace, ShapeKey

#: the data types are importable from here too, where plugins and the engine have always found them
__all__ = ["PRIORITY_PLATFORM", "PRIORITY_PORTABLE", "PRIORITY_REFERENCE", "BoundKernel", "Candidate", "SupportsFn", "KernelImpl", "KernelQuery", "KernelRegistry", "PlatformFacts",
           "Selection", "Verdict", "register_references"]  # fmt: skip

log = logging.getLogger("tessera.kernels")


class KernelRegistry:
    """Every kernel of every op, plus the tuned-config folders platforms hand in."""

    def __init__(self) -> None:
        self._kernels: dict[str, dict[str, KernelImpl]] = {op: {} for op in OPS}
        self._config_dirs: dict[str, list[Path]] = {}
        self._warned: set[tuple] = set()
        self._lookups: dict[tuple, ConfigLookup] = {}
        #: provider recorded for registrations that name none (set while a plugin's hook runs)
        self.current_provider = "tessera"
        #: what each plugin registered, by owner: (op, kernel name) and (platform, tuned-config folder)
        self.registered_by: dict[str, list[tuple[str, str]]] = {}
        self._config_dirs_by: dict[str, list[tuple[str, Path]]] = {}
        self._owner: str | None = None

    # -- transactions: one plugin's registration lands whole or not at all ---------------
    def begin(self, owner: str, provider: str) -> None:
        """Record every registration from now on as ``owner``'s (until :meth:`commit` or :meth:`rollback`)."""
        self._owner, self.current_provider = owner, provider
        self.registered_by.setdefault(owner, [])
        self._config_dirs_by.setdefault(owner, [])

    def commit(self) -> None:
        self._owner, self.current_provider = None, "tessera"

    def rollback(self) -> list[str]:
        """Remove everything the current owner registered; returns the removed kernels as ``op/name``."""
        owner = self._owner
        self.commit()
        if owner is None:
            return []
        removed = []
        for op, name in self.registered_by.pop(owner, []):
            self._kernels[op].pop(name, None)
            removed.append(f"{op}/{name}")
        for platform, path in self._config_dirs_by.pop(owner, []):
            self._config_dirs[platform].remove(path)
        self._lookups.clear()
        return removed

    # -- registration -------------------------------------------------------------------
    def register(
        self,
        op: str,
        impl: Callable[..., Any],
        *,
        name: str,
        platforms: tuple[str, ...] | list[str] | str | None = None,
        priority: int = PRIORITY_PORTABLE,
        supports: SupportsFn | None = None,
        dtypes: tuple[str, ...] | list[str] | None = None,
        graph_safe: bool = True,
        provider: str | None = None,
        config_space: ConfigSpace | None = None,
        shape_key: ShapeKey | None = None,
        tune_inputs: Callable[..., Any] | None = None,
        tune_shapes: tuple[Mapping[str, Any], ...] | list[Mapping[str, Any]] = (),
        description: str = "",
        features: tuple[str, ...] | list[str] = (),
        prepare: PrepareFn | None = None,
        prepared_layout: str = "",
        kv_layout: str | tuple[str, ...] | list[str] | None = None,
    ) -> KernelImpl:
        spec = op_spec(op)
        layouts = normalize_layouts(spec.name, name, kv_layout)
        if prepare is not None and not spec.weights:
            raise KernelError(
                f"kernel {name!r} for {op} declares a prepare step, but {op} has no weight arguments"
            )
        unknown = sorted(set(features) - set(spec.feature_names()))
        if unknown:
            raise KernelError(f"kernel {name!r} for {op} declares unknown features {unknown}; "
                              f"{op} has: {', '.join(spec.feature_names()) or 'none'}")  # fmt: skip
        if isinstance(platforms, str):
            platforms = (platforms,)
        bad = sorted(set(dtypes or ()) - set(spec.dtypes))
        if bad:
            raise KernelError(
                f"kernel {name!r} for {op} claims dtypes {bad} the op does not define ({spec.dtypes})"
            )
        if (config_space is None) != (shape_key is None):
            raise KernelError(f"kernel {name!r}: config_space and shape_key go together")
        existing = self._kernels[op].get(name)
        provider = provider or self.current_provider
        if existing is not None:
            raise KernelError(
                f"kernel name {name!r} for {op} is registered twice, by {existing.provider} and by {provider}; "
                "kernel names must be unique per op: uninstall one of the two or rename the kernel"
            )
        kernel = KernelImpl(
            op=op, name=name, fn=impl, provider=provider,
            platforms=tuple(platforms) if platforms is not None else None,
            priority=priority, dtypes=tuple(dtypes) if dtypes is not None else None, supports=supports,
            graph_safe=graph_safe, config_space=config_space, shape_key=shape_key, tune_inputs=tune_inputs,
            tune_shapes=tuple(tune_shapes), description=description, features=tuple(features), prepare=prepare,
            prepared_layout=prepared_layout, kv_layouts=layouts,
        )  # fmt: skip
        self._kernels[op][name] = kernel
        if self._owner is not None:
            self.registered_by[self._owner].append((op, name))
        return kernel

    def add_tuned_config_dir(self, platform: str, path: str | os.PathLike) -> None:
        """Make ``path`` (holding ``<kernel>/<device>.json``) a source of tuned configs on ``platform``."""
        self._config_dirs.setdefault(platform, []).append(Path(path))
        if self._owner is not None:
            self._config_dirs_by[self._owner].append((platform, Path(path)))

    # -- queries ------------------------------------------------------------------------
    def kernels(self, op: str | None = None) -> list[KernelImpl]:
        ops = [op_spec(op).name] if op else list(OPS)
        return [
            k for o in ops for k in sorted(self._kernels[o].values(), key=lambda k: (-k.priority, k.name))
        ]

    def find(self, name: str) -> KernelImpl:
        """The kernel called ``name`` in any op (tunable kernel names are unique across ops)."""
        found = [k for op in OPS for k in self._kernels[op].values() if k.name == name]
        if not found:
            tunable = sorted({k.name for k in self.kernels() if k.config_space is not None})
            raise KernelError(f"unknown kernel {name!r}; tunable kernels: {', '.join(tunable) or 'none'}")
        if len(found) > 1:
            raise KernelError(
                f"kernel name {name!r} is used by several ops ({', '.join(k.op for k in found)})"
            )
        return found[0]

    def get(self, op: str, name: str) -> KernelImpl:
        known = self._kernels[op_spec(op).name]
        if name not in known:
            raise KernelError(
                f"unknown kernel {name!r} for {op}; known kernels: {', '.join(sorted(known)) or 'none'}"
            )
        return known[name]

    def check_overrides(self, overrides: Mapping[str, str], source: str = OVERRIDE_ENV) -> None:
        """Raise for an override that names an unknown op or kernel, saying what the valid choices are."""
        check_overrides(overrides, {op: list(kernels) for op, kernels in self._kernels.items()}, source)

    def overrides_from_env(self) -> dict[str, str]:
        return parse_overrides(os.environ.get(OVERRIDE_ENV))

    def select(
        self,
        op: str,
        platform: PlatformFacts,
        dtype: str | None = None,
        overrides: Mapping[str, str] | None = None,
        **facts: Any,
    ) -> Selection:
        """Choose the kernel for ``op``: an override, else the highest-priority kernel that accepts."""
        query = KernelQuery(op=op_spec(op).name, platform=platform, dtype=dtype, facts=facts)
        from_env = self.overrides_from_env()
        self.check_overrides(from_env, OVERRIDE_ENV)
        self.check_overrides(overrides or {}, "kernel override")
        merged = {**from_env, **(overrides or {})}
        chosen_name = merged.get(op)
        if chosen_name is not None:
            self.get(op, chosen_name)
        selected, candidates = choose(self.kernels(op), query, chosen_name)
        selection = Selection(query=query, kernel=selected, candidates=candidates, override=chosen_name)
        if selection.fallback:
            self._warn_fallback(selection)
        return selection

    def explain(self, op: str, platform: PlatformFacts, dtype: str | None = None, **facts: Any) -> Selection:
        return self.select(op, platform, dtype, **facts)

    def _warn_fallback(self, selection: Selection) -> None:
        q = selection.query
        key = (q.op, q.platform.name, q.dtype)
        if key in self._warned:
            return
        self._warned.add(key)
        refused = "; ".join(
            f"{c.kernel.name}: {c.reason}" for c in selection.candidates if c.verdict == "refused"
        )
        log.warning(
            "%s on %s/%s falls back to the reference kernel (%s)", q.op, q.platform.name, q.dtype, refused
        )

    # -- binding ------------------------------------------------------------------------
    def config_lookup(self, kernel: KernelImpl, platform: PlatformFacts) -> ConfigLookup | None:
        if kernel.config_space is None:
            return None
        key = (kernel.op, kernel.name, platform)
        if key not in self._lookups:
            self._lookups[key] = ConfigLookup(
                kernel=kernel.name,
                space=kernel.config_space,
                shape_key=kernel.shape_key,
                directories=self._config_dirs.get(platform.name, []),
                device_names=platform.config_names(),
            )
        return self._lookups[key]

    def bind(self, selection: Selection) -> BoundKernel:
        return BoundKernel(
            selection.kernel, self.config_lookup(selection.kernel, selection.query.platform), selection
        )

    def bind_exact(self, kernel: KernelImpl, query: KernelQuery) -> tuple[str | None, BoundKernel]:
        """``kernel`` itself bound for ``query``, with no selection (conformance and benchmarks run one named
        kernel): (why it refuses the query, or None; the bound kernel). What a refusal means is the caller's."""
        return kernel.refusal(query), self.bind(Selection(query=query, kernel=kernel, candidates=[]))

    def coverage_misses(self) -> list[str]:
        return sorted(m for lookup in self._lookups.values() for m in lookup.misses)


def register_references(registry: KernelRegistry, provider: str) -> None:
    """Register the plain-torch reference of every op for every platform at the lowest priority."""
    from tessera.pluggable_layers.reference import reference

    for op in OPS:
        registry.register(
            op, reference(op), name="reference", platforms=None, priority=PRIORITY_REFERENCE, provider=provider,
            graph_safe=False, description="plain-torch reference (the conformance oracle)",
            features=OPS[op].feature_names(), kv_layout=tuple(KV_LAYOUTS) if op in KV_OPS else None,
        )  # fmt: skip
