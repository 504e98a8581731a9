"""Plugin discovery, per-plugin reports and platform selection.

Plugins are modules named by entry points in the ``tessera.discovery`` group. Each is
imported and registered with a pluggy ``PluginManager`` one at a time, the way
``PluginManager.load_setuptools_entrypoints`` does it, but with every failure
captured in that plugin's :class:`PluginReport` instead of propagating: an import
error, an incompatible ``TESSERA_PLUGIN_API``, a hook that raises or returns the
wrong type, a platform name another plugin already took. A broken plugin is shown
by ``tessera platform list`` and never stops the others; selecting its platform
explicitly is an error that names it.

Everything a plugin runs goes through :mod:`tessera.discovery_guard` (``SystemExit``
included); each platform's static members are validated once, as it is loaded
(:mod:`tessera.plugin_loading`), and its
queries (availability, devices, capabilities) are probed and type-checked on use.
Selection builds the kernel registry first, so a plugin whose registration failed
(see :func:`tessera.kernel_registry.build_registry`) is never selected.
"""

from __future__ import annotations

import importlib.metadata as importlib_metadata
import os

import pluggy

from tessera import hookspecs
from tessera.discovery_guard import probe
from tessera.discovery_report import (
    Discovery,
    LoadedPlugin,
    PlatformReport,
    PluginReport,
    call_plugin_hook,
    mark_broken,
    platform_report,
)
from tessera.errors import PlatformError
from tessera.platform import Platform
from tessera.plugin_loading import collect_platforms, entry_points, load_one, name_conflicts

__all__ = [
    "Discovery", "LoadedPlugin", "PlatformReport", "PluginReport", "call_plugin_hook", "discover", "ensure_registered",
    "get_discovery", "mark_broken", "platform_report", "select_platform",
]  # fmt: skip

ALLOW_ENV = "TESSERA_PLUGINS"
PLATFORM_ENV = "TESSERA_PLATFORM"


def allow_list_from_env() -> list[str] | None:
    raw = os.environ.get(ALLOW_ENV, "").strip()
    return [name.strip() for name in raw.split(",") if name.strip()] or None


def discover(allow: list[str] | None = None) -> Discovery:
    """Find, import and register every installed plugin (or those in ``allow``).

    ``allow`` defaults to the ``TESSERA_PLUGINS`` allow-list; None loads all.
    """
    allow = allow if allow is not None else allow_list_from_env()
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    plugins: list[LoadedPlugin] = []
    eps = [ep for ep in entry_points() if allow is None or ep.name in allow]
    conflicts = name_conflicts(eps)
    for i, ep in enumerate(eps):
        dist = getattr(ep, "dist", None)
        report = PluginReport(
            plugin=ep.name,
            distribution=dist.name if dist else None,
            version=dist.version if dist else None,
            module=ep.value,
        )
        if i in conflicts:
            plugins.append(LoadedPlugin(report=report))
            mark_broken(plugins[-1], conflicts[i])
            continue
        plugin = load_one(pm, ep, report)
        if plugin.report.status == "ok":
            collect_platforms(pm, plugin)
        plugins.append(plugin)
    for missing in sorted(set(allow or ()) - {ep.name for ep in eps}):
        installed = ", ".join(ep.name for ep in entry_points()) or "none"
        plugins.append(
            LoadedPlugin(
                report=PluginReport(
                    plugin=missing,
                    status="missing",
                    error=f"{ALLOW_ENV} names {missing!r}, but no installed plugin has that name "
                    f"(installed: {installed}); {_install_hint(f'tessera-{missing}', f'reinstall tessera-{missing}')} "
                    f"or fix {ALLOW_ENV}",
                )
            )
        )
    return _assign_platforms(pm, plugins)


def _install_hint(dist: str, installed: str) -> str:
    """``pip install DIST`` when DIST is not installed, else ``installed``: never install what is there."""
    try:
        importlib_metadata.distribution(dist)
    except importlib_metadata.PackageNotFoundError:
        return f"pip install {dist}"
    return installed


