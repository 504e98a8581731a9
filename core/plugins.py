"""Plugin discovery, per-plugin reports and platform selection.

Plugins are modules named by entry points in the ``tessera.plugins`` group. Each is
imported and registered with a pluggy ``PluginManager`` one at a time, the way
``PluginManager.load_setuptools_entrypoints`` does it, but with every failure
captured in that plugin's :class:`PluginReport` instead of propagating: an import
error, an incompatible ``TESSERA_PLUGIN_API``, a hook that raises or returns the
wrong type, a platform name another plugin already took. A broken plugin is shown
by ``tessera platform list`` and never stops the others; selecting its platform
explicitly is an error that names it.
"""

from __future__ import annotations

import importlib.metadata as importlib_metadata
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Literal

import pluggy
from pydantic import BaseModel, Field

from tessera import hookspecs
from tessera.errors import PlatformError
from tessera.platform import Availability, Capabilities, DeviceInfo, Platform

PluginStatus = Literal["ok", "broken", "incompatible", "missing"]
ALLOW_ENV = "TESSERA_PLUGINS"
PLATFORM_ENV = "TESSERA_PLATFORM"


class PlatformReport(BaseModel):
    """One platform as ``platform list`` shows it."""

    name: str
    device_type: str
    priority: int
    available: bool
    reason: str = ""
    devices: list[DeviceInfo] = Field(default_factory=list)
    capabilities: Capabilities | None = None


class PluginReport(BaseModel):
    """One installed (or asked-for) plugin: where it comes from and how it fared."""

    plugin: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    status: PluginStatus = "ok"
    error: str | None = None
    plugin_api: str | None = None
    kernel_pack: bool = False
    platforms: list[PlatformReport] = Field(default_factory=list)


@dataclass
class LoadedPlugin:
    report: PluginReport
    module: Any = None
    platforms: list[Platform] = field(default_factory=list)


