"""Runs the suite's levels on one platform and device and assembles the report.

(a) platform contract; (b) every op case on every kernel registered for the
platform, at every dtype the platform and op share, and every kv_cache_write /
paged_attention pair of one KV layout end to end; (c) layers against
reference-kernel layers; (d) tiny models against the reference platform.
Expected failures come from the plugins' ``tessera_conformance_expectations``.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tessera.conformance import sanitize
from tessera.conformance.cases import Case, all_cases
from tessera.conformance.cases.kv_layouts import case_layout
from tessera.conformance.levels import collectives, contract, kv_pairs, layers, models
from tessera.conformance.ops import run_op_case
from tessera.conformance.report import (
    SUITE_VERSION,
    CaseResult,
    ConformanceReport,
    DeviceSummary,
    untested_ops,
)
from tessera.discovery import get_discovery, select_platform
from tessera.kernel_registry import get_registry, platform_facts
from tessera.pluggable_layers.kernel_types import provider_distribution
from tessera.pluggable_layers.kv_layout import KV_OPS, layouts_of
from tessera.pluggable_layers.ops import OPS

FLOAT_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class RunOptions:
    platform: str | None = None
    device_index: int = 0
    full: bool = False
    ops: Sequence[str] | None = None
    kernels: Sequence[str] | None = None
    perf: bool = False
    seed: int | None = None
    levels: Sequence[str] = ("platform", "op", "layer", "model")
    dtypes: Sequence[str] | None = None  # default: every float dtype the platform claims
    cases: Sequence[str] | None = None  # case names or globs (gen_*, zoo_Mixtral*)
    origins: Sequence[str] | None = None  # fixed, generated, zoo, adversarial (default: all)
    sanitize: bool = False  # the op cases under the platform's memory checker, a process per op/kernel/dtype


@dataclass(frozen=True)
class Expectation:
    """A known failure a plugin declares: case-id glob and reason. It covers the declaring distribution's own
    kernels, and, for the plugin that provides the platform, the reference kernels and the layer, model and
    platform cases too; never another plugin's kernels (a pack cannot excuse, or hide, someone else's)."""

    pattern: str
    reason: str
    owner: str  # the declaring distribution
    owns_platform: bool

    def covers(self, result: CaseResult) -> bool:
        if not fnmatch.fnmatch(result.case_id, self.pattern):
            return False
        provider = provider_distribution(result.provider or "")
        return provider == self.owner or (self.owns_platform and provider in ("", "tessera"))


def expectations(discovery, platform) -> list[Expectation]:
    owner = discovery.platform_owner.get(platform.name)
    out = []
    for plugin, results in discovery.call_each("tessera_conformance_expectations", platform=platform):
        dist = plugin.report.distribution or plugin.report.plugin
        for result in results:
            out += [Expectation(p, r, dist, plugin is owner) for p, r in (result or {}).items()]
    return out


def apply_expectations(result: CaseResult, expected: list[Expectation]) -> CaseResult:
    for expectation in expected:
        reason = expectation.reason
        if expectation.covers(result):
            if result.status in ("fail", "error"):
                result.status, result.message = "xfail", f"expected: {reason}; {result.message}"
                result.extra["expected"] = reason
            elif result.status == "pass":
                result.status, result.message = "xpass", f"expected to fail ({reason}) but passed"
    return result


def check_selection(options: RunOptions, registry, facts, cases: list[Case]) -> None:
    """Every op, kernel pattern, dtype and case pattern asked for must name something: a typo would otherwise
    run nothing of it and certify the rest."""
    from tessera.errors import ConfigError

    unknown = sorted(set(options.ops or ()) - set(OPS))
    if unknown:
        raise ConfigError(f"no op {', '.join(unknown)}; the ops are {', '.join(sorted(OPS))}")
    names = sorted({k.name for k in registry.kernels() if k.platforms is None or facts.name in k.platforms})
    unmatched = [k for k in options.kernels or () if not any(fnmatch.fnmatch(n, k) for n in names)]
    if unmatched:
        raise ConfigError(f"no kernel of {facts.name} matches {', '.join(unmatched)}; "
                          "`tessera kernels list` shows them")  # fmt: skip
    bad = sorted(set(options.dtypes or ()) - set(FLOAT_DTYPES))
    if bad:
        raise ConfigError(f"no dtype {', '.join(bad)}; the suite runs {', '.join(FLOAT_DTYPES)}")
    unmatched = [c for c in options.cases or () if not any(fnmatch.fnmatch(case.name, c) for case in cases)]
    if unmatched:
        raise ConfigError(
            f"no case matches {', '.join(unmatched)}; the report of a full run lists the case names"
        )


def op_work(options: RunOptions, registry, facts, caps, seed: int) -> list[tuple[Case, object, str]]:
    work = []
    for case in all_cases(options.full, seed):
        if options.ops and case.op not in options.ops:
            continue
        for kernel in registry.kernels(case.op):
            if kernel.platforms is not None and facts.name not in kernel.platforms:
                continue
            if options.kernels and not any(fnmatch.fnmatch(kernel.name, k) for k in options.kernels):
                continue
            if options.cases and not any(fnmatch.fnmatch(case.name, c) for c in options.cases):
                continue
            if options.origins and case.origin not in options.origins:
                continue
            if case.op in KV_OPS and case_layout(case) not in layouts_of(kernel):
                continue  # the kernel runs the cases of the KV layouts it declares
            for dtype in FLOAT_DTYPES:
                if dtype in (options.dtypes or caps.dtypes):
                    work.append((case, kernel, dtype))
    return work


def pair_scope(options: RunOptions) -> bool:
    """Whether the run covers the KV write / attention pairs (the KV ops and fixed cases in scope)."""
    ops_ok = not options.ops or bool(set(options.ops) & set(KV_OPS))
    return ops_ok and not options.cases and (not options.origins or "fixed" in options.origins)


def case_seed(seed: int, case: Case) -> int:
    """The seed of one case's inputs: from the run's seed and the case id alone (so it replays)."""
    return int(hashlib.sha256(f"{seed}/{case.case_id}".encode()).hexdigest()[:8], 16)


def drawn_counts(work) -> dict[str, dict[str, int]]:
    """Per op, how many distinct cases of each origin (fixed, generated, zoo, adversarial) ran."""
    seen: dict[str, dict[str, set]] = {}
    for case, _kernel, _dtype in work:
        seen.setdefault(case.op, {}).setdefault(case.origin, set()).add(case.name)
    return {
        op: {origin: len(names) for origin, names in sorted(by.items())} for op, by in sorted(seen.items())
    }


def scope(options: RunOptions) -> str:
    parts = [f"{name}={','.join(value)}" for name, value in
             (("ops", options.ops), ("kernels", options.kernels), ("dtypes", options.dtypes), ("cases", options.cases),
              ("origins", options.origins))
             if value]  # fmt: skip
    return "; ".join(parts) or "complete"


def _sanitized(work, prefix, platform, options: RunOptions, seed: int, progress) -> list[CaseResult]:
    """The op cases under the memory checker, one process per op, kernel and dtype."""
    groups: dict[tuple, list[dict]] = {}
    for case, kernel, dtype in work:
        groups.setdefault((case.op, kernel.name, dtype), []).append(
            dict(
                level="op",
                case_id=f"{case.op}/{kernel.name}/{dtype}/{case.name}",
                op=case.op,
                kernel=kernel.name,
                provider=kernel.provider,
                dtype=dtype,
                case=case.name,
            )  # fmt: skip
        )
    out: list[CaseResult] = []
    for (op, kernel, dtype), bases in groups.items():
        if progress:
            progress(f"{op} {kernel} {dtype} (sanitized, {len(bases)} cases)", len(out), len(work))
        out += sanitize.run_sanitized_group(
            prefix, platform.name, options.device_index, bases, seed, options.full
        )
    return out


def run(options: RunOptions, progress: Callable[[str, int, int], None] | None = None) -> ConformanceReport:
    discovery = get_discovery()
    platform = select_platform(options.platform, discovery)
    count = len(platform.devices())
    if not 0 <= options.device_index < count:
        from tessera.errors import ConfigError

        raise ConfigError(f"no device {options.device_index} on {platform.name}: it has {count} "
                          f"(indices 0 to {count - 1})")  # fmt: skip
    platform.set_device(options.device_index)
    facts = platform_facts(platform, options.device_index)
    caps = platform.capabilities(options.device_index)
    device = platform.torch_device(options.device_index)
    registry = get_registry(discovery)
    seed = options.seed if options.seed is not None else int(time.time() * 1000) % (1 << 31)
    started, t0 = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), time.perf_counter()
    expected = expectations(discovery, platform)
    results: list[CaseResult] = []
    ranks = None  # the world size, once a collective case ran (not when every one was skipped)
    limits: dict[str, float] = {}
    if "platform" in options.levels:
        results += contract.check(platform, options.device_index)
    if options.perf:
        from tessera.pluggable_layers.measure import measure_limits

        limits = {k: v for k, v in measure_limits(platform, device).items() if isinstance(v, float)}
    check_selection(options, registry, facts, all_cases(options.full, seed))
    work = op_work(options, registry, facts, caps, seed) if "op" in options.levels else []
    distributed = [w for w in work if OPS[w[0].op].collective]
    work = [w for w in work if not OPS[w[0].op].collective]
    prefix = sanitize.checker_command(platform) if options.sanitize and work else None
    if prefix is not None:
        results += [
            apply_expectations(r, expected)
            for r in _sanitized(work, prefix, platform, options, seed, progress)
        ]
    for i, (case, kernel, dtype) in enumerate(work if prefix is None else []):
        if progress:
            progress(f"{case.op} {kernel.name} {dtype}", i, len(work))
        result = run_op_case(registry, facts, kernel, case, dtype, device, case_seed(seed, case), perf=options.perf,
                             platform=platform, limits=limits)  # fmt: skip
        results.append(apply_expectations(result, expected))
    if "op" in options.levels and pair_scope(options):
        dtypes = [d for d in FLOAT_DTYPES if d in (options.dtypes or caps.dtypes)]
        pairs = kv_pairs.check(registry, facts, dtypes, device, seed, options.kernels, platform)
        results += [apply_expectations(r, expected) for r in pairs]
    if distributed:
        if progress:
            progress(f"collectives on {collectives.WORLD_SIZE} ranks", len(work), len(work) + 1)
        found = collectives.check(platform, distributed, options.device_index, seed, options.full)
        results += [apply_expectations(r, expected) for r in found]
        ranks = collectives.WORLD_SIZE if any(r.status != "skip" for r in found) else None
    whole = not options.ops and not options.kernels and not options.cases and not options.origins
    if "layer" in options.levels and whole:
        results += [
            apply_expectations(r, expected)
            for r in layers.check(registry, facts, caps, device, seed, platform)
        ]
    if "model" in options.levels and whole:
        results += [
            apply_expectations(r, expected)
            for r in models.check(platform, facts, caps, options, seed, progress)
        ]
    devices = platform.devices()
    d = devices[options.device_index]
    plugins = {
        p.report.distribution or p.report.plugin: p.report.version or "?" for p in discovery.ok_plugins()
    }
    return ConformanceReport(
        suite_version=SUITE_VERSION, platform=platform.name, device_index=options.device_index,
        device=DeviceSummary(name=d.name, canonical_name=d.canonical_name, arch=d.arch, driver=d.driver, runtime=d.runtime),
        plugins=plugins, torch=torch.__version__, mode="full" if options.full else "quick", scope=scope(options), seed=seed,
        started=started, drawn=drawn_counts(work + distributed), sanitized=prefix is not None,
        duration_s=round(time.perf_counter() - t0, 2), limits=limits, results=results,
        world_size=ranks, untested_ops=untested_ops(results),
    )  # fmt: skip