def _assign_platforms(pm: pluggy.PluginManager, plugins: list[LoadedPlugin]) -> Discovery:
    """Give each platform name to one plugin: the one named like it, else the first by name."""
    platforms: dict[str, Platform] = {}
    owner: dict[str, LoadedPlugin] = {}
    claims = [(p.name, plugin) for plugin in plugins for p in plugin.platforms]
    claims.sort(key=lambda c: (c[0], c[1].report.plugin != c[0], c[1].report.plugin))
    for name, plugin in claims:
        if plugin.report.status != "ok":
            continue
        if name in owner:
            first = owner[name].report
            mark_broken(
                plugin,
                f"platform name {name!r} is already provided by plugin {first.plugin!r} "
                f"({first.distribution} {first.version}); uninstall one of them or rename the platform",
            )
            continue
        owner[name] = plugin
        platforms[name] = next(p for p in plugin.platforms if p.name == name)
    for name in [n for n, plugin in owner.items() if plugin.report.status != "ok"]:
        del owner[name], platforms[name]
    return Discovery(manager=pm, plugins=plugins, platforms=platforms, platform_owner=owner)


_cached: dict[tuple[str, ...] | None, Discovery] = {}


def get_discovery(allow: list[str] | None = None, refresh: bool = False) -> Discovery:
    """The discovery for ``allow`` (default: the environment's allow-list), cached per process."""
    allow = allow if allow is not None else allow_list_from_env()
    key = tuple(allow) if allow is not None else None
    if refresh or key not in _cached:
        _cached[key] = discover(allow)
    return _cached[key]


def ensure_registered(discovery: Discovery) -> None:
    """Run every plugin's registration once, so that a plugin failing there is broken before selection."""
    from tessera.kernel_registry import get_registry

    get_registry(discovery)


def select_platform(name: str | None = None, discovery: Discovery | None = None) -> Platform:
    """The platform named (argument, then ``TESSERA_PLATFORM``), else the best available one.

    Registration runs first: a plugin whose kernels failed to register is broken, never selected.
    """
    discovery = discovery or get_discovery()
    ensure_registered(discovery)
    name = name or os.environ.get(PLATFORM_ENV) or None
    if name:
        return _explicit_platform(name, discovery)
    ranked = sorted(discovery.platforms.values(), key=lambda p: (-p.priority, p.name))
    reasons = []
    for platform in ranked:
        availability = probe(platform).availability
        if availability.available:
            return platform
        reasons.append(f"{platform.name}: {availability.reason}")
    allow = allow_list_from_env()
    loaded = "no platform plugin is installed"
    if allow:
        loaded = (f"no platform plugin is loaded: {ALLOW_ENV}={','.join(allow)} allows only those plugins, and none "
                  "of them provides a platform")  # fmt: skip
    missing = [p.report.error for p in discovery.plugins if p.report.status == "missing"]
    detail = "; ".join(reasons) or "; ".join([loaded, *missing])
    cpu = _install_hint(
        "tessera-cpu", f"tessera-cpu is installed: check {ALLOW_ENV} and `tessera platform list`"
    )
    raise PlatformError(f"no platform is available ({detail}); to run on the CPU: {cpu}")


def _explicit_platform(name: str, discovery: Discovery) -> Platform:
    platform = discovery.platforms.get(name)
    if platform is not None:
        availability = probe(platform).availability
        if not availability.available:
            owner = discovery.platform_owner[name].report
            raise PlatformError(
                f"platform {name!r} (plugin {owner.plugin!r}, {owner.distribution} {owner.version}) "
                f"is not available: {availability.reason}"
            )
        return platform
    for plugin in discovery.plugins:
        report = plugin.report
        if report.status != "ok" and (report.plugin == name or any(p.name == name for p in plugin.platforms)):
            raise PlatformError(
                f"platform {name!r} cannot be used: plugin {report.plugin!r} "
                f"({report.distribution} {report.version}) is {report.status}: {report.error}"
            )
    raise PlatformError(f"unknown platform {name!r}; {installed_platforms_text(discovery)}")


def installed_platforms_text(discovery: Discovery) -> str:
    """Which platforms exist here and which plugin (distribution) provides each, for error messages."""
    known = [
        f"{name} (plugin {owner.report.plugin}, {owner.report.distribution or '?'} {owner.report.version or ''})".replace(
            " )", ")"
        )
        for name, owner in sorted(discovery.platform_owner.items())
    ]
    broken = [p.report.plugin for p in discovery.plugins if p.report.status != "ok"]
    text = "installed platforms: " + (", ".join(known) or "none")
    if broken:
        text += f"; plugins not loaded: {', '.join(broken)} (see `tessera platform list`)"
    return (
        text
        + ". A platform comes from a plugin distribution installed with pip; `tessera platform list` shows them all"
    )
