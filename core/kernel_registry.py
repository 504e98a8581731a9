"""Build the kernel registry from the discovered plugins, and describe platforms to it as data."""

from __future__ import annotations

from tessera import __version__
from tessera.discovery import Discovery, get_discovery
from tessera.discovery_guard import probe
from tessera.platform import Capabilities, Platform
from tessera.pluggable_layers.collectives import register_collectives
from tessera.pluggable_layers.registry import KernelRegistry, PlatformFacts, register_references

_cached: dict[int, KernelRegistry] = {}


def build_registry(discovery: Discovery | None = None) -> KernelRegistry:
    """A registry with the references plus every healthy plugin's kernels.

    Each plugin's registration is a transaction: a plugin whose hook fails (raises,
    exits, or registers a kernel name another plugin took) is marked broken, its
    platforms leave the selectable set, and every kernel it registered is removed.
    """
    discovery = discovery or get_discovery()
    registry = KernelRegistry()
    register_references(registry, provider=f"tessera {__version__}")
    register_collectives(registry, provider=f"tessera {__version__}")
    for plugin in discovery.ok_plugins():
        report = plugin.report
        registry.begin(
            report.plugin, f"{report.distribution or report.plugin} {report.version or ''}".strip()
        )
        outcome = discovery.run_hook(plugin, "tessera_register_kernels", registry=registry)
        if outcome.ok:
            registry.commit()
            continue
        removed = registry.rollback()
        undone = f"; the kernels it had registered were removed ({', '.join(removed)})" if removed else ""
        discovery.fail(plugin, f"tessera_register_kernels() raised {outcome.error}{undone}")
    return registry


def get_registry(discovery: Discovery | None = None) -> KernelRegistry:
    """The registry of ``discovery`` (default: this process's discovery), built once."""
    discovery = discovery or get_discovery()
    key = id(discovery)
    if key not in _cached:
        _cached.clear()
        _cached[key] = build_registry(discovery)
    return _cached[key]


def platform_facts(platform: Platform, device_index: int = 0) -> PlatformFacts:
    """The platform as the registry sees it. An unavailable platform gets default capabilities and no device."""
    answers = probe(platform, device_index)
    if not answers.availability.available:
        return PlatformFacts(name=platform.name, capabilities=Capabilities())
    devices = answers.devices
    device = devices[device_index] if device_index < len(devices) else None
    return PlatformFacts(
        name=platform.name,
        capabilities=answers.capabilities,
        device=device.canonical_name if device else None,
        arch=device.arch if device else None,
    )
