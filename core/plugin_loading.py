"""Loading one plugin: its entry point imported, its plugin API checked, its hooks registered and its
platforms collected, with every failure recorded in its :class:`PluginReport` (never raised).

:mod:`tessera.discovery` runs these for every entry point, then gives each platform name to one plugin
and selects among them.
"""

from __future__ import annotations

import importlib.metadata as importlib_metadata
import re

import pluggy

from tessera import hookspecs
from tessera.discovery_guard import guard_members, guarded, static_problem
from tessera.discovery_report import LoadedPlugin, PluginReport, mark_broken, note_slow, run_hook
from tessera.platform import Platform


def api_compatible(declared: str) -> bool:
    """True when a plugin written against ``declared`` ("M.m") runs on this core."""
    try:
        major, minor = (int(x) for x in str(declared).split("."))
        core_major, core_minor = (int(x) for x in hookspecs.PLUGIN_API_VERSION.split("."))
    except ValueError:
        return False
    return major == core_major and minor <= core_minor


def entry_points() -> list[importlib_metadata.EntryPoint]:
    """Every installed plugin entry point, by name."""
    return sorted(importlib_metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def dist_label(ep: importlib_metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist else f"the module {ep.value}"


def name_conflicts(eps: list[importlib_metadata.EntryPoint]) -> dict[int, str]:
    """For each entry point that loses its name to another distribution, why (by index in ``eps``).

    The distribution named ``tessera-<name>`` keeps the name, else the first found.
    """
    errors: dict[int, str] = {}
    names = {ep.name for ep in eps}
    for name in names:
        group = [i for i, ep in enumerate(eps) if ep.name == name]
        if len(group) < 2:
            continue
        dists = [getattr(eps[i], "dist", None) for i in group]
        winner = next((i for i, d in zip(group, dists, strict=True) if d and canonical(d.name) == f"tessera-{name}"),
                      group[0])  # fmt: skip
        everyone = " and ".join(dist_label(eps[i]) for i in group)
        for i in group:
            if i != winner:
                errors[i] = (
                    f"entry point name {name!r} is taken by {len(group)} distributions, {everyone}; "
                    f"tessera loads {dist_label(eps[winner])} under it and skipped this one. "
                    f"Uninstall one of them (pip uninstall {dist_label(eps[i]).split()[0]})"
                )
    return errors


def canonical(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def load_one(
    pm: pluggy.PluginManager, ep: importlib_metadata.EntryPoint, report: PluginReport
) -> LoadedPlugin:
    plugin = LoadedPlugin(report=report)
    loaded = guarded(ep.load)
    report.load_seconds = loaded.seconds
    note_slow(report, "import", loaded.seconds)
    if not loaded.ok:
        mark_broken(plugin, f"import of {ep.value!r} failed: {loaded.error}")
        return plugin
    module = plugin.module = loaded.value
    declared = getattr(module, "TESSERA_PLUGIN_API", None)
    report.plugin_api = None if declared is None else str(declared)
    if declared is None or not api_compatible(str(declared)):
        what = (
            "declares no TESSERA_PLUGIN_API" if declared is None else f"was written for plugin API {declared}"
        )
        mark_broken(
            plugin,
            f"{what}; this tessera implements plugin API {hookspecs.PLUGIN_API_VERSION}: "
            f"install a {report.distribution} built for it",
            status="incompatible",
        )
        return plugin
    registered = guarded(lambda: (pm.register(module, name=ep.name), pm.check_pending()))
    if not registered.ok:
        if pm.is_registered(module):
            pm.unregister(module)
        mark_broken(plugin, f"hook validation failed: {registered.error}")
    return plugin


def collect_platforms(pm: pluggy.PluginManager, plugin: LoadedPlugin) -> None:
    report = plugin.report
    outcome = run_hook(pm, plugin, "tessera_platforms")
    if not outcome.ok:
        mark_broken(plugin, f"tessera_platforms() raised {outcome.error}")
        return
    platforms: list[Platform] = []
    for result in outcome.value:
        if not isinstance(result, list | tuple) or not all(isinstance(p, Platform) for p in result):
            mark_broken(
                plugin,
                f"tessera_platforms() returned {result!r}; expected a list of tessera.platform.Platform",
            )
            return
        platforms.extend(result)
    for p in platforms:
        checked = guarded(static_problem, p)
        problem = (
            checked.value if checked.ok else f"reading {type(p).__name__}'s attributes raised {checked.error}"
        )
        if problem:
            mark_broken(plugin, problem)
            return
        guard_members(p, report.label())
    plugin.platforms = platforms
    implements_kernels = any(
        i.plugin_name == report.plugin for i in pm.hook.tessera_register_kernels.get_hookimpls()
    )
    report.kernel_pack = not platforms and implements_kernels