@dataclass
class Discovery:
    """The outcome of one discovery: the plugin manager, every plugin, every platform."""

    manager: pluggy.PluginManager
    plugins: list[LoadedPlugin]
    platforms: dict[str, Platform]
    platform_owner: dict[str, LoadedPlugin]

    def ok_plugins(self) -> list[LoadedPlugin]:
        return [p for p in self.plugins if p.report.status == "ok"]

    def call_each(self, hook: str, **kwargs: Any) -> None:
        """Call ``hook`` on every healthy plugin in name order; a plugin that raises is marked broken."""
        for plugin in self.ok_plugins():
            try:
                call_plugin_hook(self.manager, plugin.report.plugin, hook, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a plugin's fault must not stop the others
                mark_broken(plugin, f"{hook}() raised {_describe(exc)}")

    def reports(self) -> list[PluginReport]:
        """Reports with each platform's availability and devices filled in (may query devices)."""
        out = []
        for plugin in self.plugins:
            report = plugin.report.model_copy(deep=True)
            report.platforms = [platform_report(p) for p in plugin.platforms]
            out.append(report)
        return out


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def mark_broken(plugin: LoadedPlugin, error: str, status: PluginStatus = "broken") -> None:
    plugin.report.status = status
    plugin.report.error = error


def call_plugin_hook(pm: pluggy.PluginManager, plugin_name: str, hook: str, **kwargs: Any) -> list[Any]:
    """Call one plugin's implementations of ``hook`` (keyword arguments, pluggy-style subsets)."""
    caller = getattr(pm.hook, hook)
    results = []
    for impl in caller.get_hookimpls():
        if impl.plugin_name == plugin_name:
            results.append(impl.function(**{a: kwargs[a] for a in impl.argnames}))
    return results


def api_compatible(declared: str) -> bool:
    """True when a plugin written against ``declared`` ("M.m") runs on this core."""
    try:
        major, minor = (int(x) for x in str(declared).split("."))
        core_major, core_minor = (int(x) for x in hookspecs.PLUGIN_API_VERSION.split("."))
    except ValueError:
        return False
    return major == core_major and minor <= core_minor


def platform_report(platform: Platform) -> PlatformReport:
    """Ask a platform about itself; a platform that raises is reported unavailable with the error."""
    try:
        availability = platform.availability()
        if not isinstance(availability, Availability):
            raise TypeError(f"availability() returned {type(availability).__name__}, not Availability")
        devices = platform.devices() if availability.available else []
        caps = platform.capabilities(0) if availability.available else None
    except Exception as exc:  # noqa: BLE001
        availability = Availability(available=False, reason=f"querying the platform raised {_describe(exc)}")
        devices, caps = [], None
    return PlatformReport(
        name=platform.name,
        device_type=platform.device_type,
        priority=platform.priority,
        available=availability.available,
        reason=availability.reason,
        devices=devices,
        capabilities=caps,
    )


def allow_list_from_env() -> list[str] | None:
    raw = os.environ.get(ALLOW_ENV, "").strip()
    return [name.strip() for name in raw.split(",") if name.strip()] or None


def _entry_points() -> list[importlib_metadata.EntryPoint]:
    return sorted(importlib_metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _load_one(
    pm: pluggy.PluginManager, ep: importlib_metadata.EntryPoint, report: PluginReport
) -> LoadedPlugin:
    plugin = LoadedPlugin(report=report)
    try:
        module = ep.load()
    except Exception as exc:  # noqa: BLE001
        tb = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" ({tb[0].filename}:{tb[0].lineno})" if tb else ""
        mark_broken(plugin, f"import of {ep.value!r} failed: {_describe(exc)}{where}")
        return plugin
    plugin.module = module
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
    try:
        pm.register(module, name=ep.name)
        pm.check_pending()
    except Exception as exc:  # noqa: BLE001
        if pm.is_registered(module):
            pm.unregister(module)
        mark_broken(plugin, f"hook validation failed: {_describe(exc)}")
    return plugin


def _collect_platforms(pm: pluggy.PluginManager, plugin: LoadedPlugin) -> None:
    name = plugin.report.plugin
    try:
        results = call_plugin_hook(pm, name, "tessera_platforms")
    except Exception as exc:  # noqa: BLE001
        mark_broken(plugin, f"tessera_platforms() raised {_describe(exc)}")
        return
    platforms: list[Platform] = []
    for result in results:
        if not isinstance(result, list | tuple) or not all(isinstance(p, Platform) for p in result):
            mark_broken(
                plugin,
                f"tessera_platforms() returned {result!r}; expected a list of tessera.platform.Platform",
            )
            return
        platforms.extend(result)
    for p in platforms:
        if not p.name or not p.device_type:
            mark_broken(plugin, f"{type(p).__name__} has no name or device_type; set both class attributes")
            return
    plugin.platforms = platforms
    implements_kernels = any(i.plugin_name == name for i in pm.hook.tessera_register_kernels.get_hookimpls())
    plugin.report.kernel_pack = not platforms and implements_kernels


def discover(allow: list[str] | None = None) -> Discovery:
    """Find, import and register every installed plugin (or those in ``allow``).

    ``allow`` defaults to the ``TESSERA_PLUGINS`` allow-list; None loads all.
    """
    allow = allow if allow is not None else allow_list_from_env()
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    plugins: list[LoadedPlugin] = []
    seen: dict[str, str] = {}
    for ep in _entry_points():
        if allow is not None and ep.name not in allow:
            continue
        dist = getattr(ep, "dist", None)
        report = PluginReport(
            plugin=ep.name,
            distribution=dist.name if dist else None,
            version=dist.version if dist else None,
            module=ep.value,
        )
        if ep.name in seen:
            plugins.append(LoadedPlugin(report=report))
            mark_broken(
                plugins[-1],
                f"entry point name {ep.name!r} is already used by distribution {seen[ep.name]}; "
                "uninstall one of them",
            )
            continue
        seen[ep.name] = report.distribution or "?"
        plugin = _load_one(pm, ep, report)
        if plugin.report.status == "ok":
            _collect_platforms(pm, plugin)
        plugins.append(plugin)
    for missing in sorted(set(allow or ()) - set(seen)):
        installed = ", ".join(ep.name for ep in _entry_points()) or "none"
        plugins.append(
            LoadedPlugin(
                report=PluginReport(
                    plugin=missing,
                    status="missing",
                    error=f"{ALLOW_ENV} names {missing!r}, but no installed plugin has that name "
                    f"(installed: {installed}); pip install tessera-{missing} or fix {ALLOW_ENV}",
                )
            )
        )
    return _assign_platforms(pm, plugins)


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


def select_platform(name: str | None = None, discovery: Discovery | None = None) -> Platform:
    """The platform named (argument, then ``TESSERA_PLATFORM``), else the best available one."""
    discovery = discovery or get_discovery()
    name = name or os.environ.get(PLATFORM_ENV) or None
    if name:
        return _explicit_platform(name, discovery)
    ranked = sorted(discovery.platforms.values(), key=lambda p: (-p.priority, p.name))
    reasons = []
    for platform in ranked:
        availability = _safe_availability(platform)
        if availability.available:
            return platform
        reasons.append(f"{platform.name}: {availability.reason}")
    detail = "; ".join(reasons) or "no platform plugin is installed"
    raise PlatformError(f"no platform is available ({detail}); pip install tessera-cpu to run on the CPU")


def _safe_availability(platform: Platform) -> Availability:
    try:
        return platform.availability()
    except Exception as exc:  # noqa: BLE001
        return Availability(available=False, reason=f"availability() raised {_describe(exc)}")


def _explicit_platform(name: str, discovery: Discovery) -> Platform:
    platform = discovery.platforms.get(name)
    if platform is not None:
        availability = _safe_availability(platform)
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
