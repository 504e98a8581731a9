"""Build the kernel registry from the discovered plugins, and describe platforms to it as data."""

from __future__ import annotations

from tessera import __version__
from tessera.platform import Capabilities, Platform
from tessera.pluggable_layers.registry import KernelRegistry, PlatformFacts, register_references
from tessera.plugins import Discovery, call_plugin_hook, get_discovery, mark_broken

_cached: dict[int, KernelRegistry] = {}


def build_registry(discovery: Discovery | None = None) -> KernelRegistry:
    """A registry with the references plus every healthy plugin's kernels (a plugin that raises is marked broken)."""
    discovery = discovery or get_discovery()
    registry = KernelRegistry()
    register_references(registry, provider=f"tessera {__version__}")
    for plugin in discovery.ok_plugins():
        report = plugin.report
        registry.current_provider = f"{report.distribution or report.plugin} {report.version or ''}".strip()
        try:
            call_plugin_hook(discovery.manager, report.plugin, "tessera_register_kernels", registry=registry)
        except Exception as exc:  # noqa: BLE001 - one plugin's fault must not stop the others
            mark_broken(plugin, f"tessera_register_kernels() raised {type(exc).__name__}: {exc}")
    registry.current_provider = "tessera"
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
    try:
        available = platform.availability().available
    except Exception:  # noqa: BLE001
        available = False
    if not available:
        return PlatformFacts(name=platform.name, capabilities=Capabilities())
    devices = platform.devices()
    device = devices[device_index] if device_index < len(devices) else None
    return PlatformFacts(
        name=platform.name,
        capabilities=platform.capabilities(device_index),
        device=device.canonical_name if device else None,
        arch=device.arch if device else None,
    )
