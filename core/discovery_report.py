"""What discovery learned about each plugin: reports, the loaded plugins, and guarded hook calls.

Every call into a plugin's hooks goes through :func:`run_hook`, which guards it
(:mod:`tessera.discovery_guard`) and adds its duration to the plugin's report; a
plugin slower than ``SLOW_PLUGIN_SECONDS`` is named with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import pluggy
from pydantic import BaseModel, Field

from tessera.discovery_guard import SLOW_PLUGIN_SECONDS, Outcome, guarded, probe
from tessera.platform import Capabilities, DeviceInfo, Platform

PluginStatus = Literal["ok", "broken", "incompatible", "missing"]
log = logging.getLogger("tessera.discovery")


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
    """One installed (or asked-for) plugin: where it comes from, how it fared, how long it took."""

    plugin: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    status: PluginStatus = "ok"
    error: str | None = None
    plugin_api: str | None = None
    kernel_pack: bool = False
    platforms: list[PlatformReport] = Field(default_factory=list)
    #: seconds its import took, and each of its hooks (summed over calls)
    load_seconds: float | None = None
    hook_seconds: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    def label(self) -> str:
        return f"{self.plugin!r} ({self.distribution or '?'} {self.version or '?'})"


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

    def fail(self, plugin: LoadedPlugin, error: str) -> None:
        """Mark ``plugin`` broken after discovery: its platforms can no longer be selected."""
        mark_broken(plugin, error)
        for name in [n for n, owner in self.platform_owner.items() if owner is plugin]:
            del self.platform_owner[name], self.platforms[name]

    def run_hook(self, plugin: LoadedPlugin, hook: str, **kwargs: Any) -> Outcome:
        return run_hook(self.manager, plugin, hook, **kwargs)

    def call_each(self, hook: str, **kwargs: Any) -> list[tuple[LoadedPlugin, list[Any]]]:
        """Call ``hook`` on every healthy plugin in name order; a plugin that fails is marked broken."""
        results = []
        for plugin in self.ok_plugins():
            outcome = self.run_hook(plugin, hook, **kwargs)
            if outcome.ok:
                results.append((plugin, outcome.value))
            else:
                self.fail(plugin, f"{hook}() raised {outcome.error}")
        return results

    def reports(self) -> list[PluginReport]:
        """Reports with each platform's availability and devices filled in (may query devices)."""
        out = []
        for plugin in self.plugins:
            report = plugin.report.model_copy(deep=True)
            report.platforms = [platform_report(p) for p in plugin.platforms]
            out.append(report)
        return out


def mark_broken(plugin: LoadedPlugin, error: str, status: PluginStatus = "broken") -> None:
    plugin.report.status = status
    plugin.report.error = error


def call_plugin_hook(pm: pluggy.PluginManager, plugin_name: str, hook: str, **kwargs: Any) -> list[Any]:
    """Call one plugin's implementations of ``hook`` (keyword arguments, pluggy-style subsets), unguarded."""
    caller = getattr(pm.hook, hook)
    results = []
    for impl in caller.get_hookimpls():
        if impl.plugin_name == plugin_name:
            results.append(impl.function(**{a: kwargs[a] for a in impl.argnames}))
    return results


def run_hook(pm: pluggy.PluginManager, plugin: LoadedPlugin, hook: str, **kwargs: Any) -> Outcome:
    """One plugin's ``hook`` under the guard, timed into its report; the caller decides what a fault means."""
    outcome = guarded(call_plugin_hook, pm, plugin.report.plugin, hook, **kwargs)
    seconds = plugin.report.hook_seconds
    seconds[hook] = seconds.get(hook, 0.0) + outcome.seconds
    note_slow(plugin.report, f"{hook}()", outcome.seconds)
    return outcome


def note_slow(report: PluginReport, what: str, seconds: float) -> None:
    if seconds <= SLOW_PLUGIN_SECONDS:
        return
    warning = (
        f"{what} took {seconds:.2f} s (over {SLOW_PLUGIN_SECONDS:.0f} s): every tessera command waits for it; "
        f"uninstall {report.distribution or report.plugin} or ask its authors to defer heavy work"
    )
    report.warnings.append(warning)
    log.warning("plugin %s: %s", report.label(), warning)


def platform_report(platform: Platform) -> PlatformReport:
    """Ask a platform about itself; a platform that raises is reported unavailable with the error."""
    answers = probe(platform)
    return PlatformReport(
        name=platform.name,
        device_type=platform.device_type,
        priority=platform.priority,
        available=answers.availability.available,
        reason=answers.availability.reason,
        devices=answers.devices,
        capabilities=answers.capabilities,
    )
